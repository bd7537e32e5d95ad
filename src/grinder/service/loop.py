"""When the service snapshots and checks: the loop, the snapshots, the scheduled runs.

``run_until_stopped`` sleeps until the earliest of: the next periodic snapshot
(its interval chosen from what the last regular one cost in request weight;
now and then an all-symbols one), the next periodic full pass, and the checks
due (``schedule``): a stream event that may create a mismatch schedules one for
when its grace period ends, every snapshot one for now, a triage that could not
find an order a retry. A run refreshes the expected state (and with it the bot's
heartbeat, gate E's input), evicts what expired and observes each new incident's
detection latency.

A part of the running service: it is given what it uses (the venue, the runner, the
expected state, the observed store, the stop) and owns nothing else.

The stop (``StopSignal``) ends the loop at once: a snapshot in flight is
cancelled, a run in flight gets ``RUN_DRAIN_S`` of the shutdown deadline to
finish (and be reported) and is cancelled after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from grinder.clock import Clock
from grinder.exchange.binance.apply import apply_user_event
from grinder.exchange.binance.futures_port import ALL_SYMBOLS_WEIGHT
from grinder.exchange.binance.parsing import AccountUpdate, AlgoUpdate, OrderUpdate, UserEvent
from grinder.exchange.metrics import ExchangeMetrics
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
from grinder.service.shutdown import RUN_DRAIN_S, StopSignal, unless_stopped
from grinder.service.state import ExpectedWatch
from grinder.service.venue import VenueConnection
from grinder.state.observed import ObservedStore

log = logging.getLogger("grinder.service")


@dataclass
class RunTally:
    """The runs so far: how many, and the last one's report (None: no run yet). Kept from
    before the start, so the run's end reads it whether the service started or not."""

    runs: int = 0
    last_report: RunReport | None = None


@dataclass(frozen=True)
class LoopWatch:
    """What a program embedding the service (the demo, the benchmark) is told as the loop
    goes: each run's report, and each snapshot taken (when it was sent, when it was in)."""

    report: Callable[[RunReport], None] = lambda _report: None
    snapshot: Callable[[int, int], None] = lambda _sent_ms, _done_ms: None


@dataclass(frozen=True)
class LoopMetrics:
    reconcile: ReconcileMetrics
    service: ServiceMetrics
    exchange: ExchangeMetrics


class ServiceLoop:
    """The running service's schedule carried out: given what it snapshots, runs and
    reports with, it owns the due times, the checks asked for and the snapshot pacing."""

    def __init__(
        self,
        opts: ServiceOptions,
        *,
        clock: Clock,
        observed: ObservedStore,
        expected: ExpectedWatch,
        venue: VenueConnection,
        runner: ReconcileRunner,
        record_evidence: Callable[[UserEvent], None],
        metrics: LoopMetrics,
        stop: StopSignal,
        tally: RunTally,
        after_run: Callable[[], None],
        watch: LoopWatch,
        incident_trades: Callable[[], Coroutine[Any, Any, int]] | None = None,
    ) -> None:
        """``after_run``: what follows every run (the settings in force exported);
        ``record_evidence``: keeps a stream event as what may explain an incident;
        ``incident_trades``: the position incidents' trades fetched after a run (D67)."""
        self.opts = opts
        self.config = opts.reconcile
        self.clock = clock
        self.observed = observed
        self.expected = expected
        self.venue = venue
        self.runner = runner
        self._record_evidence = record_evidence
        self.metrics = metrics.reconcile
        self.service_metrics = metrics.service
        self.exchange_metrics = metrics.exchange
        self.stop = stop
        self.tally = tally
        self._after_run = after_run
        self._watch = watch
        self._incident_trades = incident_trades
        self._trades_task: asyncio.Task[int | None] | None = None
        self._wake = asyncio.Event()
        stop.on_stop(self._wake.set)
        self._checks = Checks()
        self._snapshot_lock = asyncio.Lock()
        self._last_snapshot_weight = 2 * ALL_SYMBOLS_WEIGHT + 5
        self._run_lock = asyncio.Lock()

    # --- the loop ------------------------------------------------------------------------

    def snapshot_interval_s(self) -> float:
        """Interval to the next snapshot, from what the last one cost in request weight."""
        return snapshot_interval_s(self.opts.service, self._last_snapshot_weight)

    async def run_until_stopped(self) -> None:
        """Carries out ``grinder.service.scheduler``'s decisions until the stop; a trades
        pass still out then is let finish (its own deadline bounds it)."""
        try:
            await self._carry_out_schedule()
        finally:
            if self._trades_task is not None:
                await asyncio.wait({self._trades_task})

    async def _carry_out_schedule(self) -> None:
        pacing = self.opts.service
        times = DueTimes.first(
            self.clock(), pacing, self._last_snapshot_weight, self.opts.duration_s
        )
        while not self.stop.is_set():
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
                    await unless_stopped(self.snapshot(full=step.full), self.stop, "snapshot")
                done = self.clock()
                times = after_snapshot(times, step, now, done, pacing, self._last_snapshot_weight)
            if run_due(times, now, self._checks.earliest()):
                self._checks.take_due(now)
                await self._run_scheduled()
                times = after_run(times, self.clock(), pacing)

    async def _run_scheduled(self) -> None:
        """One run; a failed one is counted and logged, never the end of the service."""
        try:
            report = await unless_stopped(self.run_once(), self.stop, "run", RUN_DRAIN_S)
        except Exception as exc:
            self.service_metrics.run_errors.inc()
            log.error("RECONCILE_RUN_FAILED error=%s", " ".join(f"{exc!r}".split()))
        else:
            if report is not None and report.triage.get(TriageOutcome.NOT_FOUND):
                self.schedule(self.clock() + self.opts.service.triage_retry_ms)
            self._start_incident_trades()

    def _start_incident_trades(self) -> None:
        """The position incidents' trades (D67) fetched beside the loop, one pass at a time:
        a slow ``userTrades`` answer (up to the pass's deadline) never holds the next run."""
        if self._incident_trades is None:
            return
        if self._trades_task is not None and not self._trades_task.done():
            return
        work = unless_stopped(self._incident_trades(), self.stop, "incident trades")
        self._trades_task = asyncio.ensure_future(work)

    def _active_symbols(self, positions: list[ObservedPosition]) -> list[str]:
        """Symbols that may have open orders: any the exchange, we or the bot know of."""
        active = {p.symbol for p in positions}
        active.update(o.symbol for o in self.observed.open_orders())
        expected = self.expected.source.store.orders()
        active.update(e.symbol for e in expected if e.ended_ts_ms is None)
        return sorted(active)

    async def snapshot(self, *, full: bool = False) -> None:
        """One REST snapshot of positions and open orders (regular and algo).

        ``v3/positionRisk`` (weight 5) lists every symbol with a position or open
        orders; open orders are then fetched per symbol for those, plus any symbol
        we or the bot know to have orders (1 + 1 weight each), unless one
        all-symbols call (40 + 40) is cheaper. ``full`` forces the all-symbols
        form, which also catches conditional orders on otherwise idle symbols.
        """
        port, rest = self.venue.port, self.venue.rest
        async with self._snapshot_lock:
            configured = list(self.config.symbols) or None
            sent = self.clock()
            used_before = rest.weight_spent
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
                self.service_metrics.snapshots.labels(outcome="error").inc()
                log.warning("SNAPSHOT_FAILED error=%s", " ".join(str(exc).split()))
                raise
            self.observed.apply_positions_snapshot(positions, sent, configured)
            self.observed.apply_open_orders_snapshot(orders, sent, scope)
            self.service_metrics.snapshots.labels(outcome="ok").inc()
            age = self.observed.snapshot_age_ms(self.clock())
            if age is not None:  # runs keep it current; this ends the first "+Inf" at once
                self.metrics.last_snapshot_age.set(age / 1000)
            if not full:
                # The regular snapshot's cost sets the pace; the rare full one does not.
                self._last_snapshot_weight = max(1, rest.weight_spent - used_before)
            self.service_metrics.snapshot_interval.set(self.snapshot_interval_s())
        self._watch.snapshot(sent, self.clock())
        self.schedule(self.clock())

    async def run_once(self) -> RunReport:
        async with self._run_lock:
            now = self.clock()
            self.expected.source.refresh()
            self.expected.observe()  # gate E reads the heartbeat this refresh brought
            self.expected.source.evict(now)
            self.observed.evict_expired(now)
            report = await self.runner.run_once()
            self.tally.runs += 1
            self.tally.last_report = report
            # With HA, the last write of any instance (as the run read it): the cooldown anchor.
            self.metrics.observe_last_remediation(self.runner.executor.last_write_known_ms)
            self._observe_latency(report.new_incidents, self.clock())
            self._after_run()
        self._watch.report(report)
        return report

    def schedule(self, at_ms: int) -> None:
        """Ask for a check at ``at_ms`` and wake the loop to reconsider."""
        self._checks.add(at_ms)
        self._wake.set()

    def on_event(self, event: UserEvent) -> None:
        """A user-data stream event: kept as evidence, applied, a check scheduled."""
        self.exchange_metrics.observe_event(event.event_type)
        self._record_evidence(event)  # what may explain an incident later
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
                self.service_metrics.detection_latency.labels(type=m.type.value).observe(
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
