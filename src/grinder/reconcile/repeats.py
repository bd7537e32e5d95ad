"""Outcomes that repeat run after run: reported once per incident and per change.

Every run puts each standing mismatch through routing and the gates again, so an
incident that stays blocked, failed or skipped gets the same outcome in every run
(with the default passive settings, every orphan of ours is blocked in every run).
The counters count every run (CONTRACT §7); the log lines and audit records say what
is new: an incident's first outcome, and each change of it -- its status, its mode,
the set of gates that block it, the reason and the error type it failed with, the
reason it is skipped.

``RepeatFilter`` remembers, for each incident (``Mismatch.key``: the engine's
incident identity), the last outcome reported and how many runs repeated it since;
it forgets an incident when the incident clears, so one that comes back is new.

What reached the exchange is never held back: a result with an attempt that was
sent (accepted, rejected or of unknown outcome) is reported whatever came before,
and so is every plan and every execution.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from grinder.reconcile.actions import ActionResult
from grinder.reconcile.labels import AttemptOutcome, Mode, ResultStatus

IncidentKey = tuple[str, str, str]
"""``Mismatch.key``: the same key in consecutive runs is one incident."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one incident in one run, as far as its report goes."""

    status: ResultStatus
    mode: Mode
    causes: tuple[str, ...]
    """Why: every gate that blocked it (in the chain's order); the reason and the error
    type it failed with; the reason it was skipped."""
    always: bool = field(default=False, compare=False)
    """Reported even when it repeats the last one: it sent something, planned or executed.
    Not part of what it is: an unsent repeat of a sent failure is a repeat."""


def result_outcome(result: ActionResult) -> Outcome:
    """The outcome a remediation result reports."""
    status = result.status
    if status is ResultStatus.BLOCKED:
        causes = result.blocking
    else:
        causes = tuple(c for c in (result.reason, result.error_type) if c is not None)
    sent = any(a is not AttemptOutcome.WITHHELD for a in result.attempts)
    always = sent or status in (ResultStatus.PLANNED, ResultStatus.EXECUTED)
    return Outcome(status, result.mode, causes, always)


def skip_outcome(mode: Mode, reason: str) -> Outcome:
    """The outcome of a mismatch the run's plan skipped (no attempt at all)."""
    return Outcome(ResultStatus.SKIPPED, mode, (reason,))


class RepeatFilter:
    """The last outcome reported for each standing incident, and how often it repeated."""

    def __init__(self) -> None:
        self._last: dict[IncidentKey, tuple[Outcome, int]] = {}

    def report(self, key: IncidentKey, outcome: Outcome) -> int | None:
        """Whether to report ``outcome`` of incident ``key`` now: None when it repeats the
        last one reported (the repeat is counted instead); else the number of runs that
        repeated the previous one without a report (0 for an incident's first)."""
        last = self._last.get(key)
        if last is not None and last[0] == outcome and not outcome.always:
            self._last[key] = (outcome, last[1] + 1)
            return None
        self._last[key] = (outcome, 0)
        return 0 if last is None else last[1]

    def known(self, key: IncidentKey) -> bool:
        """Whether an outcome of this incident was reported (and it has not cleared)."""
        return key in self._last

    def forget(self, keys: Iterable[IncidentKey]) -> None:
        """Cleared incidents: the next outcome under the same key is a new incident's."""
        for key in keys:
            self._last.pop(key, None)

    def keep_only(self, keys: Iterable[IncidentKey]) -> None:
        """Forget every incident but these (the ones that stand)."""
        standing = set(keys)
        self._last = {k: v for k, v in self._last.items() if k in standing}
