"""The one JSON form of incidents: what every store keeps and every reply carries.

``record_from_json`` checks every field: a stored record it cannot read is a
``LedgerCorrupt`` naming the store, the incident and the field. Summaries (what a
list shows) are read on a checked fast path: a listing reads thousands.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from grinder.incidents.records import (
    SCHEMA,
    Ack,
    Evidence,
    IncidentRecord,
    IncidentSummary,
    LedgerCorrupt,
    Step,
    TradeRow,
    TradesEvidence,
)
from grinder.reconcile.labels import IncidentCause, ResultStatus
from grinder.reconcile.types import MismatchType


def record_to_json(rec: IncidentRecord) -> dict[str, Any]:
    """The record without its acknowledgement (stores keep that apart)."""
    return {
        "v": SCHEMA,
        "id": rec.id,
        "type": rec.type.value,
        "symbol": rec.symbol,
        "subject": rec.subject,
        "client_order_id": rec.client_order_id,
        "position_side": rec.position_side,
        "first_seen_ms": rec.first_seen_ms,
        "last_seen_ms": rec.last_seen_ms,
        "cleared_ms": rec.cleared_ms,
        "opened_run_id": rec.opened_run_id,
        "cause": rec.cause.value,
        "evidence": [
            {"kind": e.kind, "summary": e.summary, "ts_ms": e.ts_ms, "facts": dict(e.facts)}
            for e in rec.evidence
        ],
        "steps": [_step_to_json(s) for s in rec.steps],
        "steps_dropped": rec.steps_dropped,
        "facts": dict(rec.facts),
        "trades": None if rec.trades is None else trades_to_json(rec.trades),
    }


def trades_to_json(t: TradesEvidence) -> dict[str, Any]:
    return {
        "fetched_ms": t.fetched_ms,
        "start_ms": t.start_ms,
        "end_ms": t.end_ms,
        "difference": t.difference,
        "explained": t.explained,
        "signed_sum": t.signed_sum,
        "unexplained": t.unexplained,
        "trades": [
            {
                "trade_id": r.trade_id,
                "order_id": r.order_id,
                "side": r.side,
                "qty": r.qty,
                "price": r.price,
                "commission": r.commission,
                "commission_asset": r.commission_asset,
                "time_ms": r.time_ms,
                "position_side": r.position_side,
            }
            for r in t.trades
        ],
    }


def ack_to_json(ack: Ack) -> dict[str, Any]:
    return {"by": ack.by, "ts_ms": ack.ts_ms, "note": ack.note}


def summary_to_json(s: IncidentSummary) -> dict[str, Any]:
    return {
        "id": s.id,
        "type": s.type.value,
        "symbol": s.symbol,
        "subject": s.subject,
        "cause": s.cause.value,
        "first_seen_ms": s.first_seen_ms,
        "last_seen_ms": s.last_seen_ms,
        "cleared_ms": s.cleared_ms,
        "ack_by": s.ack_by,
        "ack_ts_ms": s.ack_ts_ms,
    }


def full_json(rec: IncidentRecord) -> dict[str, Any]:
    """The record with its acknowledgement: what ``show --json`` and the control socket give."""
    out = record_to_json(rec)
    out["ack"] = None if rec.ack is None else ack_to_json(rec.ack)
    return out


def _step_to_json(s: Step) -> dict[str, Any]:
    return {
        "ts_ms": s.ts_ms,
        "run_id": s.run_id,
        "status": s.status.value,
        "action": s.action,
        "mode": s.mode,
        "reason": s.reason,
        "gates": list(s.gates),
        "qty": s.qty,
        "notional": s.notional,
        "remediation_order_id": s.remediation_order_id,
        "error": s.error,
        "attempts": list(s.attempts),
        "repeats": s.repeats,
        "last_ts_ms": s.last_ts_ms,
    }


class _Reader:
    """Typed reads of one decoded object, each failure a ``LedgerCorrupt`` naming the field."""

    def __init__(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise LedgerCorrupt(f"{where}: expected a JSON object, got {type(obj).__name__}")
        self.obj: Mapping[str, Any] = obj
        self.where = where

    def _bad(self, key: str, expected: str) -> LedgerCorrupt:
        value = self.obj.get(key, "<missing>")
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}..."
        return LedgerCorrupt(f"{self.where}: field {key!r} is {shown}, expected {expected}")

    def text(self, key: str) -> str:
        value = self.obj.get(key)
        if isinstance(value, str) and value:
            return value
        raise self._bad(key, "a non-empty string")

    def number(self, key: str) -> str:
        """A decimal's text, as the record keeps quantities and prices (finite)."""
        value = self.obj.get(key)
        if isinstance(value, str):
            try:
                if Decimal(value).is_finite():
                    return value
            except InvalidOperation:
                pass
        raise self._bad(key, "a decimal number as a string")

    def opt_text(self, key: str) -> str | None:
        value = self.obj.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self._bad(key, "a string or null")

    def int_(self, key: str) -> int:
        value = self.obj.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise self._bad(key, "a whole number >= 0")

    def opt_int(self, key: str) -> int | None:
        return None if self.obj.get(key) is None else self.int_(key)

    def items(self, key: str) -> list[Any]:
        value = self.obj.get(key)
        if isinstance(value, list):
            return value
        raise self._bad(key, "a list")

    def texts(self, key: str) -> tuple[str, ...]:
        values = self.items(key)
        if all(isinstance(v, str) for v in values):
            return tuple(values)
        raise self._bad(key, "a list of strings")

    def pairs(self, key: str) -> tuple[tuple[str, str], ...]:
        value = self.obj.get(key)
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return tuple((str(k), v) for k, v in value.items())
        raise self._bad(key, "an object of strings")

    def flag(self, key: str) -> bool:
        value = self.obj.get(key)
        if isinstance(value, bool):
            return value
        raise self._bad(key, "true or false")

    def choice(self, key: str, enum: Any) -> Any:
        value = self.obj.get(key)
        try:
            return enum(value)
        except ValueError:
            known = ", ".join(e.value for e in enum)
            raise self._bad(key, f"one of {known}") from None


def record_from_json(obj: Any, where: str, ack: Ack | None = None) -> IncidentRecord:
    """The record ``obj`` holds (with ``ack`` from beside it); ``LedgerCorrupt`` otherwise."""
    r = _Reader(obj, where)
    version = r.obj.get("v")
    if version != SCHEMA:
        raise LedgerCorrupt(
            f"{where}: record version {version!r} is not {SCHEMA} (written by another grinder?)"
        )
    rid = r.text("id")
    here = f"{where} incident {rid}"
    r = _Reader(obj, here)
    evidence = []
    for n, item in enumerate(r.items("evidence")):
        e = _Reader(item, f"{here} evidence[{n}]")
        evidence.append(
            Evidence(e.text("kind"), e.text("summary"), e.opt_int("ts_ms"), e.pairs("facts"))
        )
    steps = [_step_from_json(item, f"{here} steps[{n}]") for n, item in enumerate(r.items("steps"))]
    return IncidentRecord(
        id=rid,
        type=r.choice("type", MismatchType),
        symbol=r.text("symbol"),
        subject=r.text("subject"),
        client_order_id=r.opt_text("client_order_id"),
        position_side=r.opt_text("position_side"),
        first_seen_ms=r.int_("first_seen_ms"),
        last_seen_ms=r.int_("last_seen_ms"),
        cleared_ms=r.opt_int("cleared_ms"),
        opened_run_id=r.text("opened_run_id"),
        cause=r.choice("cause", IncidentCause),
        evidence=tuple(evidence),
        steps=tuple(steps),
        steps_dropped=r.int_("steps_dropped"),
        facts=r.pairs("facts"),
        ack=ack,
        trades=None if obj.get("trades") is None else _trades_from_json(obj["trades"], here),
    )


def _trades_from_json(obj: Any, where: str) -> TradesEvidence:
    """A record's trades (absent from records written before they existed: None)."""
    here = f"{where} trades"
    t = _Reader(obj, here)
    rows = []
    for n, item in enumerate(t.items("trades")):
        r = _Reader(item, f"{here}[{n}]")
        rows.append(
            TradeRow(
                trade_id=r.int_("trade_id"),
                order_id=r.int_("order_id"),
                side=r.text("side"),
                qty=r.number("qty"),
                price=r.number("price"),
                commission=r.number("commission"),
                commission_asset=r.opt_text("commission_asset") or "",
                time_ms=r.int_("time_ms"),
                position_side=r.text("position_side"),
            )
        )
    return TradesEvidence(
        fetched_ms=t.int_("fetched_ms"),
        start_ms=t.int_("start_ms"),
        end_ms=t.int_("end_ms"),
        difference=t.number("difference"),
        explained=t.flag("explained"),
        signed_sum=t.number("signed_sum"),
        unexplained=t.number("unexplained"),
        trades=tuple(rows),
    )


def _step_from_json(obj: Any, where: str) -> Step:
    s = _Reader(obj, where)
    repeats = s.int_("repeats")
    if repeats < 1:
        raise LedgerCorrupt(f"{where}: field 'repeats' is {repeats}, expected 1 or more")
    return Step(
        ts_ms=s.int_("ts_ms"),
        run_id=s.text("run_id"),
        status=s.choice("status", ResultStatus),
        action=s.text("action"),
        mode=s.text("mode"),
        reason=s.opt_text("reason"),
        gates=s.texts("gates"),
        qty=s.opt_text("qty"),
        notional=s.opt_text("notional"),
        remediation_order_id=s.opt_text("remediation_order_id"),
        error=s.opt_text("error"),
        attempts=s.texts("attempts"),
        repeats=repeats,
        last_ts_ms=s.opt_int("last_ts_ms"),
    )


def ack_from_json(obj: Any, where: str) -> Ack:
    a = _Reader(obj, f"{where} acknowledgement")
    return Ack(by=a.text("by"), ts_ms=a.int_("ts_ms"), note=a.text("note"))


_TYPES = {t.value: t for t in MismatchType}
_CAUSES = {c.value: c for c in IncidentCause}


SUMMARY_KEYS = (
    "id",
    "type",
    "symbol",
    "subject",
    "cause",
    "first_seen_ms",
    "last_seen_ms",
    "cleared_ms",
)
"""The fields of a summary apart from its acknowledgement, in ``IncidentSummary`` order."""


def summary_from_json(obj: Any, where: str, ack: Ack | None = None) -> IncidentSummary:
    """A summary (``summary_to_json``); ``ack``, when given, is the acknowledgement kept
    beside it (a store's), else the one the object names (a reply's)."""
    if not isinstance(obj, dict) or not all(k in obj for k in SUMMARY_KEYS):
        return _checked_summary(obj, where, ack)
    summary = summary_from_values([obj[k] for k in SUMMARY_KEYS], where, ack)
    if ack is not None:
        return summary
    by, ts = obj.get("ack_by"), obj.get("ack_ts_ms")
    if (by is None or (type(by) is str and by)) and (ts is None or type(ts) is int):
        return summary._replace(ack_by=by, ack_ts_ms=ts)
    return _checked_summary(obj, where, None)


def summary_from_values(values: Any, where: str, ack: Ack | None = None) -> IncidentSummary:
    """A summary from its ``SUMMARY_KEYS`` values in order (a store's compact form). Read on
    the fast path (listing reads thousands); anything unexpected is read again field by
    field, for the message that names it."""
    try:
        rid, type_, symbol, subject, cause, first, last, cleared = values
        summary = IncidentSummary(
            rid,
            _TYPES[type_],
            symbol,
            subject,
            _CAUSES[cause],
            first,
            last,
            cleared,
            None if ack is None else ack.by,
            None if ack is None else ack.ts_ms,
        )
    except (KeyError, TypeError, ValueError):
        summary = None
    if (
        summary is not None
        and all(type(t) is str and t for t in (summary.id, summary.symbol, summary.subject))
        and type(first) is int
        and type(last) is int
        and first >= 0
        and last >= 0
        and (cleared is None or (type(cleared) is int and cleared >= 0))
    ):
        return summary
    if isinstance(values, list | tuple) and len(values) == len(SUMMARY_KEYS):
        return _checked_summary(dict(zip(SUMMARY_KEYS, values, strict=True)), where, ack)
    raise LedgerCorrupt(f"{where}: a summary is not {len(SUMMARY_KEYS)} values: {values!r:.60}")


def _checked_summary(obj: Any, where: str, ack: Ack | None) -> IncidentSummary:
    r = _Reader(obj, where)
    rid = r.text("id")
    r = _Reader(obj, f"{where} incident {rid}")
    return IncidentSummary(
        id=rid,
        type=r.choice("type", MismatchType),
        symbol=r.text("symbol"),
        subject=r.text("subject"),
        cause=r.choice("cause", IncidentCause),
        first_seen_ms=r.int_("first_seen_ms"),
        last_seen_ms=r.int_("last_seen_ms"),
        cleared_ms=r.opt_int("cleared_ms"),
        ack_by=r.opt_text("ack_by") if ack is None else ack.by,
        ack_ts_ms=r.opt_int("ack_ts_ms") if ack is None else ack.ts_ms,
    )
