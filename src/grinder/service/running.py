"""The running service: every part it runs with, built once the venue is connected.

``open_running`` is the async factory: it opens the expected state, connects the venue
(its clock synced, its filters read), builds the engine, the ledger, gate 0 (HA), the
executor, the runner, the loop, the stream, the dead-man switch, the views and the
controls, serves the HTTP endpoints and the control socket, takes the first snapshot,
and only then starts the stream, the HA campaign and the dead-man switch. What it
returns, ``RunningService``, holds every part, each there from the start (``hagate`` and
``deadman`` are None only when HA or the switch is not configured). Every part is
registered with the service's ``Teardown`` as it is opened, so a stop that interrupts the
start closes what was opened, and nothing else.

Each part is given what it uses: callables and small frozen inputs (``HaHooks``,
``ConsoleSource``, ``LedgerInputs``, ``ViewParts``), never the service.
"""

from __future__ import annotations

import contextlib
import logging
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grinder.console.routes import ConsoleSource, add_console_routes
from grinder.exchange.binance.stream import StreamSettings, UserDataStream
from grinder.exchange.binance.stream_windows import ReconnectWindows
from grinder.incidents.sink import IncidentLedger, LedgerInputs
from grinder.operator.state import OperatorStateError
from grinder.reconcile.config import ConfigError
from grinder.reconcile.engine import ReconcileEngine
from grinder.reconcile.types import PositionKey
from grinder.remediation.executor import RemediationExecutor
from grinder.remediation.runner import ReconcileRunner
from grinder.reporting.report import Reporter
from grinder.service.control import Controls, build_control_app, start_control_site
from grinder.service.deadman import DeadmanSwitch
from grinder.service.ha import HaHooks, ServiceHa, release
from grinder.service.httpd import build_metrics_app, listen_error, start_site
from grinder.service.incidents import add_incident_routes, open_ledger, open_trades
from grinder.service.loop import LoopMetrics, ServiceLoop
from grinder.service.shutdown import (
    HA_RELEASE_S,
    STREAM_STOP_S,
    UNWIND_S,
    VENUE_CLOSE_S,
    bounded,
)
from grinder.service.state import ExpectedWatch, open_expected
from grinder.service.teardown import Stage
from grinder.service.venue import VenueConnection, connect_venue
from grinder.service.views import DeadmanHealth, EventAudit, ServiceViews, ViewParts, may_remediate

if TYPE_CHECKING:
    from grinder.service.app import ReconcileService

log = logging.getLogger("grinder.service")


@dataclass(frozen=True)
class RunningService:
    """Every part the service runs with (see the module doc)."""

    expected: ExpectedWatch
    venue: VenueConnection
    engine: ReconcileEngine
    ledger: IncidentLedger
    executor: RemediationExecutor
    runner: ReconcileRunner
    loop: ServiceLoop
    stream: UserDataStream
    views: ServiceViews
    controls: Controls
    metrics_url: str
    hagate: ServiceHa | None
    """Gate 0 and the campaign (None: HA off)."""
    deadman: DeadmanSwitch | None
    """The dead-man switch (None: no ``[deadman] symbols``)."""


def register_ha_release(base: ReconcileService) -> None:
    """The HA lease is handed over first at the stop, whether the start finished or not:
    the runtime campaigns (and holds Redis) from before it."""
    ha = base.ha
    if ha is not None:
        base.teardown.on_close(Stage.HA, lambda d: release(ha, d.part(HA_RELEASE_S)))


async def open_running(base: ReconcileService) -> RunningService:
    """Connect, take the first snapshot, start the stream and the HTTP endpoints."""
    base.service_metrics.up.set(1)
    ha = base.ha  # gate 0 first: its Redis metrics count from the first read
    hagate = None if ha is None else ServiceHa(ha, base.ha_metrics, base.metrics.ha_is_leader)
    expected = _open_expected(base)
    venue = await _connect(base)
    filters = await venue.port.exchange_info()
    engine = ReconcileEngine(
        base.config,
        expected.source.store,
        base.observed,
        step_sizes={s: f.step_size for s, f in filters.items()},
    )
    windows = ReconnectWindows()
    ledger = _open_ledger(base, expected, windows)
    reporter = Reporter(metrics=base.metrics, audit=base.audit, logger=log, ledger=ledger)
    executor = _executor(base, venue, expected, reporter, hagate)
    base.settings.follow_armed(lambda armed: setattr(executor, "armed", armed))
    try:  # the operator's standing words, in force before anything is judged
        base.settings.operator.start(base.settings.configured_settings())
    except OperatorStateError as exc:
        raise ConfigError(f"operator state: {exc}") from None
    runner = ReconcileRunner(engine, executor, reporter=reporter)
    loop = _loop(base, expected, venue, runner, ledger)
    stream = _stream(base, venue, loop, windows)
    expected.observe()
    audit_event = EventAudit(base.audit, base.clock, base.config, executor)
    health = DeadmanHealth(base.opts, base.clock, base.observed, expected, stream, hagate)
    deadman = _deadman(base, venue, health, hagate, audit_event)
    views = ServiceViews(
        _view_parts(base, expected, executor, stream, venue, hagate=hagate, deadman=deadman)
    )
    controls = _controls(base, views, hagate)
    base.settings.observe_settings()
    metrics_url = await _serve_http(base, views, controls, ledger, executor)
    await loop.snapshot()
    views.ready = True
    base.service_metrics.ready.set(1)
    running = RunningService(
        expected=expected,
        venue=venue,
        engine=engine,
        ledger=ledger,
        executor=executor,
        runner=runner,
        loop=loop,
        stream=stream,
        views=views,
        controls=controls,
        metrics_url=metrics_url,
        hagate=hagate,
        deadman=deadman,
    )
    _start_tasks(base, running, audit_event)
    base.metrics.ha_is_leader.set(1 if may_remediate(hagate) else 0)
    return running


def _open_expected(base: ReconcileService) -> ExpectedWatch:
    opts, ha = base.opts, base.ha
    source = open_expected(
        opts.expected_db,
        ha.open_expected() if ha is not None else None,
        create=opts.create_expected_db,
        where=opts.expected_db_where,
    )
    base.teardown.on_close_now(Stage.EXPECTED, source.close)
    source.on_refresh_error = lambda _exc: base.ha_metrics.expected_refresh_failures.inc()
    source.refresh()
    watch = ExpectedWatch(source, base.config, base.clock)
    base.metrics.expected_heartbeat_age.set_function(watch.heartbeat_age)
    return watch


async def _connect(base: ReconcileService) -> VenueConnection:
    venue = await connect_venue(
        base.opts,
        base.credentials,
        clock=base.clock,
        on_weight=base.exchange_metrics.observe_weight,
        on_spend=base.exchange_metrics.observe_spend,
    )
    base.teardown.on_close(
        Stage.VENUE, lambda d: bounded(venue.close(), d.part(VENUE_CLOSE_S), "venue")
    )
    base.stop.on_stop(venue.rest.begin_close)  # no wait of the REST client goes on
    await venue.rest.sync_time()
    return venue


def _open_ledger(
    base: ReconcileService, expected: ExpectedWatch, windows: ReconnectWindows
) -> IncidentLedger:
    store = expected.source.store
    observed = base.observed

    def position_changed_ms(key: PositionKey) -> int | None:
        pos = observed.get_position(key)
        return None if pos is None else pos.changed_ts_ms

    ledger = open_ledger(
        base.opts,
        base.ha,
        inputs=LedgerInputs(
            heartbeat_age_s=expected.heartbeat_age,
            windows=windows.windows,
            recorded_by_bot=lambda cid: store.get_order(cid) is not None,
            position_changed_ms=position_changed_ms,
        ),
        clock=base.clock,
        audit=base.audit,
        registry=base.registry,
    )
    base.teardown.on_close_now(Stage.LEDGER, ledger.close)
    return ledger


def _executor(
    base: ReconcileService,
    venue: VenueConnection,
    expected: ExpectedWatch,
    reporter: Reporter,
    hagate: ServiceHa | None,
) -> RemediationExecutor:
    ha = base.ha
    return RemediationExecutor(
        config=base.config,
        port=venue.port,
        armed=base.opts.armed,
        budget=base.budget,
        is_leader=hagate.may_remediate if hagate is not None else None,
        cooldown=ha.budget_store if ha is not None else None,
        env=base.settings.gate_env,
        clock=base.clock,
        reporter=reporter,
        lease_window_ms=hagate.lease_window_ms if hagate is not None else None,
        read_expected_order=expected.source.read_order,
        expected_heartbeat_age=expected.heartbeat_age,
        operator=base.settings.operator,
    )


def _loop(
    base: ReconcileService,
    expected: ExpectedWatch,
    venue: VenueConnection,
    runner: ReconcileRunner,
    ledger: IncidentLedger,
) -> ServiceLoop:
    return ServiceLoop(
        base.opts,
        clock=base.clock,
        observed=base.observed,
        expected=expected,
        venue=venue,
        runner=runner,
        record_evidence=ledger.evidence.record,
        metrics=LoopMetrics(base.metrics, base.service_metrics, base.exchange_metrics),
        stop=base.stop,
        tally=base.tally,
        after_run=base.settings.observe_settings,
        watch=base.watch,
        incident_trades=open_trades(ledger, venue, base.opts.service, base.clock).after_run,
    )


def _stream(
    base: ReconcileService, venue: VenueConnection, loop: ServiceLoop, windows: ReconnectWindows
) -> UserDataStream:
    """The user-data stream (started once the first snapshot is in)."""
    return UserDataStream(
        venue.rest,
        venue.ws_base_url,
        on_event=loop.on_event,
        on_resync=loop.snapshot,
        settings=StreamSettings(keepalive_s=base.opts.service.stream_keepalive_s),
        on_state=base.exchange_metrics.observe_state,
        on_parse_error=lambda _e: base.exchange_metrics.stream_parse_errors.inc(),
        clock=base.clock,
        windows=windows,
    )


def _view_parts(
    base: ReconcileService,
    expected: ExpectedWatch,
    executor: RemediationExecutor,
    stream: UserDataStream,
    venue: VenueConnection,
    *,
    hagate: ServiceHa | None,
    deadman: DeadmanSwitch | None,
) -> ViewParts:
    return ViewParts(
        opts=base.opts,
        runtime=base.runtime,
        clock=base.clock,
        budget=base.budget,
        metrics=base.metrics,
        observed=base.observed,
        expected=expected,
        executor=executor,
        stream=stream,
        venue=venue,
        hagate=hagate,
        deadman=deadman,
        operator=base.settings.operator,
        live=base.settings.live,
        tally=base.tally,
        stop=base.stop,
    )


def _deadman(
    base: ReconcileService,
    venue: VenueConnection,
    health: DeadmanHealth,
    hagate: ServiceHa | None,
    audit_event: EventAudit,
) -> DeadmanSwitch | None:
    if not base.opts.deadman.symbols:
        return None
    switch = DeadmanSwitch(
        base.opts.deadman,
        venue.port,
        health=health,
        leadership=(lambda: 0) if hagate is None else (lambda: hagate.acting_token),
        open_orders=base.observed.open_orders,
        metrics=base.deadman_metrics,
        clock=base.clock,
        audit_event=audit_event,
    )
    base.settings.follow_deadman(switch)
    return switch


def _controls(base: ReconcileService, views: ServiceViews, hagate: ServiceHa | None) -> Controls:
    on_change = base.settings.on_change
    return Controls(
        base.config,
        base.settings.operator,
        status=views.status,
        reload=lambda: base.settings.reload_config("control"),
        clock=base.clock,
        ha_step_down=None if hagate is None else (lambda hold: hagate.step_down(hold, on_change)),
        position=views.position,
    )


async def _serve_http(
    base: ReconcileService,
    views: ServiceViews,
    controls: Controls,
    ledger: IncidentLedger,
    executor: RemediationExecutor,
) -> str:
    """The metrics endpoint (probes, console) and the control socket; the metrics URL."""
    opts = base.opts
    app = build_metrics_app(base.registry, healthy=views.healthy, ready=views.readiness)
    console = ConsoleSource(
        clock=base.clock,
        status=views.status,
        ledger=ledger,
        observed=base.observed,
        executor=executor,
        last_report=lambda: base.tally.last_report,
    )
    add_console_routes(app, console)
    try:
        runner, bound = await start_site(app, opts.metrics_host, opts.metrics_port)
    except OSError as exc:
        raise listen_error(exc, opts.metrics_host, opts.metrics_port) from None
    base.teardown.add_site(runner)
    views.metrics_url = f"http://{opts.metrics_host}:{bound}/metrics"
    if base.control_socket is not None:
        control_app = build_control_app(controls)
        add_incident_routes(control_app, ledger)
        path = base.control_socket
        site = await start_control_site(control_app, path)
        base.teardown.add_site(site)
        inode = path.lstat().st_ino
        base.teardown.on_close_now(Stage.CONTROL_SOCKET, lambda: remove_socket(path, inode))
    return views.metrics_url


def remove_socket(path: Path, inode: int) -> None:
    """Remove the control socket this service bound, and nothing else: not a path it
    never bound (a start refused because another service listens there, or because the
    path is some other file), nor a socket another process has put there since."""
    with contextlib.suppress(OSError):
        info = path.lstat()
        if stat.S_ISSOCK(info.st_mode) and info.st_ino == inode:
            path.unlink()


def _start_tasks(base: ReconcileService, running: RunningService, audit: EventAudit) -> None:
    """The stream, the HA campaign and the dead-man switch, once the first snapshot is in."""
    teardown, stream = base.teardown, running.stream

    async def stop_stream(deadline_part: float) -> None:
        await bounded(stream.stop(deadline_part), deadline_part + UNWIND_S, "user-data stream")

    teardown.on_close(Stage.STREAM, lambda d: stop_stream(d.part(STREAM_STOP_S)))
    teardown.spawn(stream.run(), "user-data-stream")
    if running.hagate is not None:
        hooks = _ha_hooks(base, running, audit)
        teardown.adopt(running.hagate.start(hooks))
    if running.deadman is not None:
        teardown.spawn(running.deadman.run(), "deadman-switch")


def _ha_hooks(base: ReconcileService, running: RunningService, audit: EventAudit) -> HaHooks:
    """What the HA side may ask of the running service (``grinder.service.ha``)."""
    loop, deadman = running.loop, running.deadman

    def on_acting() -> None:
        loop.schedule(base.clock())
        if deadman is not None:
            deadman.wake()

    return HaHooks(
        snapshot=loop.snapshot,
        on_acting=on_acting,
        audit_event=audit,
        on_change=base.settings.on_change,
        refresh_operator=base.settings.operator.refresh,
        stopping=base.stop.is_set,
        spawn=base.teardown.spawn,
    )
