"""The ledger as text: one line per incident (``list``), one incident whole (``show``).

Times are UTC; ages and durations are against ``now_ms`` handed in. The JSON form
(``--json``, the control socket) is ``records.summary_to_json`` / ``records.full_json``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from grinder.incidents.records import (
    IncidentRecord,
    IncidentSummary,
    Step,
    TradeRow,
    TradesEvidence,
)


def utc(ts_ms: int | None) -> str:
    if ts_ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ms // 1000))


def duration(ms: int) -> str:
    """``45s``, ``12m05s``, ``3h02m``, ``2d04h``."""
    s = max(0, ms) // 1000
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def state(first_seen_ms: int, cleared_ms: int | None, now_ms: int) -> str:
    if cleared_ms is None:
        return f"open {duration(now_ms - first_seen_ms)}"
    return f"cleared after {duration(cleared_ms - first_seen_ms)}"


_HEAD = ("ID", "OPENED (UTC)", "STATE", "TYPE", "SYMBOL", "SUBJECT", "CAUSE", "ACK")


def table(items: Sequence[IncidentSummary], now_ms: int) -> list[str]:
    """The ``list`` lines: a header, one row per incident, columns aligned."""
    rows = [_HEAD] + [
        (
            s.id,
            utc(s.first_seen_ms),
            state(s.first_seen_ms, s.cleared_ms, now_ms),
            s.type.value,
            s.symbol,
            s.subject,
            s.cause.value,
            s.ack_by or "-",
        )
        for s in items
    ]
    columns = list(zip(*rows, strict=True))
    line = "  ".join(f"{{{i}:<{max(map(len, c))}}}" for i, c in enumerate(columns))
    return [line.format(*r).rstrip() for r in rows]


def footer(items: Sequence[IncidentSummary], where: str) -> str:
    opened = sum(1 for s in items if s.is_open)
    unacked = sum(1 for s in items if s.is_open and s.ack_by is None)
    return f"{len(items)} incident(s), {opened} open ({unacked} not acknowledged) -- {where}"


def _step(s: Step) -> str:
    parts = [utc(s.ts_ms), s.status.value, s.action, s.mode]
    if s.gates:
        parts.append("gates=" + ",".join(s.gates))
    elif s.reason:
        parts.append(f"reason={s.reason}")
    for label, value in (
        ("qty", s.qty),
        ("notional", s.notional),
        ("order", s.remediation_order_id),
    ):
        if value:
            parts.append(f"{label}={value}")
    if s.attempts:
        parts.append("exchange=" + ",".join(s.attempts))
    if s.error:
        parts.append(f"error={' '.join(s.error.split())}")
    if s.repeats > 1:
        parts.append(f"(x{s.repeats}, last {utc(s.last_ts_ms)})")
    return " ".join(parts)


def utc_ms(ts_ms: int) -> str:
    return f"{utc(ts_ms)}.{ts_ms % 1000:03d}"


def trades_verdict(t: TradesEvidence) -> str:
    """Whether the trades make up the incident's difference: the one sentence every view
    shows (``show``, the console)."""
    n = len(t.trades)
    if t.explained:
        return f"explained fully: {n} trade(s) make up the difference {t.difference}"
    return (
        f"not explained: {n} trade(s) read sum to {t.signed_sum}, "
        f"short by {t.unexplained} of the difference {t.difference}"
    )


def trades_window(t: TradesEvidence) -> str:
    return f"{utc(t.start_ms)} .. {utc(t.end_ms)} UTC, fetched {utc(t.fetched_ms)}"


def trade_fee(r: TradeRow) -> str:
    return f"{r.commission} {r.commission_asset}".strip()


def trade_line(r: TradeRow) -> str:
    return (
        f"{utc_ms(r.time_ms)} {r.side} {r.qty} @ {r.price} fee {trade_fee(r)} "
        f"order {r.order_id} trade {r.trade_id}"
    )


def _trades(t: TradesEvidence | None) -> list[str]:
    if t is None:
        return ["  trades:    not fetched"]
    lines = [f"  trades:    {trades_verdict(t)}", f"    window {trades_window(t)}"]
    lines.extend(f"    - {trade_line(r)}" for r in t.trades)
    return lines


def detail(rec: IncidentRecord, now_ms: int) -> list[str]:
    """The ``show`` lines of one incident."""
    lines = [f"{rec.id}  {rec.type.value}  {rec.symbol}  {rec.subject}"]
    lines.append(f"  state:     {state(rec.first_seen_ms, rec.cleared_ms, now_ms)}")
    lines.append(
        f"  seen:      first {utc(rec.first_seen_ms)}, last {utc(rec.last_seen_ms)}, "
        f"cleared {utc(rec.cleared_ms)} (UTC)"
    )
    lines.append(f"  cause:     {rec.cause.value}")
    if rec.evidence:
        lines.append("  evidence:")
        for e in rec.evidence:
            when = "" if e.ts_ms is None else f" {utc(e.ts_ms)}"
            lines.append(f"    - [{e.kind}{when}] {e.summary}")
    else:
        lines.append("  evidence:  none")
    if rec.facts:
        lines.append("  mismatch:  " + " ".join(f"{k}={v}" for k, v in rec.facts))
    if rec.trades is not None or rec.position_side is not None:
        lines.extend(_trades(rec.trades))
    if rec.steps:
        lines.append("  steps:")
        if rec.steps_dropped:
            lines.append(f"    ({rec.steps_dropped} earlier step(s) not kept)")
        lines.extend(f"    - {_step(s)}" for s in rec.steps)
    else:
        lines.append("  steps:     none")
    ack = rec.ack
    if ack is None:
        lines.append("  ack:       not acknowledged")
    else:
        lines.append(f"  ack:       {ack.by} at {utc(ack.ts_ms)} UTC: {ack.note}")
    lines.append(f"  opened in: run {rec.opened_run_id}")
    return lines
