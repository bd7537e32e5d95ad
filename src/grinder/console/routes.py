"""The console on the metrics port (shell): ``GET /console``, ``GET /console/incidents/{id}``.

Read-only: nothing here writes, sends or acknowledges. The page reads what ``/status``
reads, the ledger's records (the leader's own, a follower's from the store: the same
records ``grinder incidents list`` shows), the last run's standing mismatches and, for
each, the gate chain ``grinder.reconcile.explain`` evaluates over the executor's inputs
now (a run starting now: its anchors, an empty run budget).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from grinder.clock import Clock
from grinder.console.page import (
    CLEARED_SHOWN,
    IncidentView,
    Masker,
    console_page,
    incident_view,
)
from grinder.console.render import render_console, render_incident, render_not_found
from grinder.ha.connection import RedisUnavailable
from grinder.incidents.records import IncidentRecord, LedgerError
from grinder.incidents.sink import IncidentLedger
from grinder.reconcile.actions import RunContext
from grinder.reconcile.explain import Explanation, explain
from grinder.reconcile.routing import ActionKind, route_one
from grinder.reconcile.types import Mismatch, PositionSide
from grinder.redaction import redact_text
from grinder.remediation.executor import RemediationExecutor
from grinder.reporting.report import RunReport
from grinder.state.observed import ObservedStore

log = logging.getLogger(__name__)

UNREADABLE = (LedgerError, RedisUnavailable)
"""What reading the ledger may raise: a page then says so in one line (503), never a bare 500."""

HTML = "text/html"


@dataclass(frozen=True)
class ConsoleSource:
    """What the console reads of the running service, and nothing more."""

    clock: Clock
    status: Callable[[], dict[str, Any]]
    """What ``/status`` answers now."""
    ledger: IncidentLedger
    observed: ObservedStore
    executor: RemediationExecutor
    """Read only: the gate chain's inputs now (``explain``), the cooldown anchors."""
    last_report: Callable[[], RunReport | None]


def _records(service: ConsoleSource) -> list[IncidentRecord]:
    ledger = service.ledger
    if ledger.may_write():
        return ledger.open_records()  # the leader's own: newer than the store by a batch
    return ledger.store.open_incidents()


def _candidate(service: ConsoleSource, m: Mismatch | None, ctx: RunContext) -> Explanation | str:
    if m is None:
        return "not among the last run's mismatches: no gate chain to show"
    routed = route_one(m)
    if not isinstance(routed, ActionKind):
        return f"no remediation: {routed.value}"
    notional = None
    if routed is ActionKind.FLATTEN:
        pos = service.observed.get_position((m.symbol, m.position_side or PositionSide.BOTH))
        if pos is not None and pos.mark_price is not None:
            notional = abs(pos.qty) * pos.mark_price
    coid = m.client_order_id if routed is ActionKind.CANCEL else None
    return explain(service.executor, routed, m.symbol, coid, notional, ctx)


def _views(service: ConsoleSource, records: list[IncidentRecord]) -> list[IncidentView]:
    now = service.clock()
    report = service.last_report()
    standing = {m.key: m for m in report.mismatches} if report is not None else {}
    live, dry = service.executor.cooldown_anchors()
    ctx = RunContext(run_id="console", started_ms=now, live_anchor_ms=live, dry_anchor_ms=dry)
    records = sorted(records, key=lambda r: r.first_seen_ms, reverse=True)
    mask = Masker()
    return [
        incident_view(r, _candidate(service, standing.get(r.key), ctx), now, mask) for r in records
    ]


def _unreadable(exc: Exception) -> web.Response:
    message = redact_text(" ".join(f"ledger unreadable: {exc}".split()))
    log.warning("CONSOLE_LEDGER_UNREADABLE error=%s", message)
    page = render_not_found(message, title="ledger unreadable")
    return web.Response(text=page, content_type=HTML, status=503)


def add_console_routes(app: web.Application, service: ConsoleSource) -> None:
    """Register the console's pages on the metrics app."""

    async def console(request: web.Request) -> web.Response:
        try:
            return console_now(request)
        except UNREADABLE as exc:
            return _unreadable(exc)

    async def incident(request: web.Request) -> web.Response:
        try:
            return incident_now(request)
        except UNREADABLE as exc:
            return _unreadable(exc)

    def console_now(_: web.Request) -> web.Response:
        now = service.clock()
        recent = service.ledger.store.summaries(limit=CLEARED_SHOWN * 10)
        cleared = [s for s in recent if not s.is_open]
        page = console_page(service.status(), _views(service, _records(service)), cleared, now)
        return web.Response(text=render_console(page), content_type=HTML)

    def incident_now(request: web.Request) -> web.Response:
        incident_id = request.match_info["incident_id"]
        ledger = service.ledger
        rec = ledger.store.get(incident_id)
        if rec is not None and rec.is_open and ledger.may_write():
            rec = next((r for r in ledger.open_records() if r.id == rec.id), rec)
        if rec is None:
            message = f"no incident {redact_text(incident_id)!r} in {ledger.store.where}"
            return web.Response(text=render_not_found(message), content_type=HTML, status=404)
        view = _views(service, [rec])[0]
        page = render_incident(view, console_page({}, [], [], service.clock()).generated)
        return web.Response(text=page, content_type=HTML)

    app.router.add_get("/console", console)
    app.router.add_get("/console/incidents/{incident_id}", incident)
