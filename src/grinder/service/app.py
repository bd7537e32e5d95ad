"""The live reconcile service: snapshots, the user-data stream, scheduled checks, remediation.

Start-up: REST snapshot first, then the stream (which takes its own snapshot
after every (re)connect); nothing is judged before the first snapshot.
Afterwards the service is event-driven: a stream event that may create a
mismatch schedules a check for when its grace period ends. A periodic full
pass and a periodic snapshot (interval chosen from request weight) catch what
no event announces. SIGINT/SIGTERM stop it gracefully within a bounded time
(``grinder.service.shutdown``: one deadline, shared out among the steps of the
close); SIGHUP re-reads the config file; the control socket changes settings at
run time.

With HA (``ha`` given: a Redis URL), every instance snapshots, streams, detects
and reports; only the leader may remediate (gate 0). A leadership counts for
remediation only after a REST snapshot taken *after* it was acquired, so a new
leader acts on the exchange's present, never on what it saw as a follower.
Leadership changes are logged (``HA_LEADER_ACQUIRED``, ``HA_LEADER_ACTING``,
``HA_LEADER_LOST``), audited and exported (``grinder_ha_*``), and shown in
``/readyz``.

Two objects, each whole once built: ``ReconcileService`` is what exists before the
venue is connected (the options, the metrics registry, the budget, the audit, the HA
runtime, the settings and the operator's words, the stop and what the stop closes);
``start`` builds the ``RunningService`` (``grinder.service.running``) from it once the
venue is connected and the first snapshot is in.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry

from grinder.budget.tracker import BudgetTracker
from grinder.clock import Clock, wall_clock_ms
from grinder.deadman.metrics import DeadmanMetrics
from grinder.exchange.binance.credentials import Credentials
from grinder.exchange.metrics import ExchangeMetrics
from grinder.ha.metrics import HaMetrics
from grinder.ha.runtime import HaRuntime
from grinder.operator.stores import FileOperatorStore, MemoryOperatorStore, OperatorStore
from grinder.reconcile.config import ConfigError, ReconcileConfig
from grinder.reporting.audit import AuditWriter
from grinder.reporting.metrics import ReconcileMetrics
from grinder.service.live import ALLOW_MAINNET
from grinder.service.loop import LoopWatch, RunTally
from grinder.service.metrics import ServiceMetrics
from grinder.service.options import ServiceOptions
from grinder.service.running import RunningService, open_running, register_ha_release
from grinder.service.runtime_status import ServiceRuntime
from grinder.service.settings import ServiceSettings
from grinder.service.shutdown import StopSignal
from grinder.service.teardown import Teardown
from grinder.state.observed import ObservedStore

log = logging.getLogger("grinder.service")


class ReconcileService:
    """One reconciler against one venue, before it runs: see the module doc.

    ``start`` returns the ``RunningService``; ``close`` (always, started or not) closes
    what the start opened, within the shutdown deadline.
    """

    def __init__(
        self,
        opts: ServiceOptions,
        *,
        credentials: Credentials,
        budget: BudgetTracker,
        audit: AuditWriter | None,
        control_socket: Path | None,
        env: Mapping[str, str] | None = None,
        clock: Clock = wall_clock_ms,
        ha: HaRuntime | None = None,
        runtime: ServiceRuntime | None = None,
        operator_store: OperatorStore | None = None,
        operator_mirror: FileOperatorStore | None = None,
        watch: LoopWatch | None = None,
    ) -> None:
        """``operator_store``: where the deployment's operator state lives (None: memory);
        ``operator_mirror`` (HA): its local copy; ``watch``: told as the loop goes."""
        src = os.environ if env is None else env
        self.opts = opts
        self.runtime = runtime or ServiceRuntime.of(
            opts, src, started_ts_ms=clock(), control_socket=control_socket
        )
        """What ``/status`` shows under ``runtime``: paths, environment, overrides."""
        self.credentials = credentials
        self.clock = clock
        self.config: ReconcileConfig = opts.reconcile
        self.registry = CollectorRegistry()
        self.metrics = ReconcileMetrics(self.registry, clock=clock)
        self.exchange_metrics = ExchangeMetrics(self.registry)
        self.service_metrics = ServiceMetrics(self.registry)
        self.ha_metrics = HaMetrics(self.registry)
        self.deadman_metrics = DeadmanMetrics(self.registry)  # exported whether it runs or not
        self.ha = ha
        if audit is not None:
            audit.on_error = lambda _exc: self.metrics.audit_write_errors.inc()
        self.audit = audit
        self.budget = budget
        # From the start: the gauges show the budget file's day, not 0 remaining.
        self.metrics.set_budget(budget, clock())
        self.control_socket = control_socket
        self.settings = ServiceSettings(
            opts,
            clock=clock,
            audit=audit,
            service_metrics=self.service_metrics,
            mainnet_at_start=src.get(ALLOW_MAINNET) == "1",
            operator_store=operator_store if operator_store is not None else MemoryOperatorStore(),
            instance=ha.instance_id if ha is not None else f"{socket.gethostname()}-{os.getpid()}",
            operator_mirror=operator_mirror,
        )
        """The settings in force: configured, under the operator's words, reloaded."""
        self.observed = ObservedStore()
        self.stop = StopSignal()
        self.teardown = Teardown()
        """What the start opened, closed at the stop (``grinder.service.teardown``)."""
        self.tally = RunTally()
        self.watch = watch or LoopWatch()
        register_ha_release(self)

    async def start(self) -> RunningService:
        """Connect, take the first snapshot, start the stream and the HTTP endpoints."""
        return await open_running(self)

    def request_stop(self) -> None:
        """Stop: the shutdown deadline starts now (idempotent), the loop ends, and no wait
        of the REST client (a 429's pause, the weight window, a retry's backoff) goes on."""
        self.stop.request()

    async def close(self) -> None:
        """Every step within its part of the shutdown deadline (``grinder.service.shutdown``)."""
        self.request_stop()  # the deadline runs from the signal, else (--duration) from now
        deadline = self.stop.deadline
        self.service_metrics.up.set(0)
        await self.teardown.close(deadline)
        log.info("SERVICE_STOPPED stop_s=%.2f", deadline.elapsed())

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_stop_signal(self, sig: int) -> None:
        log.warning("SERVICE_STOP signal=%s", signal.Signals(sig).name)
        self.request_stop()

    def _on_sighup(self) -> None:
        try:
            self.settings.reload_config("sighup")
        except ConfigError as exc:
            log.error("CONFIG_RELOAD_FAILED error=%s (settings unchanged)", exc)
