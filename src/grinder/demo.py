"""``grinder demo``: the whole product, end to end, in one process, in well under a minute.

Three real components run side by side:

* the bundled Binance USDⓈ-M **simulator** (``SimulatorServer`` on a loopback port);
* a small **grid bot** (``grinder.bot.grid``) trading BTCUSDT through the real
  Binance adapter over HTTP, recording its expected state before it sends;
* the live **reconcile service** (``ReconcileService``, unchanged), connected to
  the simulator's URL as to any venue.

Expected state: the bot writes into the service's in-memory store
(``service.expected.memory``). Both run in this process, so the store the service
reads *is* the bot's record: no file, no refresh lag, and "record, then send"
holds exactly. (A bot in another process would use the SQLite recorder of
docs/EXPECTED_STATE.md; the bot's calls are the same on either store.)

Drift is then injected one case at a time through the simulator's ``/_sim/``
control API, and what the service decided is shown as it happens. Every event
line is derived from the service's ``RunReport`` objects (a subclass hands each
run's report to the demo), never from log text. Grace periods, passes and
snapshots are shortened so the demo is quick; the code paths are the production
ones. Exit 0 when every case behaved as expected, 1 otherwise.

``--ceremony`` runs the same three components but injects no drift: the service
has runbook 13's stage-2 settings (action=cancel_all, dry-run, planning allowed,
not armed, ALLOW_MAINNET_TRADE unset) and a control socket, so ``grinder ceremony
check --stage 1`` and ``--stage 2`` can be run against it. It keeps running until
SIGINT/SIGTERM or ``--hold`` seconds, then stops cleanly (exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shlex
import signal
import string
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from grinder.bot.grid import GridBot, GridSettings
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.binance.rest import BinanceRestClient
from grinder.exchange.simulator.client import SimControl
from grinder.exchange.simulator.config import SimConfig
from grinder.exchange.simulator.server import SimulatorServer
from grinder.reconcile.audit import AuditWriter
from grinder.reconcile.config import ReconcileConfig, RemediationAction, RuntimeEnv
from grinder.reconcile.identity import generate_client_order_id, is_ours
from grinder.reconcile.labels import Event, ResultStatus, SkipReason, TriageOutcome
from grinder.reconcile.logs import LOGGER_NAME, configure_logging, format_event
from grinder.reconcile.remediation import ActionResult, wall_clock_ms
from grinder.reconcile.report import RunReport
from grinder.reconcile.routing import ActionKind
from grinder.reconcile.types import Mismatch, MismatchType
from grinder.service.app import ReconcileService
from grinder.service.artifacts import RunDir, Tee, clean_old_days
from grinder.service.main import _write_artifacts, prepare_budget, print_configuration
from grinder.service.options import DEFAULT_ARTIFACT_TTL_DAYS, ServiceConfig, ServiceOptions
from grinder.service.venue import credentials_for

SYMBOL = "BTCUSDT"  # the bot's market
OTHER = "ETHUSDT"  # where a position is opened by hand
SYMBOLS = (SYMBOL, OTHER)
QTY = Decimal("0.002")
HAND_POSITION = Decimal("0.050")
WIDTH = 104
RULE = "=" * 72
LIVE_GATES = {
    "RECONCILE_DRY_RUN": "0",
    "RECONCILE_ALLOW_ACTIVE": "1",
    "ARMED": "1",
    "ALLOW_MAINNET_TRADE": "1",
}
ARTIFACTS = ("stdout.log", "audit.jsonl", "metrics.prom", "metrics_summary.json")
RESULT_EVENT = {
    ResultStatus.PLANNED: Event.REMEDIATION_PLANNED,
    ResultStatus.EXECUTED: Event.REMEDIATION_EXECUTED,
    ResultStatus.BLOCKED: Event.REMEDIATION_BLOCKED,
    ResultStatus.FAILED: Event.REMEDIATION_FAILED,
    ResultStatus.SKIPPED: Event.REMEDIATE_SKIP,
}


@dataclass(frozen=True)
class Timing:
    order_grace_ms: int
    position_grace_ms: int
    full_pass_s: float
    snapshot_s: float
    case_timeout_s: float

    @property
    def settle_s(self) -> float:
        """How long "nothing happens" is watched: the longer grace period and three passes."""
        return max(self.order_grace_ms, self.position_grace_ms) / 1000 + 3 * self.full_pass_s


NORMAL = Timing(1000, 800, full_pass_s=0.5, snapshot_s=1.0, case_timeout_s=8.0)
FAST = Timing(500, 300, full_pass_s=0.25, snapshot_s=0.5, case_timeout_s=6.0)


@dataclass(frozen=True)
class DemoOptions:
    live: bool = False
    seed: int = 1
    fast: bool = False
    artifacts_root: Path | None = None
    verbose: bool = False
    ceremony: bool = False
    hold_s: float | None = None  # --ceremony only: stop after this many seconds

    @property
    def timing(self) -> Timing:
        return FAST if self.fast else NORMAL

    @property
    def root(self) -> Path:
        return self.artifacts_root or Path(tempfile.gettempdir()) / "grinder-demo"


@dataclass
class CaseResult:
    key: str
    title: str
    expected: str
    observed: str
    latency_s: float | None
    verdict: str
    ok: bool
    why: str = ""


def service_options(opts: DemoOptions, venue_url: str) -> ServiceOptions:
    """The service's settings: dry-run with action=flatten, (``--live``) every gate open, or
    (``--ceremony``) runbook 13's stage 2: cancel_all, dry-run, planning allowed, not armed."""
    t, live, ceremony = opts.timing, opts.live, opts.ceremony
    reconcile = ReconcileConfig(
        symbols=list(SYMBOLS),
        order_grace_ms=t.order_grace_ms,
        position_grace_ms=t.position_grace_ms,
        action=RemediationAction.CANCEL_ALL if ceremony else RemediationAction.FLATTEN,
        dry_run=not live,
        allow_active_remediation=live or ceremony,
        cooldown_seconds=0.0,
        symbol_whitelist=list(SYMBOLS),
    )
    service = ServiceConfig(
        full_pass_interval_s=t.full_pass_s,
        min_snapshot_interval_s=t.snapshot_s,
        snapshot_weight_per_minute=1200.0,  # 9 weight a snapshot: the minimum interval wins
        sim_symbols=list(SYMBOLS),
    )
    return ServiceOptions(
        venue="sim",
        venue_url=venue_url,
        # a safety net: the demo stops the service long before (--ceremony: until stopped)
        duration_s=None if ceremony else 120.0,
        metrics_port=0,
        env=RuntimeEnv.from_env(LIVE_GATES if live else {}),
        reconcile=reconcile,
        service=service,
        armed=live,
        artifacts_dir=opts.root,
    )


class DemoService(ReconcileService):
    """The live service, unchanged, plus a hook that hands every run's report to the demo."""

    def __init__(self, *args: Any, on_report: Callable[[RunReport], None], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.on_report = on_report

    async def run_once(self) -> RunReport:
        report = await super().run_once()
        self.on_report(report)
        return report


# --- what the service reported ---------------------------------------------------------------


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
        self._printed: set[tuple[str, tuple[str, str, str], str]] = set()

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

    def _once(self, kind: str, m: Mismatch, detail: str) -> bool:
        """Standing mismatches repeat in every run: print each decision about one once."""
        key = (kind, m.key, detail)
        fresh = key not in self._printed
        self._printed.add(key)
        return fresh

    def _take(self, t: float, r: RunReport) -> None:
        self.window.seen.append((t, r))
        for m in r.new_incidents:
            fields = {k: _num(v) for k, v in {**m.as_dict(), **m.details}.items()}
            self.say(t, format_event(Event.RECONCILE_MISMATCH, fields))
        for outcome, n in sorted(r.triage.items()):
            fields = {"outcome": outcome.value, "queries": n}
            self.say(t, format_event(Event.RECONCILE_TRIAGE, fields))
        for x in r.results:
            if self._once("result", x.mismatch, f"{x.status}:{x.reason}"):
                self.say(t, format_event(RESULT_EVENT[x.status], _result_fields(x)))
        for m, reason in r.skipped:
            if self._once("skip", m, reason.value):
                fields = {"reason": reason.value, **m.as_dict()}
                self.say(t, format_event(Event.REMEDIATE_SKIP, fields))
        for m in r.cleared_incidents:
            self._printed = {k for k in self._printed if k[1] != m.key}
            self.say(t, format_event(Event.RECONCILE_MISMATCH_CLEARED, m.as_dict()))
        if r.foreign_open_orders != self.foreign:
            self.foreign = r.foreign_open_orders
            self.say(t, f"foreign open orders: {self.foreign} (not ours: never cancelled)")


# --- the simulator's control API ----------------------------------------------------------


def _position(state: Any, symbol: str) -> Decimal:
    amounts = [Decimal(p["positionAmt"]) for p in state["positions"] if p["symbol"] == symbol]
    return sum(amounts, Decimal(0))


def _open_ids(state: Any) -> set[str]:
    return {str(o["clientOrderId"]) for o in state["orders"]}


def _limit(side: str, price: Decimal, cid: str) -> dict[str, Any]:
    return {
        "symbol": SYMBOL,
        "side": side,
        "type": "LIMIT",
        "quantity": str(QTY),
        "price": str(price),
        "timeInForce": "GTC",
        "clientOrderId": cid,
    }


def _brief(body: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in body.items()) + "}"


# --- the demo ----------------------------------------------------------------------------


class Demo:
    def __init__(self, opts: DemoOptions, tee: Tee, run_dir: RunDir) -> None:
        self.opts = opts
        self.t = opts.timing
        self.tee = tee
        self.run_dir = run_dir
        self.results: list[CaseResult] = []
        self.feed = Feed(self._say)
        self.sim: SimulatorServer | None = None
        self.ctl: SimControl | None = None
        self.service: DemoService | None = None
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

    def record(self, r: CaseResult) -> None:
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
        service = self.service = DemoService(
            sopts,
            credentials=credentials_for("sim"),
            budget=prepare_budget(sopts, self.tee, wall_clock_ms()),
            audit=AuditWriter(self.run_dir.audit),
            control_socket=self.control_socket,
            env=LIVE_GATES if o.live else {},  # gate 5 for this service only, never exported
            on_report=self.feed.push,
        )
        await service.start()
        assert service.stream is not None
        live = await service.stream.wait_live(10)
        self.loop_task = asyncio.create_task(service.run_until_stopped(), name="reconcile")
        self.line(
            f"service    ready: first snapshot in, stream {'live' if live else 'NOT LIVE'}, "
            f"GET /readyz -> {await self._readyz()}"
        )
        self.line(f"           metrics {service.metrics_url}")
        assert service.expected is not None
        assert service.expected.memory is not None
        rest = self.bot_rest = BinanceRestClient(sim.base_url, credentials_for("sim"))
        await rest.sync_time()
        self.bot = GridBot(
            BinanceFuturesPort(rest),
            service.expected.memory,
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
        assert self.service is not None
        assert self.service.metrics_url is not None
        url = self.service.metrics_url.removesuffix("/metrics") + "/readyz"
        async with self._ctl().session.get(url) as resp:
            body = await resp.json()
            return f"{resp.status} (stream {body.get('stream')})"

    async def stop(self) -> None:
        service = self.service
        if service is not None:
            service.stop_event.set()
            service.schedule(service.clock())  # wake the loop now
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
        self.line(f"  inject  {text}", indent=10)
        self.line(f"          {method} /_sim{path} {_brief(body)}", indent=12)
        self.feed.open()
        await self._ctl().call(method, path, body)
        self.feed.open()

    async def cleanup(self, text: str, method: str, path: str, body: dict[str, Any]) -> None:
        self.line(f"  cleanup {text}", indent=10)
        self.line(f"          {method} /_sim{path} {_brief(body)}", indent=12)
        self.feed.open()
        await self._ctl().call(method, path, body)

    def _bot_cid(self, index: int) -> str:
        for cid, order in self._bot().orders.items():
            if order.level.index == index and order.open:
                return cid
        raise RuntimeError(f"the bot has no open order at grid level {index}")

    # --- the cases ---------------------------------------------------------------------

    async def own_fill(self) -> None:
        bot, t = self._bot(), self.t
        self.heading(
            "0",
            "the bot trades",
            "the market reaches the bot's first BUY level: the bot books its own fill (from its "
            "own stream) and re-places the level. Normal trading must not be reported.",
        )
        price = bot.center - bot.spacing
        await self.inject(
            f"mark {SYMBOL} -> {price}", "POST", "/mark", {"symbol": SYMBOL, "price": str(price)}
        )
        booked = await self.feed.until(lambda _w: bot.fills >= 1, t.case_timeout_s)
        await bot.idle()
        await self.feed.watch(t.settle_s)
        w = self.feed.window
        held = _position(await self._ctl().state(), SYMBOL)
        agree = "agrees" if held == bot.position else f"DISAGREES ({held})"
        self.line(f"  the bot intends {bot.position} {SYMBOL} now; the exchange {agree}")
        ok = booked and held == bot.position == QTY and w.mismatches() == 0 and len(w.seen) >= 2
        observed = f"no mismatch in {len(w.seen)} runs" if ok else w.describe()
        verdict = "QUIET" if ok else "FAILED"
        why = f"watched for {t.settle_s:.2f} s"
        self.record(CaseResult("0", "own fill", "no mismatch", observed, None, verdict, ok, why))

    async def orphan(self) -> None:
        live, bot, t = self.opts.live, self._bot(), self.t
        self.heading(
            "a",
            "an orphan order of ours",
            "an order with our prefix that the bot never recorded (as if it crashed between "
            "sending and recording)",
        )
        ts = wall_clock_ms() // 1000
        cid = generate_client_order_id(
            strategy_id="d", symbol=SYMBOL, level_id=9, ts_seconds=ts, seq=1
        )
        price = bot.center - 10 * bot.spacing
        await self.inject(
            f"BUY {QTY} {SYMBOL} @ {price} as {cid}", "POST", "/orders", _limit("BUY", price, cid)
        )
        want = ResultStatus.EXECUTED if live else ResultStatus.PLANNED
        kind = MismatchType.ORDER_EXISTS_UNEXPECTED
        found = await self.feed.until(
            lambda w: (
                w.incident(kind, cid=cid) is not None
                and w.result(want, ActionKind.CANCEL, cid) is not None
            ),
            t.case_timeout_s,
        )
        w = self.feed.window
        ok = found
        if live:
            gone = cid not in _open_ids(await self._ctl().state())
            self.line(f"  exchange: the orphan is {'gone' if gone else 'STILL OPEN'}")
            ok = ok and gone
        else:
            self.line("  dry-run: nothing was sent, the orphan is still on the exchange")
        observed = f"{kind.value}, cancel {want.value}" if ok else w.describe()
        expected = f"{kind.value}, cancel {want.value}"
        verdict = ("REMEDIATED" if live else "DETECTED") if ok else "FAILED"
        why = f"order grace {t.order_grace_ms / 1000:.2f} s from the order's creation"
        latency = w.incident(kind, cid=cid)
        self.record(
            CaseResult("a", "orphan of ours", expected, observed, latency, verdict, ok, why)
        )
        if not live:
            await self.cleanup(
                "the orphan is cancelled on the venue, so the next case starts clean",
                "POST",
                "/orders/cancel",
                {"clientOrderId": cid},
            )
        await self.feed.until(lambda w: w.cleared(kind, cid=cid) is not None, 3.0)

    async def manual_order(self) -> None:
        bot, t = self._bot(), self.t
        self.heading(
            "b",
            "a manual order",
            "someone places an order by hand on the web UI "
            "(client id web_...): not ours, whatever the settings",
        )
        rng = random.Random(self.opts.seed)
        cid = self.manual_cid = "web_" + "".join(
            rng.choice(string.ascii_letters + string.digits) for _ in range(16)
        )
        price = bot.center - 12 * bot.spacing
        before = self.feed.foreign
        await self.inject(
            f"BUY {QTY} {SYMBOL} @ {price} as {cid}", "POST", "/orders", _limit("BUY", price, cid)
        )
        counted = await self.feed.until(
            lambda w: w.foreign_above(before) is not None, t.case_timeout_s
        )
        await self.feed.watch(t.settle_s)
        w = self.feed.window
        touched = w.mentions(cid)
        still_open = cid in _open_ids(await self._ctl().state())
        self.line(
            f"  refused to touch {cid}: {'a mismatch or action (WRONG)' if touched else 'no'} "
            f"mismatch, no action in {len(w.seen)} runs; on the exchange it is "
            f"{'still open' if still_open else 'GONE'}",
            indent=10,
        )
        ok = counted and not touched and still_open
        observed = f"foreign, untouched in {len(w.seen)} runs" if ok else w.describe()
        verdict = "LEFT ALONE" if ok else "FAILED"
        latency = w.foreign_above(before)
        why = "counted at the next pass, never a candidate"
        expected = "foreign, untouched"
        self.record(CaseResult("b", "manual order", expected, observed, latency, verdict, ok, why))

    async def hand_position(self) -> None:
        live, t = self.opts.live, self.t
        self.heading(
            "c",
            "a position opened by hand",
            f"someone buys {HAND_POSITION} {OTHER} by hand; the bot intends no position there",
        )
        await self.inject(
            f"MARKET BUY {HAND_POSITION} {OTHER}",
            "POST",
            "/positions",
            {"symbol": OTHER, "quantity": str(HAND_POSITION)},
        )
        want = ResultStatus.EXECUTED if live else ResultStatus.PLANNED
        kind = MismatchType.POSITION_NONZERO_UNEXPECTED
        found = await self.feed.until(
            lambda w: (
                w.incident(kind, symbol=OTHER) is not None
                and w.result(want, ActionKind.FLATTEN, OTHER) is not None
            ),
            t.case_timeout_s,
        )
        w = self.feed.window
        ok = found
        if live:
            flat = _position(await self._ctl().state(), OTHER) == 0
            self.line(
                f"  exchange: {OTHER} is {'flat' if flat else 'STILL OPEN'} "
                "(a reduce-only MARKET order placed by GRINDER)"
            )
            ok = ok and flat
        else:
            self.line(f"  dry-run: nothing was sent, {OTHER} still holds {HAND_POSITION}")
        observed = f"{kind.value}, flatten {want.value}" if ok else w.describe()
        expected = f"{kind.value}, flatten {want.value}"
        verdict = ("REMEDIATED" if live else "DETECTED") if ok else "FAILED"
        why = f"position grace {t.position_grace_ms / 1000:.2f} s from the change"
        latency = w.incident(kind, symbol=OTHER)
        self.record(CaseResult("c", "hand position", expected, observed, latency, verdict, ok, why))
        if not live:
            await self.cleanup(
                "the position is closed by hand, so the next case starts clean",
                "POST",
                "/positions",
                {"symbol": OTHER, "quantity": str(-HAND_POSITION)},
            )
        await self.feed.until(lambda w: w.cleared(kind, symbol=OTHER) is not None, 3.0)

    async def vanished(self) -> None:
        bot, t = self._bot(), self.t
        assert self.service is not None
        threshold = self.service.config.triage_miss_threshold
        cid = self._bot_cid(2)
        self.heading(
            "d",
            "a bot order vanishes",
            "one of the bot's orders disappears from the "
            "exchange without any event; the bot still believes it open",
        )
        await self.inject(
            f"{cid} vanishes", "DELETE", "/orders", {"clientOrderId": cid, "symbol": SYMBOL}
        )
        kind = MismatchType.ORDER_MISSING_ON_EXCHANGE
        found = await self.feed.until(
            lambda w: (
                w.incident(kind, cid=cid) is not None
                and w.triage(TriageOutcome.NOT_FOUND) >= threshold
                and w.skip(SkipReason.ALERT_ONLY, kind) is not None
            ),
            t.case_timeout_s,
        )
        w = self.feed.window
        misses = w.triage(TriageOutcome.NOT_FOUND)
        self.line(
            f"  triage: absent from the snapshot, so the service asked GET /fapi/v1/order "
            f"{misses}x; reported after {threshold} misses, alert only",
            indent=10,
        )
        ok = found and bot.orders[cid].open
        observed = f"not found x{misses}, {kind.value}" if ok else w.describe()
        why = f"next snapshot within {t.snapshot_s:g} s, then one query a pass"
        expected = f"not found x{threshold}, {kind.value}"
        verdict, latency = ("DETECTED" if ok else "FAILED"), w.incident(kind, cid=cid)
        self.record(
            CaseResult("d", "order vanishes", expected, observed, latency, verdict, ok, why)
        )

    async def lost_fill(self) -> None:
        bot, t = self._bot(), self.t
        cid = self._bot_cid(-2)
        self.heading(
            "e",
            "a fill whose event is lost",
            "one of the bot's orders fills, but its "
            "ORDER_TRADE_UPDATE never arrives, neither at the bot nor at GRINDER",
        )
        self.line(f"  setup   POST /_sim/stream/suppress {_brief({'clientOrderId': cid})}")
        await self._ctl().call("POST", "/stream/suppress", {"clientOrderId": cid})
        booked_before = bot.position
        await self.inject(f"{cid} fills", "POST", "/orders/fill", {"clientOrderId": cid})
        kind = MismatchType.POSITION_QTY_DIVERGENCE
        found = await self.feed.until(
            lambda w: (
                w.triage(TriageOutcome.FOUND_FILLED) >= 1
                and w.incident(kind, symbol=SYMBOL) is not None
            ),
            t.case_timeout_s,
        )
        await self.feed.watch(2 * t.full_pass_s)
        w = self.feed.window
        order_mismatch = w.mentions(cid)
        unbooked = bot.orders[cid].open and bot.position == booked_before
        self.line(
            f"  the order: triage found it FILLED = normal progress, "
            f"{'an order mismatch (WRONG)' if order_mismatch else 'no order mismatch'}"
        )
        self.line(
            f"  the position: the bot still believes the order open and intends "
            f"{bot.position}; the unbooked fill shows as {kind.value} (alert only)",
            indent=10,
        )
        await self._ctl().call("DELETE", "/stream/suppress")
        ok = found and not order_mismatch and unbooked
        observed = f"FOUND_FILLED, {kind.value}" if ok else w.describe()
        why = f"position grace {t.position_grace_ms / 1000:.2f} s"
        expected = f"FOUND_FILLED, {kind.value}"
        verdict, latency = ("DETECTED" if ok else "FAILED"), w.incident(kind, symbol=SYMBOL)
        self.record(
            CaseResult("e", "fill event lost", expected, observed, latency, verdict, ok, why)
        )

    async def account(self) -> None:
        live, bot = self.opts.live, self._bot()
        assert self.service is not None
        assert self.service.expected is not None
        store = self.service.expected.store
        self.heading("end", "the account afterwards", "read from the simulator")
        state = await self._ctl().state()
        ours = sorted(c for c in _open_ids(state) if is_ours(c))
        unrecorded = [c for c in ours if store.get_order(c) is None]
        manual = next((o for o in state["orders"] if o["clientOrderId"] == self.manual_cid), None)
        other = _position(state, OTHER)
        writes = int(state["counters"]["writeRequests"]) - bot.writes
        manual_text = "MISSING" if manual is None else f"{manual['status']}, untouched"
        self.line(f"  open orders of ours: {len(ours)}, not recorded by the bot: {len(unrecorded)}")
        self.line(f"  manual order {self.manual_cid}: {manual_text}")
        self.line(
            f"  positions: {OTHER} {other}, {SYMBOL} {_position(state, SYMBOL)} "
            f"(the bot's book: {bot.position})"
        )
        self.line(f"  exchange writes by GRINDER: {writes} (the bot's own: {bot.writes})")
        if live:
            ok = not unrecorded and manual is not None and other == 0 and writes == 2
            expected = "orphan gone, manual kept, flat"
            observed = f"orphan gone, manual kept, {OTHER} flat, {writes} writes"
            verdict = "CLEAN"
        else:
            ok = manual is not None and writes == 0
            expected = "0 writes by GRINDER"
            observed = "0 writes by GRINDER, manual order open"
            verdict = "UNTOUCHED"
        if not ok:
            observed = (
                f"unrecorded {len(unrecorded)}, manual {manual_text}, {OTHER} {other}, "
                f"{writes} writes"
            )
        verdict = verdict if ok else "FAILED"
        self.record(CaseResult("end", "account", expected, observed, None, verdict, ok))
        self.line(
            "  the bot stops: for each order it believes open, it records the cancel, "
            "then sends it",
            indent=10,
        )
        self.feed.open()
        await bot.stop(cancel_orders=True)

    async def run(self) -> None:
        await self.start()
        for case in (
            self.own_fill,
            self.orphan,
            self.manual_order,
            self.hand_position,
            self.vanished,
            self.lost_fill,
            self.account,
        ):
            await case()

    async def hold(self, stop: asyncio.Event) -> None:
        """``--ceremony``: start everything, inject nothing, print how to run the checker, and
        keep the service running until ``stop`` is set or ``--hold`` seconds have passed."""
        self.control_socket = Path(tempfile.mkdtemp(prefix="grinder-demo-")) / "control.sock"
        await self.start()
        assert self.service is not None
        socket, url = shlex.quote(str(self.control_socket)), self.service.metrics_url
        log = shlex.quote(str(self.run_dir.path / "service.log"))
        flags = f"--socket {socket} --metrics-url {url}"
        self.line()
        self.line(f"control    {self.control_socket}")
        self.line(
            "ceremony   no drift is injected; check runbook 13's stages against this service:"
        )
        for stage in (1, 2):
            self.line(f"  grinder ceremony check --stage {stage} {flags} --log-file {log}")
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


# --- the command -------------------------------------------------------------------------


def print_banner(tee: Tee, opts: DemoOptions, run_dir: RunDir) -> None:
    t = opts.timing
    mode = "LIVE against the SIMULATOR" if opts.live else "DRY-RUN"
    if opts.ceremony:
        mode = "CEREMONY, runbook 13 stage 2"
    for text in (
        RULE,
        f"  GRINDER DEMO: reconcile -> remediate, end to end ({mode})",
        RULE,
    ):
        tee.line(text)
    if opts.live:
        for text in (
            "  !!! LIVE MODE -- against the bundled SIMULATOR, not Binance !!!",
            "  Every gate is open, for this process only: dry_run=0, allow_active=1, armed=1,",
            "  ALLOW_MAINNET_TRADE=1 (handed to the service, not exported), action=flatten,",
            f"  whitelist {','.join(SYMBOLS)}. GRINDER really cancels and flattens, on the",
            "  simulator. Your environment's gate variables are not read.",
            RULE,
        ):
            tee.line(text)
    if opts.ceremony:
        for text in (
            "  No drift is injected. The service has runbook 13's stage-2 settings: action=",
            "  cancel_all, dry_run=true, allow_active_remediation=true, not armed,",
            "  ALLOW_MAINNET_TRADE unset (your environment's gate variables are not read),",
            "  and a control socket, for `grinder ceremony check` and `grinder control`.",
            RULE,
        ):
            tee.line(text)
    for text in (
        "  exchange   the Binance USDⓈ-M simulator, in this process; the mark walk is frozen,",
        "             so every fill is one the demo causes",
        f"  bot        a grid bot on {SYMBOL}, through the real Binance adapter over HTTP",
        "  service    ReconcileService, in this process, reading the bot's expected store",
        "             (in memory, shared: what the service reads is the bot's own record)",
        f"  timings    shortened for the demo: order grace {t.order_grace_ms} ms (default 5000),",
        f"             position grace {t.position_grace_ms} ms (default 3000), full pass every "
        f"{t.full_pass_s:g} s",
        f"             (default 10), snapshot every {t.snapshot_s:g} s (default 30 or more), "
        "cooldown 0 s (default 60)",
        f"  artifacts  {run_dir.path}",
        RULE,
    ):
        tee.line(text)


def print_results(tee: Tee, results: Sequence[CaseResult]) -> None:
    rows = [("case", "expected", "observed", "latency", "verdict")]
    for r in results:
        latency = "-" if r.latency_s is None else f"{r.latency_s:.2f} s"
        rows.append((f"{r.key:<3} {r.title}", r.expected, r.observed, latency, r.verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    tee.line()
    tee.line(RULE)
    tee.line("  RESULTS")
    tee.line(RULE)
    for i, row in enumerate(rows):
        cells = [row[c].rjust(widths[c]) if c == 3 else row[c].ljust(widths[c]) for c in range(5)]
        tee.line("  " + "  ".join(cells).rstrip())
        if i == 0:
            tee.line("  " + "  ".join("-" * w for w in widths))


def _configure_logs(run_dir: RunDir, verbose: bool) -> Path:
    """Every event line goes to ``service.log`` in the run directory; to stderr only with -v."""
    path = run_dir.path / "service.log"
    logger = configure_logging(log_file=path, level=logging.INFO)
    for handler in logger.handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.INFO if verbose else logging.CRITICAL)
    return path


async def _run(demo: Demo) -> int:
    try:
        await asyncio.wait_for(demo.run(), 150)
    except Exception as exc:
        demo.line(f"demo error: {' '.join(f'{type(exc).__name__}: {exc}'.split())}")
        return 1
    finally:
        await demo.stop()
    return 0 if demo.results and all(r.ok for r in demo.results) else 1


async def _run_ceremony(demo: Demo) -> int:
    """``--ceremony``: 0 after a clean stop (signal or ``--hold``), 1 when something failed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await demo.hold(stop)
    except Exception as exc:
        demo.line(f"demo error: {' '.join(f'{type(exc).__name__}: {exc}'.split())}")
        return 1
    finally:
        await demo.stop()
        for sig in signals:
            loop.remove_signal_handler(sig)
        if demo.control_socket is not None:
            with contextlib.suppress(OSError):
                demo.control_socket.unlink(missing_ok=True)
                demo.control_socket.parent.rmdir()
    return 0


def run_demo(opts: DemoOptions, out: TextIO | None = None) -> int:
    """Run the demo; 0 when every case behaved as expected, 1 otherwise."""
    now = datetime.now(UTC)
    clean_old_days(opts.root, DEFAULT_ARTIFACT_TTL_DAYS, now.date())
    run_dir = RunDir.create(opts.root, now)
    log_path = _configure_logs(run_dir, opts.verbose)
    tee = Tee(run_dir.stdout_log, out or sys.stdout)
    started = time.monotonic()
    try:
        print_banner(tee, opts, run_dir)
        demo = Demo(opts, tee, run_dir)
        code = asyncio.run(_run_ceremony(demo) if opts.ceremony else _run(demo))
        if not opts.ceremony:
            print_results(tee, demo.results)
        if demo.service is not None and demo.service_opts is not None:
            _write_artifacts(demo.service, demo.service_opts, run_dir, code, tee)
        tee.line(f"  demo took {time.monotonic() - started:.1f} s; run directory {run_dir.path}")
        files = [*ARTIFACTS, run_dir.budget_state.name, log_path.name]
        tee.line(f"  files: {' '.join(files)}")
        tee.line(f"exit_code={code}")
        return code
    finally:
        tee.close()
        logging.getLogger(LOGGER_NAME).handlers.clear()
