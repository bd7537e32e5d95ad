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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import stat
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from grinder.budget.tracker import BudgetTracker
from grinder.clock import Clock, wall_clock_ms
from grinder.console.routes import add_console_routes
from grinder.deadman.decision import Health
from grinder.deadman.metrics import DeadmanMetrics
from grinder.exchange.binance.credentials import Credentials
from grinder.exchange.binance.futures_port import ALL_SYMBOLS_WEIGHT, BinanceFuturesPort
from grinder.exchange.binance.stream import StreamSettings, StreamState, UserDataStream
from grinder.exchange.metrics import ExchangeMetrics
from grinder.exchange.port import ExchangeError
from grinder.ha.metrics import HaMetrics
from grinder.ha.runtime import HaRuntime
from grinder.operator.state import OperatorStateError
from grinder.operator.stores import FileOperatorStore, MemoryOperatorStore, OperatorStore
from grinder.reconcile.config import ConfigError, ReconcileConfig
from grinder.reconcile.engine import ReconcileEngine
from grinder.remediation.executor import RemediationExecutor
from grinder.remediation.runner import ReconcileRunner
from grinder.reporting.audit import AuditWriter
from grinder.reporting.logs import log_event
from grinder.reporting.metrics import ReconcileMetrics
from grinder.reporting.report import Reporter, RunReport
from grinder.service.control import Controls, build_control_app, start_control_site
from grinder.service.deadman import DeadmanSwitch
from grinder.service.ha import HaHooks, ServiceHa
from grinder.service.httpd import build_metrics_app, listen_error, start_site
from grinder.service.incidents import IncidentLedger, add_incident_routes, open_ledger
from grinder.service.live import ALLOW_MAINNET
from grinder.service.loop import ServiceLoop
from grinder.service.metrics import ServiceMetrics
from grinder.service.options import ServiceOptions
from grinder.service.runtime_status import ServiceRuntime
from grinder.service.scheduler import Checks
from grinder.service.settings import ServiceSettings
from grinder.service.settings_status import settings_status
from grinder.service.shutdown import (
    HA_RELEASE_S,
    HTTP_STOP_S,
    STREAM_STOP_S,
    TASKS_S,
    UNWIND_S,
    VENUE_CLOSE_S,
    ShutdownDeadline,
    bounded,
)
from grinder.service.state import ExpectedSource, open_expected
from grinder.service.venue import VenueConnection, connect_venue
from grinder.state.expected import NEVER
from grinder.state.observed import ObservedStore

log = logging.getLogger("grinder.service")


class ReconcileService(ServiceLoop):
    """One running reconciler against one venue.

    Its loop (snapshots, scheduled runs) is ``ServiceLoop`` in ``grinder.service.loop``;
    its settings (exported, changed at run time, reloaded) are ``settings``, a
    ``ServiceSettings`` (``grinder.service.settings``).
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
    ) -> None:
        """``operator_store``: where the deployment's operator state lives (HA: Redis,
        alone: a file; None keeps it in memory, for an embedded service); ``operator_mirror``
        (HA): a local copy of it, read at start to tell a lost state from a new one."""
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
        self.xmetrics = ExchangeMetrics(self.registry)
        self.smetrics = ServiceMetrics(self.registry)
        self.hametrics = HaMetrics(self.registry)
        self.ha = ha
        if audit is not None:
            audit.on_error = lambda _exc: self.metrics.audit_write_errors.inc()
        self.audit = audit
        self.budget = budget
        # From the start: the gauges show the budget file's day, not 0 remaining.
        self.metrics.set_budget(budget, clock())
        self.control_socket = control_socket
        self._control_inode: int | None = None
        """The inode of the control socket once this service has bound it."""
        self.settings = ServiceSettings(
            opts,
            clock=clock,
            audit=audit,
            smetrics=self.smetrics,
            mainnet_at_start=src.get(ALLOW_MAINNET) == "1",
            operator_store=operator_store if operator_store is not None else MemoryOperatorStore(),
            instance=ha.instance_id if ha is not None else f"{socket.gethostname()}-{os.getpid()}",
            operator_mirror=operator_mirror,
            deadman=lambda: self.deadman,
            on_armed=self._set_executor_armed,
        )
        """The settings in force: configured, under the operator's words, reloaded."""
        self.gate_env = self.settings.gate_env
        self.live = self.settings.live
        self.operator = self.settings.operator
        self.observed = ObservedStore()
        self.expected: ExpectedSource | None = None
        self.venue: VenueConnection | None = None
        self.stream: UserDataStream | None = None
        self.executor: RemediationExecutor | None = None
        self.runner: ReconcileRunner | None = None
        self.engine: ReconcileEngine | None = None
        self.controls: Controls | None = None
        self.deadman: DeadmanSwitch | None = None
        self.deadman_metrics = DeadmanMetrics(self.registry)
        """Exported whether the switch runs or not (``grinder_deadman_enabled`` 0: off)."""
        self.ledger: IncidentLedger | None = None
        self.stop_event = asyncio.Event()
        self.shutdown = ShutdownDeadline()
        self.ready = False
        self.last_report: RunReport | None = None
        self.runs = 0
        self.metrics_url: str | None = None
        self._wake = asyncio.Event()
        self._checks = Checks()
        self._sites: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._snapshot_lock = asyncio.Lock()
        self._last_snapshot_weight = 2 * ALL_SYMBOLS_WEIGHT + 5
        self._run_lock = asyncio.Lock()
        self._expected_live: bool | None = None
        self.hagate = (
            None
            if ha is None
            else ServiceHa(ha, self.hametrics, self.metrics.ha_is_leader, self._ha_hooks())
        )

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, take the first snapshot, start the stream and the HTTP endpoints."""
        opts = self.opts
        self.smetrics.up.set(1)
        ha = self.ha
        self.expected = open_expected(
            opts.expected_db,
            ha.open_expected() if ha is not None else None,
            create=opts.create_expected_db,
            where=opts.expected_db_where,
        )
        self.expected.on_refresh_error = lambda _exc: self.hametrics.expected_refresh_failures.inc()
        self.expected.refresh()
        self.metrics.expected_heartbeat_age.set_function(self.expected_heartbeat_age)
        self.venue = await connect_venue(
            opts,
            self.credentials,
            clock=self.clock,
            on_weight=self.xmetrics.observe_weight,
            on_spend=self.xmetrics.observe_spend,
        )
        port: BinanceFuturesPort = self.venue.port
        await self.venue.rest.sync_time()
        filters = await port.exchange_info()
        self.engine = ReconcileEngine(
            self.config,
            self.expected.store,
            self.observed,
            step_sizes={s: f.step_size for s, f in filters.items()},
        )
        self.ledger = open_ledger(self)
        reporter = Reporter(metrics=self.metrics, audit=self.audit, logger=log, ledger=self.ledger)
        self.executor = RemediationExecutor(
            config=self.config,
            port=port,
            armed=opts.armed,
            budget=self.budget,
            is_leader=self.may_remediate if ha is not None else None,
            cooldown=ha.budget_store if ha is not None else None,
            env=self.gate_env,
            clock=self.clock,
            reporter=reporter,
            lease_window_ms=self.hagate.lease_window_ms if self.hagate is not None else None,
            read_expected_order=self.expected.read_order,
            expected_heartbeat_age=self.expected_heartbeat_age,
            operator=self.operator,
        )
        try:  # the operator's standing words, in force before anything is judged
            self.operator.start(self.settings.configured_settings())
        except OperatorStateError as exc:
            raise ConfigError(f"operator state: {exc}") from None
        self.runner = ReconcileRunner(self.engine, self.executor, reporter=reporter)
        self.observe_expected()
        self.controls = Controls(
            self.config,
            self.operator,
            status=self.status,
            reload=lambda: self.settings.reload_config("control"),
            clock=self.clock,
            ha_step_down=self.ha_step_down if ha is not None else None,
            position=self.position,
        )
        self.settings.observe_settings()
        await self._start_http()
        await self.snapshot()
        self.ready = True
        self.smetrics.ready.set(1)
        self.stream = UserDataStream(
            self.venue.rest,
            self.venue.ws_base_url,
            on_event=self._on_event,
            on_resync=self.snapshot,
            settings=StreamSettings(keepalive_s=opts.service.stream_keepalive_s),
            on_state=self.xmetrics.observe_state,
            on_parse_error=lambda _e: self.xmetrics.stream_parse_errors.inc(),
            clock=self.clock,
        )
        self._tasks.append(asyncio.create_task(self.stream.run(), name="user-data-stream"))
        if self.hagate is not None:
            self._tasks.append(self.hagate.start())
        if opts.deadman.symbols:
            self.deadman = self._deadman_switch(port)
            self._tasks.append(asyncio.create_task(self.deadman.run(), name="deadman-switch"))
        self.metrics.ha_is_leader.set(1 if self.may_remediate() else 0)

    async def _start_http(self) -> None:
        app = build_metrics_app(self.registry, healthy=self._healthy, ready=self._ready)
        add_console_routes(app, self)
        try:
            runner, bound = await start_site(app, self.opts.metrics_host, self.opts.metrics_port)
        except OSError as exc:
            raise listen_error(exc, self.opts.metrics_host, self.opts.metrics_port) from None
        self._sites.append(runner)
        self.metrics_url = f"http://{self.opts.metrics_host}:{bound}/metrics"
        if self.control_socket is not None and self.controls is not None:
            control_app = build_control_app(self.controls)
            add_incident_routes(control_app, self.ledger)
            control = await start_control_site(control_app, self.control_socket)
            self._sites.append(control)
            self._control_inode = self.control_socket.lstat().st_ino

    def _remove_control_socket(self) -> None:
        """Remove the control socket this service bound, and nothing else: not a path it
        never bound (a start refused because another service listens there, or because
        the path is some other file), nor a socket another process has put there since."""
        path, inode = self.control_socket, self._control_inode
        if path is None or inode is None:
            return
        with contextlib.suppress(OSError):
            info = path.lstat()
            if stat.S_ISSOCK(info.st_mode) and info.st_ino == inode:
                path.unlink()

    def request_stop(self) -> None:
        """Stop: the shutdown deadline starts now (idempotent), the loop ends, and no wait
        of the REST client (a 429's pause, the weight window, a retry's backoff) goes on."""
        self.shutdown.begin()
        self.stop_event.set()
        self._wake.set()
        if self.venue is not None:
            self.venue.rest.begin_close()

    async def close(self) -> None:
        """Every step within its part of the shutdown deadline (``grinder.service.shutdown``)."""
        self.request_stop()  # the deadline runs from the signal, else (--duration) from now
        deadline = self.shutdown
        self.smetrics.up.set(0)
        if self.hagate is not None:
            # Hand over first: a follower takes the lease at once.
            await self.hagate.close(deadline.part(HA_RELEASE_S))
        if self.stream is not None:
            part = deadline.part(STREAM_STOP_S)  # the stream keeps to it; bounded() makes sure
            await bounded(self.stream.stop(part), part + UNWIND_S, "user-data stream")
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            tasks = asyncio.gather(*self._tasks, return_exceptions=True)
            await bounded(tasks, deadline.part(TASKS_S), "tasks")
        if self._sites:
            sites = asyncio.gather(*(site.cleanup() for site in self._sites))
            await bounded(sites, deadline.part(HTTP_STOP_S), "http endpoints")
        self._remove_control_socket()
        if self.venue is not None:
            await bounded(self.venue.close(), deadline.part(VENUE_CLOSE_S), "venue")
        if self.expected is not None:
            self.expected.close()
        if self.ledger is not None:
            self.ledger.close()
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

    # --- probes --------------------------------------------------------------------------

    def _healthy(self) -> tuple[bool, dict[str, Any]]:
        return (not self.stop_event.is_set(), {"runs": self.runs})

    def _ready(self) -> tuple[bool, dict[str, Any]]:
        state = self.stream.state if self.stream is not None else StreamState.DISCONNECTED
        age = self.observed.snapshot_age_ms(self.clock())
        return (
            self.ready,
            {
                "first_snapshot": self.ready,
                "stream": state.name.lower(),
                "snapshot_age_s": None if age is None else round(age / 1000, 3),
                "ha": self.ha_status(),
            },
        )

    def ha_status(self) -> dict[str, Any]:
        if self.hagate is None:
            return {"enabled": False, "leader": True}
        return self.hagate.status()

    def status(self) -> dict[str, Any]:
        self.operator.refresh()  # every instance shows the deployment's words as they are now
        executor = self._executor()
        now = self.clock()
        state = self.stream.state if self.stream is not None else StreamState.DISCONNECTED
        return {
            "venue": self.opts.venue,
            "mode": executor.mode,
            "ready": self.ready,
            "stream": state.name.lower(),
            "runs": self.runs,
            "armed": executor.armed,
            "allow_mainnet_trade": self.gate_env.get(ALLOW_MAINNET) == "1",
            "symbol_whitelist": executor.symbol_whitelist,
            "config": self.config.summary(),
            "budget": {
                "calls_used_day": self.budget.state.calls_used_day,
                "notional_used_day": str(self.budget.state.notional_used_day),
                "calls_remaining_day": self.budget.calls_remaining_day(now),
                "notional_remaining_day": str(self.budget.notional_remaining_day(now)),
            },
            "last_run": self.last_report.summary() if self.last_report else None,
            "last_remediation_ts_ms": executor.last_remediation_ms,
            "last_planned_ts_ms": executor.last_planned_ms,
            "cooldown": self.cooldown_status(),
            "planned_last_hour": self.metrics.planned_in_last_hour(),
            "expected": self.expected_status(),
            "metrics_url": self.metrics_url,
            "ha": self.ha_status(),
            "deadman": None if self.deadman is None else self.deadman.status(),
            "runtime": self.runtime.section(self.venue.rest.base_url if self.venue else None),
            **settings_status(self.operator),
        }

    # --- the bot's expected state (gate E) ------------------------------------------------

    def expected_heartbeat_age(self) -> float:
        """Seconds since a bot last wrote the expected state (``math.inf``: never): what
        gate E, the gauge and ``/status`` read."""
        if self.expected is None:
            return NEVER
        return self.expected.heartbeat_age_s(self.clock())

    def expected_status(self) -> dict[str, Any] | None:
        """Gate E's input as ``/status`` shows it (``grinder gates`` evaluates it)."""
        if self.expected is None:
            return None
        return self.expected.status(self.clock(), self.config.expected_heartbeat_max_age_s)

    def observe_expected(self) -> None:
        """Log when gate E opens or closes (and, at start, the state it starts in)."""
        if self.expected is None:
            return
        max_age = self.config.expected_heartbeat_max_age_s
        age = self.expected_heartbeat_age()
        live = age <= max_age
        if live == self._expected_live:
            return
        self._expected_live = live
        shown = "inf" if math.isinf(age) else f"{age:.1f}"
        if live:
            log_event(
                log,
                "EXPECTED_STATE_LIVE",
                source=self.expected.kind,
                where=self.expected.where,
                heartbeat_age_s=shown,
            )
            return
        log_event(
            log,
            "EXPECTED_STATE_STALE",
            logging.WARNING,
            source=self.expected.kind,
            where=self.expected.where,
            heartbeat_age_s=shown,
            max_age_s=f"{max_age:g}",
            blocks="expected_state_stale",
            hint=self.expected.hint(age, max_age),
        )

    def cooldown_status(self) -> dict[str, Any]:
        """Gate 6 as the next run sees it: the anchors ``begin_run`` would use now.

        With HA the live anchor is the shared one (Redis ``<ns>:last_write_ms``: the
        last write of any instance), read now; ``last_remediation_ts_ms`` above is
        this instance's own last write only.
        """
        executor = self._executor()
        live, dry = executor.cooldown_anchors()
        self.metrics.observe_last_remediation(live)
        return {
            "seconds": self.config.cooldown_seconds,
            "source": "redis" if executor.cooldown is not None else "local",
            "live_anchor_ts_ms": live,
            "dry_run_anchor_ts_ms": dry,
        }

    async def position(self, symbol: str) -> dict[str, Any]:
        """The observed position of ``symbol`` (each side) and its mark price now.

        The mark price is read from the venue the way a flatten reads it
        (``premiumIndex``, weight 1); when it cannot be read, ``mark_price`` is None
        and ``mark_price_error`` says why.
        """
        port = self._port()
        positions = [
            {
                "position_side": p.position_side.value,
                "qty": str(p.qty),
                "entry_price": str(p.entry_price),
                "changed_ts_ms": p.changed_ts_ms,
            }
            for p in sorted(self.observed.positions(), key=lambda p: p.position_side.value)
            if p.symbol == symbol and p.qty != 0
        ]
        mark: str | None = None
        error: str | None = None
        try:
            price = await port.get_mark_price(symbol)
        except ExchangeError as exc:
            error = " ".join(str(exc).split())
        else:
            if price is None:
                error = "the venue gave no mark price"
            else:
                mark = str(price)
        try:
            step = await port.get_step_size(symbol)
        except ExchangeError:
            step = None
        age = self.observed.snapshot_age_ms(self.clock())
        return {
            "symbol": symbol,
            "positions": positions,
            "mark_price": mark,
            "mark_price_error": error,
            "step_size": None if step is None else str(step),
            "venue": self.opts.venue,
            "snapshot_age_s": None if age is None else round(age / 1000, 3),
        }

    # --- the dead-man switch -------------------------------------------------------------

    def _deadman_switch(self, port: BinanceFuturesPort) -> DeadmanSwitch:
        hagate = self.hagate
        return DeadmanSwitch(
            self.opts.deadman,
            port,
            health=self.deadman_health,
            leadership=(lambda: 0) if hagate is None else (lambda: hagate.acting_token),
            open_orders=self.observed.open_orders,
            metrics=self.deadman_metrics,
            clock=self.clock,
            audit_event=self.audit_event,
        )

    def deadman_health(self) -> Health:
        """What the dead-man switch renews on: leadership, the bot, the stream, snapshots."""
        stream = self.stream.state if self.stream is not None else StreamState.DISCONNECTED
        return Health(
            acting=self.may_remediate(),
            lease_left_ms=None if self.hagate is None else self.hagate.lease_window_ms(),
            heartbeat_age_s=self.expected_heartbeat_age(),
            heartbeat_max_age_s=self.config.expected_heartbeat_max_age_s,
            stream_live=stream is StreamState.LIVE,
            snapshot_age_ms=self.observed.snapshot_age_ms(self.clock()),
            max_snapshot_age_ms=self.opts.deadman.max_snapshot_age_ms,
        )

    # --- high availability ---------------------------------------------------------------

    def may_remediate(self) -> bool:
        """Gate 0: HA off, or the lease is held and a snapshot was taken since it was acquired."""
        return self.hagate is None or self.hagate.may_remediate()

    def ha_step_down(self, hold_s: float) -> dict[str, Any]:
        """Manual failover (control socket): give the lease up, stay a follower ``hold_s``."""
        assert self.hagate is not None, "HA is off"
        return self.hagate.step_down(hold_s)

    def audit_event(self, event: str, fields: dict[str, Any]) -> None:
        """An audit record outside a run (leadership changes, Redis state)."""
        if self.audit is None:
            return
        self.audit.write(
            event,
            {
                "ts_ms": self.clock(),
                "run_id": None,
                "mode": self._executor().mode if self.executor is not None else None,
                "action": self.config.action.value,
                **fields,
            },
        )

    def _observe_settings(self) -> None:
        self.settings.observe_settings()

    def _set_executor_armed(self, armed: bool) -> None:
        if self.executor is not None:
            self.executor.armed = armed

    def _ha_hooks(self) -> HaHooks:
        """What the HA side may ask of this service (``grinder.service.ha``)."""

        def on_acting() -> None:
            self.schedule(self.clock())
            if self.deadman is not None:
                self.deadman.wake()

        def spawn(work: Coroutine[Any, Any, None], name: str) -> None:
            self._tasks.append(asyncio.create_task(work, name=name))

        return HaHooks(
            snapshot=self.snapshot,
            on_acting=on_acting,
            audit_event=self.audit_event,
            on_change=self.settings.on_change,
            refresh_operator=self.operator.refresh,
            stopping=self.stop_event.is_set,
            spawn=spawn,
        )

    # --- helpers -------------------------------------------------------------------------

    def _executor(self) -> RemediationExecutor:
        assert self.executor is not None, "service not started"
        return self.executor
