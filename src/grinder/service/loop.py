"""When the service snapshots and checks: the loop, the snapshots, the scheduled runs.

``run_until_stopped`` sleeps until the earliest of: the next periodic snapshot
(its interval chosen from what the last regular one cost in request weight;
now and then an all-symbols one), the next periodic full pass, and the checks
due (``schedule``): a stream event that may create a mismatch schedules one for
when its grace period ends, every snapshot one for now, a triage that could not
find an order a retry. A run refreshes the expected state (and with it the bot's
heartbeat, gate E's input), evicts what expired and observes each new incident's
detection latency.

The stop (``stop_event``) ends the loop at once: a snapshot in flight is
cancelled, a run in flight gets ``RUN_DRAIN_S`` of the shutdown deadline to
finish (and be reported) and is cancelled after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from grinder.clock import Clock
from grinder.exchange.binance.apply import apply_user_event
from grinder.exchange.binance.futures_port import ALL_SYMBOLS_WEIGHT, BinanceFuturesPort
from grinder.exchange.binance.parsing import AccountUpdate, AlgoUpdate, OrderUpdate, UserEvent
from grinder.exchange.metrics import ExchangeMetrics
from grinder.incidents.sink import IncidentLedger
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.labels import TriageOutcome
from grinder.reconcile.types import Mismatch, MismatchType, ObservedPosition
from grinder.remediation.runner import ReconcileRunner
from grinder.reporting.metrics import ReconcileMetrics
from grinder.reporting.report import RunReport
from grinder.service.metrics import ServiceMetrics
from grinder.service.options import ServiceOptions
from grinder.service.scheduler import (
    Checks,
    DueTimes,
    after_run,
    after_snapshot,
    next_step,
    run_due,
    snapshot_interval_s,
)
from grinder.service.shutdown import RUN_DRAIN_S, UNWIND_S, ShutdownDeadline
from grinder.service.state import ExpectedSource
from grinder.service.venue import VenueConnection
from grinder.state.observed import ObservedStore

log = logging.getLogger("grinder.service")
T = TypeVar("T")


class ServiceLoop:
    """The scheduling part of ``ReconcileService`` (which sets every attribute below)."""

    opts: ServiceOptions
    config: ReconcileConfig
    clock: Clock
    observed: ObservedStore
    expected: ExpectedSource | None
    venue: VenueConnection | None
    runner: ReconcileRunner | None
    ledger: IncidentLedger | None
    metrics: ReconcileMetrics
    smetrics: ServiceMetrics
    xmetrics: ExchangeMetrics
    stop_event: asyncio.Event
    shutdown: ShutdownDeadline
    runs: int
    last_report: RunReport | None
    _wake: asyncio.Event
    _checks: Checks
    _snapshot_lock: asyncio.Lock
    _last_snapshot_weight: int
    _run_lock: asyncio.Lock

    # Defined by ``ServiceSettings``; declared for the type checker only, since a definition
    # here would shadow it.
    if TYPE_CHECKING:

        def _observe_settings(self) -> None: ...

        def observe_expected(self) -> None: ...

    # --- the loop ------------------------------------------------------------------------

    def snapshot_interval_s(self) -> float:
        """Interval to the next snapshot, from what the last one cost in request weight."""
        return snapshot_interval_s(self.opts.service, self._last_snapshot_weight)

    async def run_until_stopped(self) -> None:
        """Carries out ``grinder.service.scheduler``'s decisions until the stop."""
        pacing = self.opts.service
        times = DueTimes.first(
            self.clock(), pacing, self._last_snapshot_weight, self.opts.duration_s
        )
        while not self.stop_event.is_set():
            now = self.clock()
            step = next_step(times, now, self._checks.earliest())
            if step.stop:
                break
            if step.wait_until is not None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), (step.wait_until - now) / 1000)
                continue
            if step.snapshot:
                with contextlib.suppress(Exception):
                    await self.unless_stopped(self.snapshot(full=step.full), "snapshot")
                done = self.clock()
                times = after_snapshot(times, step, now, done, pacing, self._last_snapshot_weight)
            if run_due(times, now, self._checks.earliest()):
                self._checks.take_due(now)
                await self._run_scheduled()
                times = after_run(times, self.clock(), pacing)

    async def _run_scheduled(self) -> None:
        """One run; a failed one is counted and logged, never the end of the service."""
        try:
            report = await self.unless_stopped(self.run_once(), "run", RUN_DRAIN_S)
        except Exception as exc:
            self.smetrics.run_errors.inc()
            log.error("RECONCILE_RUN_FAILED error=%s", " ".join(f"{exc!r}".split()))
        else:
            if report is not None and report.triage.get(TriageOutcome.NOT_FOUND):
                self.schedule(self.clock() + self.opts.service.triage_retry_ms)
            if self.ledger is not None and self.ledger.trades_pass is not None:  # D67
                await self.unless_stopped(self.ledger.trades_pass(), "incident trades")

    async def unless_stopped(
        self, work: Coroutine[Any, Any, T], what: str, drain_s: float = 0.0
    ) -> T | None:
        """``work``'s result, or None when the stop came first: ``work`` then gets
        ``drain_s`` of the shutdown deadline to finish, and is cancelled after that."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.stop_event.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and drain_s > 0:
                await asyncio.wait({task}, timeout=self.shutdown.part(drain_s))
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            stop.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=UNWIND_S)
            level = logging.WARNING if drain_s > 0 else logging.INFO
            log.log(level, "SERVICE_STOP_CANCELLED work=%s", what)
            return None
        if task.cancelled():
            return None
        return task.result()

    def _active_symbols(self, positions: list[ObservedPosition]) -> list[str]:
        """Symbols that may have open orders: any the exchange, we or the bot know of."""
        active = {p.symbol for p in positions}
        active.update(o.symbol for o in self.observed.open_orders())
        assert self.expected is not None
        active.update(e.symbol for e in self.expected.store.orders() if e.ended_ts_ms is None)
        return sorted(active)

    async def snapshot(self, *, full: bool = False) -> None:
        """One REST snapshot of positions and open orders (regular and algo).

        ``v3/positionRisk`` (weight 5) lists every symbol with a position or open
        orders; open orders are then fetched per symbol for those, plus any symbol
        we or the bot know to have orders (1 + 1 weight each), unless one
        all-symbols call (40 + 40) is cheaper. ``full`` forces the all-symbols
        form, which also catches conditional orders on otherwise idle symbols.
        """
        port = self._port()
        async with self._snapshot_lock:
            configured = list(self.config.symbols) or None
            sent = self.clock()
            used_before = self.venue.rest.weight_spent if self.venue else 0
            try:
                positions = await port.fetch_positions(configured)
                scope: list[str] | None
                if configured is not None:
                    scope = configured
                elif full:
                    scope = None
                else:
                    scope = self._active_symbols(positions)
                    if 2 * len(scope) >= 2 * ALL_SYMBOLS_WEIGHT:
                        scope = None
                orders = await port.fetch_open_orders(scope)
            except Exception as exc:
                self.smetrics.snapshots.labels(outcome="error").inc()
                log.warning("SNAPSHOT_FAILED error=%s", " ".join(str(exc).split()))
                raise
            self.observed.apply_positions_snapshot(positions, sent, configured)
            self.observed.apply_open_orders_snapshot(orders, sent, scope)
            self.smetrics.snapshots.labels(outcome="ok").inc()
            age = self.observed.snapshot_age_ms(self.clock())
            if age is not None:  # runs keep it current; this ends the first "+Inf" at once
                self.metrics.last_snapshot_age.set(age / 1000)
            if self.venue is not None and not full:
                # The regular snapshot's cost sets the pace; the rare full one does not.
                self._last_snapshot_weight = max(1, self.venue.rest.weight_spent - used_before)
            self.smetrics.snapshot_interval.set(self.snapshot_interval_s())
        self.schedule(self.clock())

    async def run_once(self) -> RunReport:
        async with self._run_lock:
            now = self.clock()
            assert self.expected is not None
            assert self.runner is not None
            self.expected.refresh()
            self.observe_expected()  # gate E reads the heartbeat this refresh brought
            self.expected.evict(now)
            self.observed.evict_expired(now)
            report = await self.runner.run_once()
            self.runs += 1
            self.last_report = report
            # With HA, the last write of any instance (as the run read it): the cooldown anchor.
            self.metrics.observe_last_remediation(self.runner.executor.last_write_known_ms)
            self._observe_latency(report.new_incidents, self.clock())
            self._observe_settings()
            return report

    def schedule(self, at_ms: int) -> None:
        """Ask for a check at ``at_ms`` and wake the loop to reconsider."""
        self._checks.add(at_ms)
        self._wake.set()

    def _on_event(self, event: UserEvent) -> None:
        self.xmetrics.observe_event(event.event_type)
        if self.ledger is not None:
            self.ledger.evidence.record(event)  # what may explain an incident later
        changed = apply_user_event(self.observed, event)
        if not changed:
            return
        delay = self.opts.service.check_delay_ms
        now = self.clock()
        if isinstance(event, OrderUpdate | AlgoUpdate):
            self.schedule(now + self.config.order_grace_ms + delay)
        elif isinstance(event, AccountUpdate):
            self.schedule(now + self.config.position_grace_ms + delay)

    # --- detection latency ---------------------------------------------------------------

    def _observe_latency(self, incidents: list[Mismatch], now: int) -> None:
        for m in incidents:
            certain = self._certain_since(m)
            if certain is not None:
                self.smetrics.detection_latency.labels(type=m.type.value).observe(
                    max(0.0, (now - certain) / 1000)
                )

    def _certain_since(self, m: Mismatch) -> int | None:
        """When a mismatch became certain: its drift's first sighting plus the grace period."""
        if m.type is MismatchType.ORDER_EXISTS_UNEXPECTED and m.client_order_id:
            o = self.observed.get_order(m.client_order_id)
            if o is None:
                return None
            return (o.created_ts_ms or o.seen_ts_ms) + self.config.order_grace_ms
        if m.position_side is not None:
            op = self.observed.get_position((m.symbol, m.position_side))
            if op is None:
                return None
            return op.changed_ts_ms + self.config.position_grace_ms
        return None

    # --- helpers -------------------------------------------------------------------------

    def _port(self) -> BinanceFuturesPort:
        assert self.venue is not None, "service not started"
        return self.venue.port
