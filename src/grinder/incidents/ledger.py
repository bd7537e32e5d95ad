"""The ledger's decisions, pure: given an incident's record and what happened, its next record.

Nothing here reads a clock, a store or the environment: the times come in as
arguments, the records go out as new frozen values. The shell
(``grinder.incidents.sink``) decides *when* each applies and stores the result.

* ``opened`` -- a mismatch no open incident holds: a new record, its id, its cause;
* ``seen`` -- the mismatch still stands (``last_seen_ms``);
* ``reclassified`` -- a cause still ``unknown`` gets one when evidence arrives later
  (a cause once decided is kept: the evidence that decided it does not expire);
* ``cleared`` -- the mismatch no longer stands;
* ``with_step`` / ``with_steps`` -- remediation outcomes; a blocked or skipped step that
  repeats the last one is counted in it, and a record keeps at most ``MAX_STEPS`` steps
  (the first, and the latest);
* ``with_trades`` -- the account's trades behind a position incident (the latest fetch);
* ``acknowledged`` -- an operator's acknowledgement, which needs a note;
* ``to_drop`` -- which cleared incidents retention removes (never an open one).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from grinder.incidents.causes import CauseVerdict
from grinder.incidents.records import (
    Ack,
    IncidentKey,
    IncidentRecord,
    LedgerError,
    Step,
    TradesEvidence,
)
from grinder.reconcile.actions import ActionResult
from grinder.reconcile.labels import IncidentCause, ResultStatus
from grinder.reconcile.types import Mismatch

MAX_STEPS = 50
MAX_NOTE_CHARS = 500
MAX_BY_CHARS = 64
DAY_MS = 86_400_000
DEFAULT_RETENTION_DAYS = 30.0
DEFAULT_MAX_INCIDENTS = 10_000


def incident_id(key: IncidentKey, first_seen_ms: int) -> str:
    """``INC-`` and 10 base-32 characters of a hash of the key and the first sighting: the
    same incident gets the same id wherever it is computed, different ones differ."""
    digest = hashlib.sha256(f"{'|'.join(key)}|{first_seen_ms}".encode()).digest()
    return "INC-" + base64.b32encode(digest[:10]).decode("ascii")[:10]


def opened(m: Mismatch, now_ms: int, run_id: str, verdict: CauseVerdict) -> IncidentRecord:
    key = m.key
    return IncidentRecord(
        id=incident_id(key, now_ms),
        type=m.type,
        symbol=m.symbol,
        subject=key[2],
        client_order_id=m.client_order_id,
        position_side=m.position_side.value if m.position_side is not None else None,
        first_seen_ms=now_ms,
        last_seen_ms=now_ms,
        opened_run_id=run_id,
        cause=verdict.cause,
        evidence=verdict.evidence,
        facts=tuple((k, _text(v)) for k, v in {**m.as_dict(), **m.details}.items()),
    )


def seen(rec: IncidentRecord, now_ms: int) -> IncidentRecord:
    if not rec.is_open or now_ms <= rec.last_seen_ms:
        return rec
    return replace(rec, last_seen_ms=now_ms)


def reclassified(rec: IncidentRecord, verdict: CauseVerdict) -> IncidentRecord:
    """A cause for an incident whose cause is still unknown; any other record as it is."""
    if rec.cause is not IncidentCause.UNKNOWN or verdict.cause is IncidentCause.UNKNOWN:
        return rec
    return replace(rec, cause=verdict.cause, evidence=verdict.evidence)


def cleared(rec: IncidentRecord, now_ms: int) -> IncidentRecord:
    if not rec.is_open:
        return rec
    return replace(rec, cleared_ms=max(now_ms, rec.last_seen_ms))


def step_of(result: ActionResult) -> Step:
    """One remediation outcome as a step of its incident."""
    blocked = result.status is ResultStatus.BLOCKED
    return Step(
        ts_ms=result.ts_ms,
        run_id=result.run_id,
        status=result.status,
        action=result.kind.label.value,
        mode=result.mode.value,
        reason=None if result.reason is None else str(result.reason),
        gates=(str(result.reason),) if blocked and result.reason is not None else (),
        qty=_opt_text(result.qty),
        notional=_opt_text(result.notional),
        remediation_order_id=result.remediation_order_id,
        error=result.error,
        attempts=tuple(a.value for a in result.attempts),
    )


def with_step(rec: IncidentRecord, step: Step) -> IncidentRecord:
    return with_steps(rec, (step,))


def with_steps(rec: IncidentRecord, steps: Iterable[Step]) -> IncidentRecord:
    """``rec`` with ``steps`` added in order (each as ``with_step`` says), as one new record."""
    kept = list(rec.steps)
    dropped = rec.steps_dropped
    repeats = 0  # of kept[-1], not yet counted in it
    last_ts: int | None = None
    for step in steps:
        if kept and kept[-1].same_as(step):
            repeats += 1
            last_ts = step.ts_ms
            continue
        if repeats:
            kept[-1] = _repeated(kept[-1], repeats, last_ts)
            repeats = 0
        kept.append(step)
        if len(kept) > MAX_STEPS:
            del kept[1]
            dropped += 1
    if repeats:
        kept[-1] = _repeated(kept[-1], repeats, last_ts)
    if kept == list(rec.steps):
        return rec
    return replace(rec, steps=tuple(kept), steps_dropped=dropped)


def _repeated(step: Step, more: int, last_ts: int | None) -> Step:
    return replace(step, repeats=step.repeats + more, last_ts_ms=last_ts)


def with_trades(rec: IncidentRecord, trades: TradesEvidence) -> IncidentRecord:
    """An open incident with the trades of the latest fetch (they replace earlier ones); a
    cleared one as it is (its difference is gone)."""
    return replace(rec, trades=trades) if rec.is_open else rec


def check_ack(by: str, note: str) -> tuple[str, str]:
    """``(by, note)`` cleaned to one line each; ``LedgerError`` when either is empty or long."""
    by_line = " ".join(by.split())
    note_line = " ".join(note.split())
    if not note_line:
        raise LedgerError("--note: an acknowledgement needs a note (what was done, or why not)")
    if len(note_line) > MAX_NOTE_CHARS:
        raise LedgerError(f"--note: at most {MAX_NOTE_CHARS} characters, got {len(note_line)}")
    if not by_line:
        raise LedgerError("--by: who acknowledges must not be empty")
    if len(by_line) > MAX_BY_CHARS:
        raise LedgerError(f"--by: at most {MAX_BY_CHARS} characters, got {len(by_line)}")
    return by_line, note_line


def acknowledged(rec: IncidentRecord, by: str, note: str, now_ms: int) -> IncidentRecord:
    """The record acknowledged now (a later acknowledgement replaces an earlier one)."""
    by_line, note_line = check_ack(by, note)
    return replace(rec, ack=Ack(by=by_line, ts_ms=now_ms, note=note_line))


# --- retention ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Retention:
    """How long and how many cleared incidents are kept. Open ones are always kept."""

    max_age_ms: int = int(DEFAULT_RETENTION_DAYS * DAY_MS)
    max_count: int = DEFAULT_MAX_INCIDENTS

    def __post_init__(self) -> None:
        if self.max_age_ms < 1 or self.max_count < 1:
            raise ValueError("incident retention: max_age_ms and max_count must be >= 1")


@dataclass(frozen=True, slots=True)
class RetentionEntry:
    """What retention reads of one stored incident."""

    id: str
    first_seen_ms: int
    cleared_ms: int | None


def to_drop(entries: Iterable[RetentionEntry], now_ms: int, retention: Retention) -> list[str]:
    """The cleared incidents to remove: those cleared more than ``max_age_ms`` ago, then the
    oldest cleared ones until at most ``max_count`` incidents remain."""
    all_entries = list(entries)
    ended = sorted(
        (e for e in all_entries if e.cleared_ms is not None),
        key=lambda e: (e.first_seen_ms, e.id),
    )
    horizon = now_ms - retention.max_age_ms
    drop = [e.id for e in ended if e.cleared_ms is not None and e.cleared_ms < horizon]
    excess = len(all_entries) - len(drop) - retention.max_count
    if excess > 0:
        dropped = set(drop)
        drop.extend([e.id for e in ended if e.id not in dropped][:excess])
    return drop


def _text(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _opt_text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
