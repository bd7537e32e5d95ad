"""What the console shows, built from what the service knows (pure: no I/O, no clock).

The gate chain of each incident's candidate is an ``Explanation`` of
``grinder.reconcile.explain`` (the one gate table, ``reconcile/gates.py``); how to open
its first blocking gate is ``HOW_TO_OPEN`` of the same table. Every text from the
exchange or an operator goes through ``grinder.redaction`` here (``Masker``: once per distinct
text and page); the template escapes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from grinder.incidents.records import IncidentRecord, IncidentSummary, TradesEvidence
from grinder.incidents.render import (
    duration,
    state,
    trade_fee,
    trades_verdict,
    trades_window,
    utc,
    utc_ms,
)
from grinder.operator.state import ROLLBACKS
from grinder.reconcile.explain import HOW_TO_OPEN, Explanation, Verdict
from grinder.redaction import redact, redact_text

REFRESH_S = 5
"""The page reloads itself this often (``<meta http-equiv="refresh">``)."""

CLEARED_SHOWN = 20
"""The most recent cleared incidents the page lists."""

_LIFT = {r.name: f"grinder control lift {r.name}" for r in ROLLBACKS}


@dataclass(frozen=True, slots=True)
class Row:
    """One labelled value (a setting, a budget figure, an evidence fact)."""

    name: str
    value: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class GateRow:
    gate: str
    name: str
    verdict: str
    detail: str
    ok: bool
    """False only for a failing gate (red); passing, skipped, not applicable are not red."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """The remediation an incident calls for and the gate chain it meets now."""

    action: str
    outcome: str
    gates: tuple[GateRow, ...]
    first_block: str | None = None
    how_to_open: str | None = None


@dataclass(frozen=True, slots=True)
class EvidenceView:
    kind: str
    summary: str
    when: str
    facts: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class TradeView:
    time: str
    side: str
    qty: str
    price: str
    fee: str
    order_id: str
    trade_id: str


@dataclass(frozen=True, slots=True)
class TradesView:
    """The account's trades behind a position incident and whether they explain it."""

    verdict: str
    explained: bool
    window: str
    trades: tuple[TradeView, ...]


@dataclass(frozen=True, slots=True)
class IncidentView:
    id: str
    type: str
    symbol: str
    subject: str
    cause: str
    opened: str
    state: str
    ack: str
    evidence: tuple[EvidenceView, ...]
    steps: int
    candidate: Candidate | None
    """None: the mismatch calls for no remediation (alert only), or none is known."""
    no_candidate: str
    ack_command: str
    trades: TradesView | None = None


@dataclass(frozen=True, slots=True)
class ClearedView:
    id: str
    type: str
    symbol: str
    subject: str
    cause: str
    cleared: str
    state: str


@dataclass(frozen=True, slots=True)
class Deployment:
    venue: str
    mode: str
    leader: str
    armed: str
    rollbacks: tuple[Row, ...]
    """Each standing rollback with the command that lifts it."""
    operator_problem: str
    settings: tuple[Row, ...]
    budget: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class ConsolePage:
    generated: str
    refresh_s: int
    deployment: Deployment
    open_incidents: tuple[IncidentView, ...]
    cleared: tuple[ClearedView, ...]


class Masker:
    """``grinder.redaction.redact_text`` for one page: each distinct text masked once.

    The same texts repeat across a page's incidents (gate details, symbols, evidence): a
    page of 100 gate chains holds ~1,500 texts, most of them alike. One ``Masker`` per page,
    never kept longer: a secret registered later is masked on the next page.
    """

    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        done = self._done.get(text)
        if done is None:
            done = self._done[text] = redact_text(text)
        return done

    def value(self, value: Any) -> str:
        """A value as the page shows it: ``-`` for none, ``true``/``false``, masked text."""
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "true" if value else "false"
        return self(str(value))


def _text(value: Any) -> str:
    return Masker().value(value)


def _leader(ha: Mapping[str, Any]) -> str:
    if not ha.get("enabled"):
        return "alone (no HA): this instance"
    who = "this instance is the leader" if ha.get("leader") else "this instance is a follower"
    extra = [
        f"{k} {_text(ha[k])}"
        for k in ("instance_id", "last_seen_holder", "token")
        if ha.get(k) is not None
    ]
    return f"{who} ({', '.join(extra)})" if extra else who


def _setting(name: str, entry: Any) -> Row:
    if not isinstance(entry, Mapping):
        return Row(name, _text(entry))
    source = " ".join(_text(entry[k]) for k in ("source", "where") if entry.get(k))
    if entry.get("by"):
        source += f" by {_text(entry['by'])}: {_text(entry.get('reason'))}"
    note = ""
    configured = entry.get("configured")
    if isinstance(configured, Mapping):
        note = f"configured {_text(configured.get('value'))} ({_text(configured.get('source'))})"
    return Row(name, _text(entry.get("value")), f"{source}; {note}" if note else source)


def deployment_view(status: Mapping[str, Any]) -> Deployment:
    """The deployment as ``/status`` describes it (the same dict the control socket serves)."""
    status = redact(status, by_name=True)
    operator = status.get("operator") or {}
    words = {w.get("field"): w for w in operator.get("words") or () if isinstance(w, Mapping)}
    rollbacks = []
    for r in ROLLBACKS:
        if r.name in (operator.get("rollbacks") or ()):
            w = words.get(r.field) or {}
            who = f"{_text(w.get('by'))} at {utc(w.get('at_ms'))}: {_text(w.get('reason'))}"
            rollbacks.append(Row(r.name, _LIFT[r.name], who))
    budget = status.get("budget") or {}
    return Deployment(
        venue=_text(status.get("venue")),
        mode=_text(status.get("mode")),
        leader=_leader(status.get("ha") or {}),
        armed=_text(status.get("armed")),
        rollbacks=tuple(rollbacks),
        operator_problem=_text(operator.get("problem")) if operator.get("problem") else "",
        settings=tuple(_setting(k, v) for k, v in sorted((status.get("settings") or {}).items())),
        budget=tuple(Row(k, _text(v)) for k, v in sorted(budget.items())),
    )


def candidate_view(exp: Explanation, mask: Masker | None = None) -> Candidate:
    mask = mask or Masker()
    rows = tuple(
        GateRow(c.gate, c.name, c.verdict.value, mask(c.detail), c.verdict is not Verdict.FAIL)
        for c in exp.checks
    )
    first = exp.first_blocking_check
    how = None
    if first is not None and first.reason is not None:
        how = HOW_TO_OPEN.get(first.reason)
    return Candidate(
        action=exp.kind.value,
        outcome=exp.outcome.value,
        gates=rows,
        first_block=None if first is None else f"gate {first.gate} {first.name}",
        how_to_open=how,
    )


def _evidence(rec: IncidentRecord, mask: Masker) -> tuple[EvidenceView, ...]:
    text = mask.value
    return tuple(
        EvidenceView(
            kind=text(e.kind),
            summary=text(e.summary),
            when=utc(e.ts_ms),
            facts=tuple(Row(text(k), text(v)) for k, v in e.facts),
        )
        for e in rec.evidence
    )


def trades_view(t: TradesEvidence | None, mask: Masker | None = None) -> TradesView | None:
    if t is None:
        return None
    _text = (mask or Masker()).value
    return TradesView(
        verdict=_text(trades_verdict(t)),
        explained=t.explained,
        window=trades_window(t),
        trades=tuple(
            TradeView(
                time=utc_ms(r.time_ms),
                side=_text(r.side),
                qty=_text(r.qty),
                price=_text(r.price),
                fee=_text(trade_fee(r)),
                order_id=str(r.order_id),
                trade_id=str(r.trade_id),
            )
            for r in t.trades
        ),
    )


def incident_view(
    rec: IncidentRecord,
    candidate: Explanation | str | None,
    now_ms: int,
    mask: Masker | None = None,
) -> IncidentView:
    """One incident; ``candidate``: its gate chain now, or why it has none (text); ``mask``:
    the page's ``Masker``."""
    mask = mask or Masker()
    text = mask.value
    ack = "-" if rec.ack is None else f"{text(rec.ack.by)}: {text(rec.ack.note)}"
    return IncidentView(
        id=text(rec.id),
        type=rec.type.value,
        symbol=text(rec.symbol),
        subject=text(rec.subject),
        cause=rec.cause.value,
        opened=utc(rec.first_seen_ms),
        state=state(rec.first_seen_ms, rec.cleared_ms, now_ms),
        ack=ack,
        evidence=_evidence(rec, mask),
        steps=len(rec.steps) + rec.steps_dropped,
        candidate=candidate_view(candidate, mask) if isinstance(candidate, Explanation) else None,
        no_candidate=candidate if isinstance(candidate, str) else "",
        ack_command=f'grinder incidents ack {text(rec.id)} --note "<why>"',
        trades=trades_view(rec.trades, mask),
    )


def cleared_view(s: IncidentSummary) -> ClearedView:
    cleared = s.cleared_ms if s.cleared_ms is not None else s.last_seen_ms
    return ClearedView(
        id=_text(s.id),
        type=s.type.value,
        symbol=_text(s.symbol),
        subject=_text(s.subject),
        cause=s.cause.value,
        cleared=utc(cleared),
        state=f"cleared after {duration(cleared - s.first_seen_ms)}",
    )


def console_page(
    status: Mapping[str, Any],
    incidents: Sequence[IncidentView],
    cleared: Sequence[IncidentSummary],
    now_ms: int,
) -> ConsolePage:
    return ConsolePage(
        generated=utc(now_ms),
        refresh_s=REFRESH_S,
        deployment=deployment_view(status),
        open_incidents=tuple(incidents),
        cleared=tuple(cleared_view(s) for s in cleared[:CLEARED_SHOWN]),
    )
