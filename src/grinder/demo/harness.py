"""The three components side by side: set-up and tear-down, the demo's output, the helpers the
cases use, and ``--ceremony``'s hold, which runs them with no drift injected."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from grinder.bot.grid import GridBot, GridSettings
from grinder.clock import wall_clock_ms
from grinder.demo.feed import Feed
from grinder.demo.options import (
    LIVE_GATES,
    QTY,
    SERVICE_LOG,
    STAGE2_SETTINGS,
    SYMBOL,
    SYMBOLS,
    WIDTH,
    CaseResult,
    DemoOptions,
    service_options,
)
from grinder.demo.sim import brief
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.binance.rest import BinanceRestClient
from grinder.exchange.simulator.client import SimControl
from grinder.exchange.simulator.config import SimConfig
from grinder.exchange.simulator.server import SimulatorServer
from grinder.reporting.audit import AuditWriter
from grinder.service.app import ReconcileService
from grinder.service.artifacts import RunDir, Tee
from grinder.service.loop import LoopWatch
from grinder.service.main import prepare_budget, print_configuration
from grinder.service.options import ServiceOptions
from grinder.service.running import RunningService
from grinder.service.runtime_status import ServiceRuntime
from grinder.service.venue import credentials_for


class DemoHarness:
    """Everything but the cases: ``Demo`` (``grinder.demo.cases``) adds them."""

    def __init__(self, opts: DemoOptions, tee: Tee, run_dir: RunDir) -> None:
        self.opts = opts
        self.t = opts.timing
        self.tee = tee
        self.run_dir = run_dir
        self.results: list[CaseResult] = []
        self.feed = Feed(self._say)
        self.sim: SimulatorServer | None = None
        self.ctl: SimControl | None = None
        self.service: ReconcileService | None = None
        self.running: RunningService | None = None
        """The service once started."""
        self.service_opts: ServiceOptions | None = None
        self.loop_task: asyncio.Task[None] | None = None
        self.bot: GridBot | None = None
        self.bot_rest: BinanceRestClient | None = None
        self.manual_cid = ""
        self.control_socket: Path | None = None  # --ceremony only

    # --- output ------------------------------------------------------------------------

    def line(self, text: str = "", indent: int = 0) -> None:
        """One line, wrapped at WIDTH with continuation lines indented by ``indent``."""
        if len(text) <= WIDTH or indent == 0:
            self.tee.line(text)
            return
        for part in textwrap.wrap(text, WIDTH, subsequent_indent=" " * indent):
            self.tee.line(part)

    def _say(self, t: float, text: str) -> None:
        self.line(f"  {t - self.feed.window.t0:+6.2f}s  {text}", indent=13)

    def note(self, text: str) -> None:
        self._say(time.monotonic(), f"bot: {text}")

    def heading(self, key: str, title: str, what: str) -> None:
        self.line()
        self.line(f"-- {key}. {title} " + "-" * max(3, 66 - len(key) - len(title)))
        self.line(f"  what    {what}", indent=10)

    def record(self, r: CaseResult, instead: str | None = None) -> None:
        """Record and print ``r`` as it is when the case passed; when it failed, with the verdict
        FAILED and, as observed, ``instead`` or else what the case's window saw."""
        if not r.ok:
            observed = self.feed.window.describe() if instead is None else instead
            r = replace(r, observed=observed, verdict="FAILED")
        self.results.append(r)
        latency = "" if r.latency_s is None else f"; latency {r.latency_s:.2f} s"
        why = f" ({r.why})" if r.why and r.ok else ""
        self.line(f"  verdict [{r.key}]: {r.verdict} -- {r.observed}{latency}{why}", indent=14)

    # --- set-up and tear-down ----------------------------------------------------------

    async def start(self) -> None:
        o = self.opts
        self.feed.open()
        sim = SimulatorServer(
            port=0, config=SimConfig(seed=o.seed, symbols=list(SYMBOLS), walk_frozen=True)
        )
        await sim.start()
        self.sim, self.ctl = sim, SimControl(sim.base_url)
        marks = (await self.ctl.state())["markPrices"]
        prices = "  ".join(f"{s} {marks[s]}" for s in SYMBOLS)
        self.line(f"simulator  {sim.base_url}  seed {o.seed}  mark {prices}")
        sopts = self.service_opts = service_options(o, sim.base_url)
        print_configuration(self.tee, sopts, self.run_dir)
        env = LIVE_GATES if o.live else {}  # gate 5 for this service only, never exported
        service = self.service = ReconcileService(
            sopts,
            credentials=credentials_for("sim"),
            budget=prepare_budget(sopts, self.tee, wall_clock_ms()),
            audit=AuditWriter(self.run_dir.audit),
            control_socket=self.control_socket,
            env=env,
            watch=LoopWatch(report=self.feed.push),
            runtime=ServiceRuntime.of(
                replace(sopts, log_file=self.run_dir.path / SERVICE_LOG),
                env,
                started_ts_ms=wall_clock_ms(),
                control_socket=self.control_socket,
                run_dir=self.run_dir.path,
                audit_path=self.run_dir.audit,
            ),
        )
        running = self.running = await service.start()
        live = await running.stream.wait_live(10)
        self.loop_task = asyncio.create_task(running.loop.run_until_stopped(), name="reconcile")
        self.line(
            f"service    ready: first snapshot in, stream {'live' if live else 'NOT LIVE'}, "
            f"GET /readyz -> {await self._readyz()}"
        )
        self.line(f"           metrics {running.metrics_url}")
        assert running.expected.source.memory is not None
        rest = self.bot_rest = BinanceRestClient(sim.base_url, credentials_for("sim"))
        await rest.sync_time()
        self.bot = GridBot(
            BinanceFuturesPort(rest),
            running.expected.source.memory,
            GridSettings(symbol=SYMBOL, levels=2, qty=QTY),
            ws_base_url=sim.ws_base_url,
            on_note=self.note,
        )
        self.line(
            f"bot        grid on {SYMBOL}: 2 BUY + 2 SELL LIMIT levels 0.5% apart, {QTY} each; "
            "each order recorded in the shared store, then sent",
            indent=11,
        )
        self.feed.open()
        await self.bot.start()
        await self.feed.watch(2 * self.t.full_pass_s)

    async def _readyz(self) -> str:
        assert self.running is not None
        url = self.running.metrics_url.removesuffix("/metrics") + "/readyz"
        async with self._ctl().session.get(url) as resp:
            body = await resp.json()
            return f"{resp.status} (stream {body.get('stream')})"

    async def stop(self) -> None:
        service = self.service
        if service is not None:
            service.request_stop()  # the loop ends now
            if self.loop_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.loop_task, 10)
        if self.bot is not None:
            await self.bot.stop()
        if service is not None:
            await service.close()
        for closer in (self.bot_rest, self.ctl):
            if closer is not None:
                await closer.close()
        if self.sim is not None:
            await self.sim.stop()

    # --- helpers -----------------------------------------------------------------------

    def _bot(self) -> GridBot:
        assert self.bot is not None
        return self.bot

    def _ctl(self) -> SimControl:
        assert self.ctl is not None
        return self.ctl

    async def inject(self, text: str, method: str, path: str, body: dict[str, Any]) -> None:
        """Announce, then call the control API; the case's clock starts when it returns."""
        await self._control("inject", text, method, path, body)
        self.feed.open()

    async def cleanup(self, text: str, method: str, path: str, body: dict[str, Any]) -> None:
        await self._control("cleanup", text, method, path, body)

    async def _control(
        self, label: str, text: str, method: str, path: str, body: dict[str, Any]
    ) -> None:
        """Announce the call (``label`` and ``text``, then the request), then make it."""
        self.line(f"  {label:<7} {text}", indent=10)
        self.line(f"          {method} /_sim{path} {brief(body)}", indent=12)
        self.feed.open()
        await self._ctl().call(method, path, body)

    def _bot_cid(self, index: int) -> str:
        for cid, order in self._bot().orders.items():
            if order.level.index == index and order.open:
                return cid
        raise RuntimeError(f"the bot has no open order at grid level {index}")

    # --- --ceremony ----------------------------------------------------------------------

    async def hold(self, stop: asyncio.Event) -> None:
        """``--ceremony``: start everything, inject nothing, print how to run the checker, and
        keep the service running until ``stop`` is set or ``--hold`` seconds have passed."""
        self.control_socket = Path(tempfile.mkdtemp(prefix="grinder-demo-")) / "control.sock"
        await self.start()
        assert self.running is not None
        socket, url = shlex.quote(str(self.control_socket)), self.running.metrics_url
        log = shlex.quote(str(self.run_dir.path / SERVICE_LOG))
        flags = f"--socket {socket} --metrics-url {url}"
        assert self.sim is not None
        self.line()
        self.line(f"control    {self.control_socket}")
        self.line(
            f"simulator  {self.sim.base_url}  inject drift at {self.sim.base_url}/_sim/ "
            "(docs/SIMULATOR.md)",
            indent=11,
        )
        self.line(
            "ceremony   no drift is injected; check runbook 13's stages against this service:"
        )
        self.line(f"  grinder ceremony check --stage 1 {flags} --log-file {log}")
        self.line("           stage 2 (dry-run, cancel only), opened through the control socket:")
        for field, value in STAGE2_SETTINGS:
            self.line(f"  grinder control set {field} {value} --socket {socket}")
        self.line(f"  grinder ceremony check --stage 2 {flags} --log-file {log}")
        self.line("           misconfigure a gate, and stage 2 fails with the evidence:")
        self.line(f"  grinder control set dry_run false --socket {socket}")
        hold = self.opts.hold_s
        until = "SIGINT/SIGTERM" + ("" if hold is None else f" or {hold:g} s")
        self.line(f"ceremony ready: the service runs until {until}")
        deadline = None if hold is None else time.monotonic() + hold
        while not stop.is_set():
            left = 5.0 if deadline is None else min(5.0, deadline - time.monotonic())
            if left <= 0:
                break
            self.feed.open()  # print anything the service reports; keep no history
            await self.feed.until(lambda _w: stop.is_set(), left)
        self.line(
            "ceremony   stopping: " + ("signal received" if stop.is_set() else "hold elapsed")
        )
