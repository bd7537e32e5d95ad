"""What the service reported: the window of reports since a case's injection, and the feed
that prints each report's news as it arrives (the service hands it each report through
``LoopWatch``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from grinder.reconcile.actions import ActionResult
from grinder.reconcile.labels import Event, ResultStatus, SkipReason, TriageOutcome
from grinder.reconcile.repeats import RepeatFilter, result_outcome, skip_outcome
from grinder.reconcile.routing import ActionKind
from grinder.reconcile.types import Mismatch, MismatchType
from grinder.reporting.logs import format_event
from grinder.reporting.report import RunReport

RESULT_EVENT = {
    ResultStatus.PLANNED: Event.REMEDIATION_PLANNED,
    ResultStatus.EXECUTED: Event.REMEDIATION_EXECUTED,
    ResultStatus.BLOCKED: Event.REMEDIATION_BLOCKED,
    ResultStatus.FAILED: Event.REMEDIATION_FAILED,
    ResultStatus.SKIPPED: Event.REMEDIATE_SKIP,
}


def _is(m: Mismatch, mtype: MismatchType, symbol: str | None, cid: str | None) -> bool:
    return (
        m.type is mtype
        and (symbol is None or m.symbol == symbol)
        and (cid is None or m.client_order_id == cid)
    )


def _num(value: Any) -> Any:
    return format(value.normalize(), "f") if isinstance(value, Decimal) else value


def _result_fields(x: ActionResult) -> dict[str, Any]:
    fields: dict[str, Any] = {"mode": x.mode, "action": x.kind.label.value, "symbol": x.symbol}
    for name in ("client_order_id", "reason", "qty", "notional", "remediation_order_id", "error"):
        value = getattr(x, name)
        if value is not None:
            fields[name] = _num(value)
    return fields


@dataclass
class Window:
    """The run reports received since a case's injection, with their arrival times."""

    t0: float
    seen: list[tuple[float, RunReport]] = field(default_factory=list)

    def first(self, test: Callable[[RunReport], bool]) -> float | None:
        """Seconds from the injection to the first report that passes ``test``."""
        return next((t - self.t0 for t, r in self.seen if test(r)), None)

    def incident(
        self, mtype: MismatchType, *, symbol: str | None = None, cid: str | None = None
    ) -> float | None:
        return self.first(lambda r: any(_is(m, mtype, symbol, cid) for m in r.new_incidents))

    def cleared(
        self, mtype: MismatchType, *, symbol: str | None = None, cid: str | None = None
    ) -> float | None:
        return self.first(lambda r: any(_is(m, mtype, symbol, cid) for m in r.cleared_incidents))

    def result(self, status: ResultStatus, kind: ActionKind, subject: str) -> float | None:
        """A remediation result about ``subject`` (a client order id or a symbol)."""
        return self.first(
            lambda r: any(
                x.status is status and x.kind is kind and subject in (x.client_order_id, x.symbol)
                for x in r.results
            )
        )

    def skip(self, reason: SkipReason, mtype: MismatchType) -> float | None:
        return self.first(lambda r: any(s is reason and m.type is mtype for m, s in r.skipped))

    def triage(self, outcome: TriageOutcome) -> int:
        return sum(r.triage.get(outcome, 0) for _, r in self.seen)

    def foreign_above(self, count: int) -> float | None:
        return self.first(lambda r: r.foreign_open_orders > count)

    def mentions(self, cid: str) -> bool:
        """Any mismatch or remediation about this client order id."""
        return any(
            any(m.client_order_id == cid for m in r.mismatches)
            or any(x.client_order_id == cid for x in r.results)
            for _, r in self.seen
        )

    def mismatches(self) -> int:
        return sum(len(r.mismatches) for _, r in self.seen)

    def describe(self) -> str:
        """What was seen instead, for a failed case."""
        inc = sorted({m.type.value for _, r in self.seen for m in r.new_incidents})
        res = sorted({f"{x.kind.value} {x.status.value}" for _, r in self.seen for x in r.results})
        tri = sorted({o.value for _, r in self.seen for o in r.triage})
        parts = [", ".join(inc) or "no new mismatch", *res]
        if tri:
            parts.append("triage " + ",".join(tri))
        return "; ".join(parts) + f" ({len(self.seen)} runs)"


class Feed:
    """Receives run reports and prints what each says that is new, as it arrives."""

    def __init__(self, say: Callable[[float, str], None]) -> None:
        self.say = say
        self.queue: asyncio.Queue[tuple[float, RunReport]] = asyncio.Queue()
        self.window = Window(t0=time.monotonic())
        self.foreign = 0
        self.last: RunReport | None = None
        """The newest run report: what stands now."""
        self._repeats = RepeatFilter()
        """Standing mismatches repeat in every run: each decision about one is printed once
        (per incident, and again when it changes), as the service logs it."""

    def push(self, report: RunReport) -> None:
        self.queue.put_nowait((time.monotonic(), report))

    def open(self) -> float:
        """Print what is pending, then start a new window now."""
        self._drain()
        self.window = Window(t0=time.monotonic())
        return self.window.t0

    async def until(self, pred: Callable[[Window], bool], timeout_s: float) -> bool:
        """Print reports as they come until ``pred`` holds (True) or the time is up (False)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._drain()
            if pred(self.window):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                self._take(*await asyncio.wait_for(self.queue.get(), min(remaining, 0.05)))

    async def watch(self, seconds: float) -> None:
        await self.until(lambda _w: False, seconds)

    def _drain(self) -> None:
        while not self.queue.empty():
            self._take(*self.queue.get_nowait())

    def _take(self, t: float, r: RunReport) -> None:
        self.window.seen.append((t, r))
        self.last = r
        for m in r.new_incidents:
            fields = {k: _num(v) for k, v in {**m.as_dict(), **m.details}.items()}
            self.say(t, format_event(Event.RECONCILE_MISMATCH, fields))
        for outcome, n in sorted(r.triage.items()):
            fields = {"outcome": outcome.value, "queries": n}
            self.say(t, format_event(Event.RECONCILE_TRIAGE, fields))
        for x in r.results:
            if self._repeats.report(x.mismatch.key, result_outcome(x)) is not None:
                self.say(t, format_event(RESULT_EVENT[x.status], _result_fields(x)))
        for m, reason in r.skipped:
            if self._repeats.report(m.key, skip_outcome(r.mode, reason.value)) is not None:
                fields = {"reason": reason.value, **m.as_dict()}
                self.say(t, format_event(Event.REMEDIATE_SKIP, fields))
        for m in r.cleared_incidents:
            self._repeats.forget([m.key])
            self.say(t, format_event(Event.RECONCILE_MISMATCH_CLEARED, m.as_dict()))
        if r.foreign_open_orders != self.foreign:
            self.foreign = r.foreign_open_orders
            self.say(t, f"foreign open orders: {self.foreign} (not ours: never cancelled)")
