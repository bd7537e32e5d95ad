"""Why an incident happened, from evidence: a pure classifier.

``classify(facts)`` reads one mismatch and what the service learned around it
(``CaseFacts``: the order's stream events, the fills on the position, rejected
triggers, triage's lookup, the stream's reconnect windows, the bot's heartbeat)
and returns the cause with the evidence that decided it -- ``unknown`` when none
does, with what was looked at. The first rule that matches decides:

orders (``client_order_id`` set)
  1. the id's own family: liquidation ``autoclose-``, ADL ``adl_autoclose``,
     settlement ``settlement_autoclose-`` / ``delivery_autoclose-``, the exchange's
     apps ``web_`` ``ios_`` ``android_`` ``electron_`` (manual); an id of ours at
     level ``R`` (remediation's own order);
  2. the order's events: ``EXPIRED_IN_MATCH`` or expiry reason 1 / 3 (self-trade
     prevention), 6 (a GTE_GTC order whose position closed), 5 (liquidation), 7
     (settlement); an algo order ``REJECTED`` or a ``CONDITIONAL_ORDER_TRIGGER_REJECT``
     (trigger rejected);
  3. the status the exchange gave without an event: ``EXPIRED_IN_MATCH``;
  4. triage found the order ended: in a reconnect window (stream gap), else a
     stream event the service never received;
  5. an order of ours the bot never recorded while its heartbeat was stale (bot stopped);
  6. an order the bot holds open that the exchange ended (CANCELED, EXPIRED) while the
     bot's heartbeat was stale (bot stopped: the dead-man switch's countdown, D62).

positions
  1. the fills on the position (symbol, side) that no order of the bot's made, from a
     minute before the position last changed: liquidation, ADL, settlement, manual,
     remediation's own order, another strategy -- in that order;
  2. the bot's heartbeat was stale (bot stopped).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from grinder.exchange.binance.stream_windows import ReconnectWindow
from grinder.incidents.facts import (
    CaseFacts,
    FillFact,
    OrderEventFact,
    TriageFact,
    TriggerRejectFact,
)
from grinder.incidents.records import Evidence
from grinder.reconcile.identity import Ownership, id_family, ownership, parse_client_order_id
from grinder.reconcile.labels import IncidentCause, TriageOutcome
from grinder.reconcile.types import MismatchType, OrderStatus

C = IncidentCause

FAMILY_CAUSES: dict[str, IncidentCause] = {
    "autoclose-": C.LIQUIDATION,
    "adl_autoclose": C.ADL,
    "settlement_autoclose-": C.SETTLEMENT,
    "delivery_autoclose-": C.SETTLEMENT,
    "web_": C.MANUAL,
    "ios_": C.MANUAL,
    "android_": C.MANUAL,
    "electron_": C.MANUAL,
}
"""The cause of each exchange id family (``reconcile.identity.EXCHANGE_ID_FAMILIES``)."""

EXPIRY_CAUSES: dict[str, IncidentCause] = {
    "1": C.SELF_TRADE_PREVENTION,
    "3": C.SELF_TRADE_PREVENTION,
    "5": C.LIQUIDATION,
    "6": C.GTE_POSITION_CLOSED,
    "7": C.SETTLEMENT,
}
"""Binance's expiry reasons (``ORDER_TRADE_UPDATE`` ``o.er``) that name a cause."""

FILL_PRIORITY = (
    C.LIQUIDATION,
    C.ADL,
    C.SETTLEMENT,
    C.MANUAL,
    C.REMEDIATION_ORDER,
    C.OTHER_STRATEGY,
)
"""Which cause of a position's unrecorded fills wins when there are several."""

FILL_WINDOW_MS = 60_000
"""Fills up to this long before the position's last change count for its incident."""
FILL_LOOKBACK_MS = 15 * 60_000
"""Without the position's last change, fills of the last 15 minutes count."""
GAP_MARGIN_MS = 1_000
"""An order that ended up to 1 s before its stream dropped counts as ended in the gap."""
MAX_CONTEXT = 3
"""Evidence items shown with an ``unknown`` cause (what was looked at)."""


@dataclass(frozen=True, slots=True)
class CauseVerdict:
    cause: IncidentCause
    evidence: tuple[Evidence, ...] = ()


def classify(facts: CaseFacts) -> CauseVerdict:
    m = facts.mismatch
    if m.client_order_id is not None:
        verdict = _order_cause(facts, m.client_order_id)
    else:
        verdict = _position_cause(facts)
    if verdict is not None:
        return verdict
    return CauseVerdict(C.UNKNOWN, _context(facts))


# --- orders ------------------------------------------------------------------------------------


def _order_cause(facts: CaseFacts, cid: str) -> CauseVerdict | None:
    m = facts.mismatch
    by_id = _id_cause(cid, facts)
    if by_id is not None:
        return CauseVerdict(by_id, (_id_evidence(cid, by_id),))
    for event in reversed(facts.order_events):
        cause = _event_cause(event)
        if cause is not None:
            return CauseVerdict(cause, (_event_evidence(event),))
    rejects = [r for r in facts.trigger_rejects if r.client_order_id == cid]
    if rejects:
        return CauseVerdict(C.TRIGGER_REJECTED, (_reject_evidence(rejects[-1]),))
    if m.observed_status == OrderStatus.EXPIRED_IN_MATCH.value:
        return CauseVerdict(
            C.SELF_TRADE_PREVENTION,
            (
                Evidence(
                    "order_status",
                    f"the exchange reports {cid} EXPIRED_IN_MATCH (no stream event of it)",
                    facts.now_ms,
                    (("status", m.observed_status),),
                ),
            ),
        )
    triage = facts.triage
    if triage is not None and triage.outcome is TriageOutcome.FOUND_ENDED:
        return _triage_cause(triage, facts.windows)
    if m.type is MismatchType.ORDER_EXISTS_UNEXPECTED:
        return _bot_stopped(facts)
    if m.type is MismatchType.ORDER_STATUS_DIVERGENCE and m.observed_status in ENDED_UNFILLED:
        return _ended_while_stopped(facts, cid, m.observed_status)
    return None


ENDED_UNFILLED = frozenset({OrderStatus.CANCELED.value, OrderStatus.EXPIRED.value})
"""What the exchange ends a resting order with when nobody asked it to (no expiry reason
of its own): the dead-man switch's countdown, among others."""


def _ended_while_stopped(facts: CaseFacts, cid: str, status: str) -> CauseVerdict | None:
    """An order the bot holds open that the exchange ended while the bot's heartbeat was
    stale: the bot stopped (with the dead-man switch on, its countdown cancels the orders
    of a bot that stopped recording, D62)."""
    stopped = _bot_stopped(facts)
    if stopped is None:
        return None
    ended = Evidence(
        "order_status",
        f"the exchange reports {cid} {status} while the bot still holds it open",
        facts.now_ms,
        (("status", status),),
    )
    return CauseVerdict(C.BOT_STOPPED, (*stopped.evidence, ended))


def _id_cause(cid: str, facts: CaseFacts) -> IncidentCause | None:
    family = id_family(cid)
    if family is not None:
        return FAMILY_CAUSES[family]
    parsed = parse_client_order_id(cid, facts.prefix)
    if parsed is not None and parsed.is_remediation:
        return C.REMEDIATION_ORDER
    return None


def _id_evidence(cid: str, cause: IncidentCause) -> Evidence:
    family = id_family(cid)
    if family is not None:
        what = f"an id of the exchange's {family}… family"
    else:
        what = "an id of ours at level R: remediation placed it"
    return Evidence("client_order_id", f"{cid}: {what}", None, (("client_order_id", cid),))


def _event_cause(event: OrderEventFact) -> IncidentCause | None:
    if event.status == OrderStatus.EXPIRED_IN_MATCH.value:
        return C.SELF_TRADE_PREVENTION
    if event.expiry_reason in EXPIRY_CAUSES:
        return EXPIRY_CAUSES[event.expiry_reason]
    if event.event == "ALGO_UPDATE" and event.status == "REJECTED":
        return C.TRIGGER_REJECTED
    return None


def _event_evidence(event: OrderEventFact) -> Evidence:
    parts = [f"{event.event} {event.symbol} {event.client_order_id}"]
    if event.execution_type:
        parts.append(f"x={event.execution_type}")
    parts.append(f"X={event.status}")
    for label, value in (
        ("f", event.time_in_force),
        ("V", event.stp_mode),
        ("er", event.expiry_reason),
        ("rm", event.reject_reason),
    ):
        if value:
            parts.append(f"{label}={value}")
    if event.filled_qty not in ("0", ""):
        parts.append(f"filled {event.filled_qty}")
    facts = tuple(
        (k, v)
        for k, v in (
            ("event", event.event),
            ("client_order_id", event.client_order_id),
            ("status", event.status),
            ("execution_type", event.execution_type),
            ("expiry_reason", event.expiry_reason),
            ("time_in_force", event.time_in_force),
            ("stp_mode", event.stp_mode),
            ("reject_reason", event.reject_reason),
        )
        if v
    )
    return Evidence("order_event", " ".join(parts), event.ts_ms, facts)


def _reject_evidence(r: TriggerRejectFact) -> Evidence:
    facts = [("symbol", r.symbol), ("reason", r.reason)]
    if r.order_id is not None:
        facts.append(("order_id", str(r.order_id)))
    return Evidence(
        "trigger_reject",
        f"CONDITIONAL_ORDER_TRIGGER_REJECT {r.symbol} order {r.order_id}: {r.reason}",
        r.ts_ms,
        tuple(facts),
    )


def _triage_cause(triage: TriageFact, windows: Sequence[ReconnectWindow]) -> CauseVerdict:
    ended = triage.update_ts_ms
    found = Evidence(
        "triage",
        f"a lookup of {triage.client_order_id} found it {triage.status or 'ended'}; no stream "
        "event had brought that",
        triage.ts_ms,
        tuple(
            (k, v)
            for k, v in (
                ("outcome", triage.outcome.value),
                ("status", triage.status),
                ("ended_ms", None if ended is None else str(ended)),
            )
            if v is not None
        ),
    )
    if ended is not None:
        for window in windows:
            if window.covers(ended, margin_ms=GAP_MARGIN_MS):
                end = "still open" if window.end_ms is None else f"live again {window.end_ms}"
                gap = Evidence(
                    "stream_gap",
                    f"the order ended at {ended}, while the user-data stream was reconnecting "
                    f"(not live from {window.start_ms}, {end})",
                    window.start_ms,
                    (
                        ("window_start_ms", str(window.start_ms)),
                        ("window_end_ms", "" if window.end_ms is None else str(window.end_ms)),
                    ),
                )
                return CauseVerdict(C.STREAM_GAP, (gap, found))
    return CauseVerdict(C.MISSED_STREAM_EVENT, (found,))


def _bot_stopped(facts: CaseFacts) -> CauseVerdict | None:
    age = facts.heartbeat_age_s
    if age is None or age <= facts.max_heartbeat_age_s:
        return None
    shown = "never written" if age == float("inf") else f"{age:.1f} s old"
    return CauseVerdict(
        C.BOT_STOPPED,
        (
            Evidence(
                "heartbeat",
                f"the bot's heartbeat was {shown} (limit {facts.max_heartbeat_age_s:g} s): it "
                "had stopped recording",
                facts.now_ms,
                (
                    ("heartbeat_age_s", "inf" if age == float("inf") else f"{age:.1f}"),
                    ("max_age_s", f"{facts.max_heartbeat_age_s:g}"),
                ),
            ),
        ),
    )


# --- positions ---------------------------------------------------------------------------------


def _position_cause(facts: CaseFacts) -> CauseVerdict | None:
    candidates: dict[IncidentCause, FillFact] = {}
    for fill in _relevant_fills(facts):
        cause = _fill_cause(fill, facts)
        if cause is not None:
            candidates[cause] = fill  # the latest fill of each cause
    for cause in FILL_PRIORITY:
        if cause in candidates:
            return CauseVerdict(cause, (_fill_evidence(candidates[cause], cause),))
    return _bot_stopped(facts)


def _relevant_fills(facts: CaseFacts) -> Iterable[FillFact]:
    m = facts.mismatch
    side = m.position_side.value if m.position_side is not None else "BOTH"
    since = (
        facts.position_changed_ms - FILL_WINDOW_MS
        if facts.position_changed_ms is not None
        else facts.now_ms - FILL_LOOKBACK_MS
    )
    return (
        f
        for f in facts.fills
        if f.symbol == m.symbol
        and f.position_side == side
        and f.ts_ms >= since
        and not f.recorded_by_bot
    )


def _fill_cause(fill: FillFact, facts: CaseFacts) -> IncidentCause | None:
    by_id = _id_cause(fill.client_order_id, facts)
    if by_id is not None:
        return by_id
    verdict = ownership(
        fill.client_order_id, prefix=facts.prefix, strategy_allowlist=facts.strategy_allowlist
    )
    if verdict is Ownership.OURS:
        return None  # an order of ours the bot did not record: the heartbeat may tell
    return C.OTHER_STRATEGY


def _fill_evidence(fill: FillFact, cause: IncidentCause) -> Evidence:
    return Evidence(
        "fill",
        f"{fill.side} {fill.qty} {fill.symbol} {fill.position_side} by {fill.client_order_id} "
        f"(x={fill.execution_type}), an order the bot does not record",
        fill.ts_ms,
        (
            ("client_order_id", fill.client_order_id),
            ("side", fill.side),
            ("qty", fill.qty),
            ("execution_type", fill.execution_type),
            ("cause", cause.value),
        ),
    )


# --- context of an unknown cause ------------------------------------------------------------------


def _context(facts: CaseFacts) -> tuple[Evidence, ...]:
    """What was looked at when nothing decided (the latest first, at most ``MAX_CONTEXT``)."""
    out: list[Evidence] = [_event_evidence(e) for e in reversed(facts.order_events)]
    if facts.mismatch.client_order_id is None:
        out.extend(
            Evidence(
                "fill",
                f"{f.side} {f.qty} by {f.client_order_id} (recorded by the bot: "
                f"{'yes' if f.recorded_by_bot else 'no'})",
                f.ts_ms,
                (("client_order_id", f.client_order_id),),
            )
            for f in reversed(facts.fills)
        )
    if facts.triage is not None:
        t = facts.triage
        out.append(
            Evidence(
                "triage",
                f"lookup of {t.client_order_id}: {t.outcome.value}",
                t.ts_ms,
                (("outcome", t.outcome.value),),
            )
        )
    return tuple(out[:MAX_CONTEXT])
