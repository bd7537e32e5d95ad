"""Detection latency and request weight of the live service, at its default settings.

The real ``ReconcileService`` runs in-process against the bundled simulator
(``SimulatorServer(port=0)``, every catalog symbol the client can parse, its own
loopback port), with every default: grace periods 5,000 ms (orders) / 3,000 ms
(positions), a full pass every 10 s, the snapshot interval it computes from
request weight, triage budget 10 and miss threshold 3, dry-run with action
``none``. Nothing is shortened: this measures the product as shipped. Drift is injected through the
simulator's control API only (``/_sim/`` is not rate-limited, so the weight
figures are the service's own).

a. Detection latency, drift injection → first ``RECONCILE_MISMATCH`` (the run
   whose ``RunReport.new_incidents`` holds it; timed when that run returns),
   for orphan orders of ours (``POST /_sim/orders``, our client order id) and
   manual positions (``POST /_sim/positions``). Injections go in waves
   (``--concurrency``, default 10, on different symbols and ids, each one
   jittered by up to 1 s); each drift is reset through the control API (cancel
   with its event / position set to 0) and the next wave starts only after the
   service has cleared every incident of the last one. Target: p99 <= grace +
   250 ms.
b. An expected order (recorded in ``service.expected.memory``) that vanishes
   without an event (``DELETE /_sim/orders``) → ``ORDER_MISSING_ON_EXCHANGE``.
   Only a REST snapshot can see it, then triage must miss it 3 times in 3 runs.
   ``periodic`` (default): the bot's orders exist before the service starts;
   vanishing times are spread evenly over one snapshot interval in force, so the
   figures sample every phase of the periodic snapshot; at most
   ``triage_query_budget`` (10) per service instance, several instances side by
   side, so no candidate is ever deferred by the budget. The part lasts one
   snapshot interval plus the triage runs. ``forced`` (``--quick`` /
   ``--smoke``): a snapshot is forced right after the vanishing, so only the
   triage part is timed; it is labelled as such.
c. Request weight per minute at defaults, idle and with light drift (every
   20 s one of: an orphan order, a manual position, a vanishing expected order;
   the first two reset once reported), for ``--minutes``. Every REST request
   counts (snapshots, triage queries, listenKey, mark price reads, start-up):
   the simulator's per-IP accounting is recorded charge by charge, with the
   endpoint, and cross-checked against ``GET /_sim/state`` (per clock minute)
   and the REST client's counter. Target: <= 24 weight/min (1 % of 2,400).

The parts run side by side in one event loop, each against its own simulator
and service instance (``--sequential`` runs them one after the other); the
event-loop lag is measured and printed. Figures are never asserted; a part
that crashes is reported and the exit status is 1.

Run: ``.venv/bin/python -m benchmarks.bench_service [--quick | --smoke]
[--injections N] [--minutes M] [--concurrency N] [--missing-mode periodic|forced]
[--parts abc] [--sequential]``. Default: 50 injections per kind, 3 minutes of
weight; it lasts the longest of the parts: --minutes, one snapshot interval +
20 s (b), ~50 s (a). ``--quick``: 10 injections, 1 minute. ``--smoke`` (the test suite):
3 injections, 20 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

import aiohttp

import grinder.exchange.simulator.app as sim_app
from benchmarks.common import min_qty, our_client_id, pct, plain, resting_order
from grinder.budget.tracker import BudgetTracker
from grinder.config_sources import RuntimeEnv
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.binance.rest import Credentials
from grinder.exchange.simulator import CATALOG, SimulatorServer, SymbolSpec
from grinder.exchange.simulator.weights import weight_of
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.types import ExpectedOrder, MismatchType, PositionSide, Side
from grinder.reporting.report import RunReport
from grinder.service.app import ReconcileService
from grinder.service.loop import LoopWatch
from grinder.service.options import ServiceConfig, ServiceOptions
from grinder.service.running import RunningService

HEADER = "GRINDER service at default settings against the in-process simulator"
WEIGHT_TARGET_PER_MIN = 24.0  # 1 % of 2,400
AFTER_GRACE_TARGET_MS = 250.0
DRIFT_EVERY_S = 20.0
Key = tuple[str, str, str]

log = logging.getLogger("bench_service")


# --- helpers --------------------------------------------------------------------------------


def resting_buy(spec: SymbolSpec, mark: Decimal, client_id: str) -> dict[str, Any]:
    """A GTC LIMIT BUY 5 % under the mark: rests, never fills within the benchmark."""
    return resting_order(spec, mark, "BUY", Decimal("0.05"), client_id)


def parsable_symbols() -> list[str]:
    """Catalog symbols whose exchangeInfo filters the real client can parse.

    The simulator writes a filter value with ``str(Decimal)``; a tick of
    ``0.0000001`` comes out as ``"1E-7"``, which ``parse_exchange_info`` refuses
    (Binance writes ``"0.0000001"``), so the service could not start against a
    simulator listing that symbol. Those symbols are left out here.
    """
    out = []
    for name, spec in CATALOG.items():
        values = [v for f in spec.filters() for k, v in f.items() if k != "filterType"]
        if not any(isinstance(v, str) and "E" in v.upper() for v in values):
            out.append(name)
    return out


SYMBOLS = parsable_symbols()


class Ids:
    """Unique client order ids across the whole run."""

    def __init__(self) -> None:
        self.seq = 0
        self.ts = int(time.time())

    def next(self, symbol: str) -> str:
        self.seq += 1
        return our_client_id(symbol, self.seq, self.ts)


IDS = Ids()


# --- weight accounting (simulator side) -----------------------------------------------------

_LAST_ENDPOINT = ["?"]
_original_weight_of = weight_of


def _weight_of_recording(method: str, path: str, params: Any) -> int:
    # The simulator's handler calls weight_of() and then limiter.charge() with no await in
    # between: the endpoint recorded here is the one the next charge is for.
    _LAST_ENDPOINT[0] = f"{method} {path}"
    return _original_weight_of(method, path, params)


def install_endpoint_recorder() -> None:
    setattr(sim_app, "weight_of", _weight_of_recording)  # noqa: B010 - runtime hook, no edit


SNAPSHOT_PATHS = ("/fapi/v1/openOrders", "/fapi/v1/openAlgoOrders", "/fapi/v3/positionRisk")
TRIAGE_PATHS = ("GET /fapi/v1/order", "GET /fapi/v1/algoOrder")


def category(endpoint: str) -> str:
    if any(endpoint.startswith(f"GET {p}") for p in SNAPSHOT_PATHS):
        return "snapshot"
    if endpoint in TRIAGE_PATHS:
        return "triage"
    if endpoint.endswith("/fapi/v1/listenKey"):
        return "listenKey"
    if endpoint.endswith("/fapi/v1/premiumIndex"):
        return "mark"
    return "other"


@dataclass
class Charge:
    t: float
    weight: int
    endpoint: str


class WeightLedger:
    """Every weight charge of one simulator (its per-IP accounting), with time and endpoint."""

    def __init__(self, sim: SimulatorServer) -> None:
        self.charges: list[Charge] = []
        limiter = sim.exchange.limiter
        original = limiter.charge

        def charge(ip: str, weight: int, path: str = "") -> int:
            self.charges.append(Charge(time.time(), weight, _LAST_ENDPOINT[0]))
            return original(ip, weight, path)

        setattr(limiter, "charge", charge)  # noqa: B010 - instance hook, not an edit

    def between(self, t0: float, t1: float) -> list[Charge]:
        return [c for c in self.charges if t0 <= c.t < t1]

    def snapshot_weights(self, spans: list[tuple[float, float]]) -> list[int]:
        """Weight of each snapshot: the snapshot-endpoint charges within its time span."""
        return [
            sum(c.weight for c in self.between(t0, t1 + 1e-3) if category(c.endpoint) == "snapshot")
            for t0, t1 in spans
        ]


# --- the service under test -----------------------------------------------------------------


class Timings:
    """Told by the real service's loop (``LoopWatch``): when each incident is first reported
    and cleared, and each snapshot's span."""

    def __init__(self) -> None:
        self.reported: dict[Key, list[float]] = defaultdict(list)
        self.cleared: dict[Key, list[float]] = defaultdict(list)
        self.snapshot_times: list[float] = []
        self.snapshot_spans: list[tuple[float, float]] = []
        self._changed = asyncio.Event()

    def report(self, report: RunReport) -> None:
        now = time.time()
        for m in report.new_incidents:
            self.reported[m.key].append(now)
        for m in report.cleared_incidents:
            self.cleared[m.key].append(now)
        if report.new_incidents or report.cleared_incidents:
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    def snapshot(self, sent_ms: int, done_ms: int) -> None:
        self.snapshot_times.append(done_ms / 1000)
        self.snapshot_spans.append((sent_ms / 1000, done_ms / 1000))

    async def wait_for(
        self, table: dict[Key, list[float]], key: Key, after: float, timeout_s: float
    ) -> float | None:
        """The first time ``key`` appears in ``table`` at or after ``after``; None on timeout."""

        def found() -> float | None:
            return next((t for t in table.get(key, ()) if t >= after), None)

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while found() is None:
                    await self._changed.wait()
        return found()


class TimedService:
    """The real service, started, with its ``Timings``; the parts the benchmark reads."""

    def __init__(self, service: ReconcileService, running: RunningService, timings: Timings):
        self.service = service
        self.running = running
        self.timings = timings
        self.opts = service.opts
        self.config = service.config
        self.expected = running.expected.source
        self.engine = running.engine
        self.venue = running.venue
        self.stream = running.stream
        self.reported = timings.reported
        self.cleared = timings.cleared
        self.snapshot_times = timings.snapshot_times
        self.snapshot_spans = timings.snapshot_spans
        self.wait_for = timings.wait_for
        self.snapshot = running.loop.snapshot
        self.snapshot_interval_s = running.loop.snapshot_interval_s
        self.run_until_stopped = running.loop.run_until_stopped
        self.close = service.close


class Rig:
    """One simulator and one service started against it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sim = SimulatorServer(port=0, seed=1, symbols=SYMBOLS)
        self.ledger = WeightLedger(self.sim)
        self.http: aiohttp.ClientSession | None = None
        self.service: TimedService | None = None
        self.task: asyncio.Task[None] | None = None
        self.t_start = 0.0
        self.t_ready = 0.0
        self.marks: dict[str, Decimal] = {}

    @property
    def svc(self) -> TimedService:
        assert self.service is not None
        return self.service

    async def start_sim(self) -> None:
        await self.sim.start()
        self.http = aiohttp.ClientSession()
        state = await self.ctl("GET", "/state")
        self.marks = {s: Decimal(p) for s, p in state["markPrices"].items()}

    async def start_service(self) -> None:
        opts = ServiceOptions(
            venue="sim",
            venue_url=self.sim.base_url,
            metrics_port=0,
            env=RuntimeEnv.from_env({}),
            reconcile=ReconcileConfig(),
            service=ServiceConfig(),
        )
        timings = Timings()
        service = ReconcileService(
            opts,
            credentials=Credentials(self.sim.config.api_key, self.sim.config.api_secret),
            budget=BudgetTracker(config=opts.reconcile),
            audit=None,
            control_socket=None,
            env={},
            watch=LoopWatch(report=timings.report, snapshot=timings.snapshot),
        )
        self.t_start = time.time()
        try:
            running = await service.start()
        except BaseException:
            await service.close()
            raise
        self.service = TimedService(service, running, timings)
        if not await running.stream.wait_live(15):
            raise SystemExit(f"{self.name}: the user-data stream did not go live")

    def run(self) -> None:
        self.t_ready = time.time()
        self.task = asyncio.create_task(self.svc.run_until_stopped(), name=f"svc-{self.name}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.service is not None:
            with contextlib.suppress(Exception):
                await self.service.close()
        if self.http is not None:
            await self.http.close()
        await self.sim.stop()

    async def ctl(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        assert self.http is not None
        url = f"{self.sim.base_url}/_sim{path}"
        async with self.http.request(method, url, json=body) as resp:
            data = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"{method} /_sim{path}: {resp.status} {data}")
            return data

    async def refresh_marks(self) -> None:
        state = await self.ctl("GET", "/state")
        self.marks = {s: Decimal(p) for s, p in state["markPrices"].items()}

    def record_expected(self, body: dict[str, Any], created_ms: int) -> None:
        assert self.svc.expected is not None
        assert self.svc.expected.memory is not None
        self.svc.expected.memory.record_order(
            ExpectedOrder(
                client_order_id=body["clientOrderId"],
                symbol=body["symbol"],
                side=Side(body["side"]),
                qty=Decimal(body["quantity"]),
                price=Decimal(body["price"]),
                created_ts_ms=created_ms,
            )
        )


def order_key(symbol: str, cid: str, mtype: MismatchType) -> Key:
    return (mtype.value, symbol, cid)


def position_key(symbol: str) -> Key:
    return (MismatchType.POSITION_NONZERO_UNEXPECTED.value, symbol, PositionSide.BOTH.value)


# --- drift primitives -----------------------------------------------------------------------


@dataclass
class Sample:
    latency_ms: float | None
    clean: bool = True


async def orphan_once(rig: Rig, symbol: str, jitter_s: float, timeout_s: float) -> Sample:
    await asyncio.sleep(jitter_s)
    cid = IDS.next(symbol)
    body = resting_buy(CATALOG[symbol], rig.marks[symbol], cid)
    key = order_key(symbol, cid, MismatchType.ORDER_EXISTS_UNEXPECTED)
    t0 = time.time()
    await rig.ctl("POST", "/orders", body)
    seen = await rig.svc.wait_for(rig.svc.reported, key, t0, timeout_s)
    await rig.ctl("POST", "/orders/cancel", {"clientOrderId": cid, "symbol": symbol})
    cleared = await rig.svc.wait_for(rig.svc.cleared, key, seen or t0, timeout_s)
    return Sample(None if seen is None else (seen - t0) * 1000, seen is None or cleared is not None)


async def position_once(rig: Rig, symbol: str, jitter_s: float, timeout_s: float) -> Sample:
    await asyncio.sleep(jitter_s)
    qty = min_qty(CATALOG[symbol], rig.marks[symbol])
    key = position_key(symbol)
    t0 = time.time()
    await rig.ctl("POST", "/positions", {"symbol": symbol, "quantity": plain(qty)})
    seen = await rig.svc.wait_for(rig.svc.reported, key, t0, timeout_s)
    await rig.ctl("POST", "/positions", {"symbol": symbol, "quantity": "0", "via": "set"})
    cleared = await rig.svc.wait_for(rig.svc.cleared, key, seen or t0, timeout_s)
    return Sample(None if seen is None else (seen - t0) * 1000, seen is None or cleared is not None)


# --- part a: detection latency --------------------------------------------------------------


@dataclass
class LatencyResult:
    kind: str
    grace_ms: int
    samples: list[Sample] = field(default_factory=list)
    elapsed_s: float = 0.0
    waves: int = 0

    @property
    def latencies(self) -> list[float]:
        return [s.latency_ms for s in self.samples if s.latency_ms is not None]


async def part_a(
    kind: str, n: int, concurrency: int, rigs: list[Rig], results: list[LatencyResult]
) -> None:
    rig = Rig(f"a-{kind}")
    rigs.append(rig)
    await rig.start_sim()
    await rig.start_service()
    rig.run()
    cfg = rig.svc.config
    grace = cfg.order_grace_ms if kind == "orphan order" else cfg.position_grace_ms
    result = LatencyResult(kind, grace)
    results.append(result)
    once = orphan_once if kind == "orphan order" else position_once
    symbols = list(rig.sim.exchange.specs)
    width = max(1, min(concurrency, len(symbols)))
    timeout_s = grace / 1000 + 30
    rng = random.Random(11 if kind == "orphan order" else 13)
    t0 = time.perf_counter()
    done = 0
    while done < n:
        k = min(width, n - done)
        await rig.refresh_marks()
        base = (result.waves * width) % len(symbols)
        wave = [symbols[(base + j) % len(symbols)] for j in range(k)]
        samples = await asyncio.gather(
            *(once(rig, s, rng.uniform(0, 1.0), timeout_s) for s in wave)
        )
        result.samples.extend(samples)
        result.waves += 1
        done += k
        engine = rig.svc.engine
        if engine is not None and engine.incidents.active:
            log.warning("%s: incidents still active after a wave", rig.name)
    result.elapsed_s = time.perf_counter() - t0


# --- part b: vanished expected order --------------------------------------------------------


@dataclass
class MissingSample:
    latency_s: float | None
    to_snapshot_s: float | None
    interval_s: float


@dataclass
class MissingResult:
    mode: str
    services: int
    per_service: int
    interval_s: float = 0.0
    threshold: int = 0
    retry_s: float = 0.0
    samples: list[MissingSample] = field(default_factory=list)
    elapsed_s: float = 0.0


async def missing_service(
    rig: Rig, fractions: list[float], forced: bool, result: MissingResult
) -> None:
    """Place the bot's orders, start the service, make them vanish one by one.

    ``fractions`` place each vanishing within the snapshot interval in force when the
    service loop starts (known only then): at ``f x interval`` after it, so every phase
    of the periodic snapshot is sampled, the worst (just after a snapshot was sent) too.
    """
    await rig.start_sim()
    symbols = list(rig.sim.exchange.specs)
    bodies: list[tuple[dict[str, Any], int]] = []
    for i in range(len(fractions)):
        symbol = symbols[(i * 7) % len(symbols)]
        body = resting_buy(CATALOG[symbol], rig.marks[symbol], IDS.next(symbol))
        await rig.ctl("POST", "/orders", body)
        bodies.append((body, int(time.time() * 1000)))
    await rig.start_service()
    for body, created in bodies:
        rig.record_expected(body, created)
    svc = rig.svc
    cfg = svc.config
    interval = svc.snapshot_interval_s()
    result.interval_s = interval
    result.threshold = cfg.triage_miss_threshold
    result.retry_s = svc.opts.service.triage_retry_ms / 1000
    full_pass_s = svc.opts.service.full_pass_interval_s
    rig.run()
    timeout_s = (
        svc.opts.service.max_snapshot_interval_s
        + (cfg.triage_miss_threshold + 2) * full_pass_s
        + 60
    )

    def key_of(body: dict[str, Any]) -> Key:
        return order_key(
            body["symbol"], body["clientOrderId"], MismatchType.ORDER_MISSING_ON_EXCHANGE
        )

    async def outcome(body: dict[str, Any], t0: float, in_force: float) -> MissingSample:
        seen = await svc.wait_for(svc.reported, key_of(body), t0, timeout_s)
        snap = next((t for t in svc.snapshot_times if t >= t0), None)
        return MissingSample(
            None if seen is None else seen - t0, None if snap is None else snap - t0, in_force
        )

    if forced:
        # Vanish them all once past their grace period (a bot's order is older than that),
        # then one snapshot at once: only the triage part is timed.
        oldest_due = max(created for _, created in bodies) + cfg.order_grace_ms + 500
        await asyncio.sleep(max(0.0, oldest_due / 1000 - time.time()))
        t0 = time.time()
        for body, _ in bodies:
            await rig.ctl("DELETE", "/orders", {"clientOrderId": body["clientOrderId"]})
        await svc.snapshot()
        samples = await asyncio.gather(*(outcome(b, t0, interval) for b, _ in bodies))
        result.samples.extend(samples)
        return

    async def one(body: dict[str, Any], fraction: float) -> MissingSample:
        phase = fraction * interval
        await asyncio.sleep(max(0.0, rig.t_ready + phase - time.time()))
        in_force = svc.snapshot_interval_s()
        t0 = time.time()
        await rig.ctl("DELETE", "/orders", {"clientOrderId": body["clientOrderId"]})
        return await outcome(body, t0, in_force)

    samples = await asyncio.gather(
        *(one(b, f) for (b, _), f in zip(bodies, fractions, strict=True))
    )
    result.samples.extend(samples)


async def part_b(n: int, forced: bool, rigs: list[Rig], results: list[MissingResult]) -> None:
    budget = ReconcileConfig().triage_query_budget
    per_service = max(1, min(10, budget or 10))
    services = max(1, math.ceil(n / per_service))
    result = MissingResult("forced" if forced else "periodic", services, per_service)
    results.append(result)
    t0 = time.perf_counter()
    # Stratified phases over the whole interval, dealt round-robin to the instances.
    rng = random.Random(17)
    fractions = [(i + rng.random()) / n for i in range(n)]
    groups = [fractions[i::services] for i in range(services)]
    local = [Rig(f"b-{i}") for i in range(services)]
    rigs.extend(local)
    subs = [MissingResult(result.mode, 1, len(g)) for g in groups]
    await asyncio.gather(
        *(
            missing_service(rig, g, forced, sub)
            for rig, g, sub in zip(local, groups, subs, strict=True)
        )
    )
    for sub in subs:
        result.samples.extend(sub.samples)
    result.interval_s = statistics.median(s.interval_s for s in subs)
    result.threshold = subs[0].threshold
    result.retry_s = subs[0].retry_s
    intervals = sorted({round(s.interval_s, 1) for s in subs})
    if len(intervals) > 1:
        log.warning("b: snapshot intervals differ between instances: %s", intervals)
    result.elapsed_s = time.perf_counter() - t0


# --- part c: request weight -----------------------------------------------------------------


@dataclass
class WeightResult:
    scenario: str
    minutes: float
    startup_weight: int = 0
    window_weight: int = 0
    by_category: Counter[str] = field(default_factory=Counter)
    by_endpoint: Counter[str] = field(default_factory=Counter)
    window_snapshots: list[int] = field(default_factory=list)
    startup_snapshots: list[int] = field(default_factory=list)
    clock_minutes: dict[int, int] = field(default_factory=dict)
    client_spent: int | None = None
    client_requests: int = 0
    ledger_total_at_end: int = 0
    interval_s: float = 0.0
    keepalive_s: float = 0.0
    projection: float = 0.0
    drift_events: Counter[str] = field(default_factory=Counter)

    @property
    def per_minute(self) -> float:
        return self.window_weight / self.minutes if self.minutes else math.nan


async def drift_loop(rig: Rig, stop_at: float, result: WeightResult) -> None:
    symbols = list(rig.sim.exchange.specs)
    kinds = ("orphan order", "manual position", "vanished order")
    tasks: list[asyncio.Task[Any]] = []
    i = 0
    while True:
        at = rig.t_ready + DRIFT_EVERY_S * (i + 0.5)
        if at >= stop_at:
            break
        await asyncio.sleep(max(0.0, at - time.time()))
        kind = kinds[i % len(kinds)]
        symbol = symbols[(i * 3) % len(symbols)]
        await rig.refresh_marks()
        remaining = max(1.0, stop_at - time.time())
        if kind == "orphan order":
            tasks.append(asyncio.create_task(orphan_once(rig, symbol, 0.0, remaining)))
        elif kind == "manual position":
            tasks.append(asyncio.create_task(position_once(rig, symbol, 0.0, remaining)))
        else:
            body = resting_buy(CATALOG[symbol], rig.marks[symbol], IDS.next(symbol))
            await rig.ctl("POST", "/orders", body)
            rig.record_expected(body, int(time.time() * 1000))
            await asyncio.sleep(1.0)
            await rig.ctl("DELETE", "/orders", {"clientOrderId": body["clientOrderId"]})
        result.drift_events[kind] += 1
        i += 1
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def poll_clock_minutes(rig: Rig, stop_at: float, out: dict[int, int]) -> None:
    """``usedWeight1m`` from ``GET /_sim/state`` once a second, max per clock minute."""
    while time.time() < stop_at:
        with contextlib.suppress(Exception):
            state = await rig.ctl("GET", "/state")
            minute = int(state["serverTime"]) // 60_000
            used = sum(ip["usedWeight1m"] for ip in state["weights"]["byIp"].values())
            out[minute] = max(out.get(minute, 0), used)
        await asyncio.sleep(1.0)


async def part_c(
    scenario: str, minutes: float, rigs: list[Rig], results: list[WeightResult]
) -> None:
    rig = Rig(f"c-{scenario}")
    rigs.append(rig)
    result = WeightResult(scenario, minutes)
    results.append(result)
    await rig.start_sim()
    poller_stop = [math.inf]
    await rig.start_service()
    rig.run()
    stop_at = rig.t_ready + minutes * 60
    poller_stop[0] = stop_at
    jobs: list[Awaitable[None]] = [poll_clock_minutes(rig, stop_at, result.clock_minutes)]
    if scenario == "light drift":
        jobs.append(drift_loop(rig, stop_at, result))
    await asyncio.gather(*jobs)
    await asyncio.sleep(max(0.0, stop_at - time.time()))
    svc = rig.svc
    ledger = rig.ledger
    startup = ledger.between(0.0, rig.t_ready)
    window = ledger.between(rig.t_ready, stop_at)
    result.startup_weight = sum(c.weight for c in startup)
    result.window_weight = sum(c.weight for c in window)
    spans = svc.snapshot_spans
    result.startup_snapshots = ledger.snapshot_weights([sp for sp in spans if sp[0] < rig.t_ready])
    result.window_snapshots = ledger.snapshot_weights(
        [sp for sp in spans if rig.t_ready <= sp[0] < stop_at]
    )
    for c in window:
        result.by_category[category(c.endpoint)] += c.weight
        result.by_endpoint[c.endpoint] += c.weight
    assert svc.venue is not None
    # Read together (no await in between): the ledger so far and the client's own counter.
    result.ledger_total_at_end = sum(c.weight for c in ledger.charges)
    spent = getattr(svc.venue.rest, "weight_spent", None)
    result.client_spent = spent if isinstance(spent, int) else None
    result.client_requests = svc.venue.rest.requests_sent
    result.interval_s = svc.snapshot_interval_s()
    result.keepalive_s = svc.opts.service.stream_keepalive_s
    result.projection = long_run_estimate(svc, result)


def long_run_estimate(svc: TimedService, result: WeightResult) -> float:
    """Steady-state weight/min from the measured pieces and the service's own schedule.

    Regular snapshots: the last one's weight every interval in force. If the service
    also takes an all-symbols snapshot every ``full_snapshot_interval_s`` (weight F),
    that one is followed by the interval F's weight buys, in which the regular ones
    would have cost ``rate x that interval``: only the difference is added. Plus one
    listenKey keepalive per keepalive interval, and the window's triage / mark / other
    weight per minute.
    """
    cfg = svc.opts.service
    last = (result.window_snapshots or result.startup_snapshots or [0])[-1]
    rate = last * 60 / result.interval_s
    full_every = getattr(cfg, "full_snapshot_interval_s", None)
    if isinstance(full_every, int | float) and full_every > 0:
        weight_full = BinanceFuturesPort.snapshot_weight(None)
        wanted = weight_full / cfg.snapshot_weight_per_minute * 60
        gap = max(cfg.min_snapshot_interval_s, min(cfg.max_snapshot_interval_s, wanted))
        rate += max(0.0, weight_full - rate * gap / 60) * 60 / full_every
    rate += 60 / result.keepalive_s
    other = sum(result.by_category.get(k, 0) for k in ("triage", "mark", "other"))
    return rate + (other / result.minutes if result.minutes else 0.0)


# --- event-loop lag -------------------------------------------------------------------------


async def loop_lag(stop: asyncio.Event, out: list[float]) -> None:
    step = 0.05
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(step)
        out.append((time.perf_counter() - t0 - step) * 1000)


# --- printing -------------------------------------------------------------------------------


def fmt_ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:,.0f}"


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def print_settings(cfg: ReconcileConfig, svc: ServiceConfig) -> None:
    print(
        f"settings:   order grace {cfg.order_grace_ms} ms, position grace "
        f"{cfg.position_grace_ms} ms, full pass every {svc.full_pass_interval_s:g} s, check "
        f"delay {svc.check_delay_ms} ms, triage budget {cfg.triage_query_budget} / miss "
        f"threshold {cfg.triage_miss_threshold}, snapshot weight budget "
        f"{svc.snapshot_weight_per_minute:g}/min (interval clamped "
        f"{svc.min_snapshot_interval_s:g}-{svc.max_snapshot_interval_s:g} s), listenKey "
        f"keepalive {svc.stream_keepalive_s:g} s, action {cfg.action.value}, dry-run "
        f"{cfg.dry_run}"
    )


def print_a(results: list[LatencyResult], rows: list[tuple[str, str, str, str]]) -> None:
    print()
    print("a. detection latency: injection (control call sent) -> first RECONCILE_MISMATCH")
    head = (
        f"{'drift':<16} {'n':>4} {'missed':>6} {'grace ms':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'after grace p50/p99/max ms':>27} {'waves':>5} {'took s':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        lat = r.latencies
        after = [v - r.grace_ms for v in lat]
        missed = len(r.samples) - len(lat)
        after_text = (
            f"{fmt_ms(pct(after, 50))} / {fmt_ms(pct(after, 99))} / "
            f"{fmt_ms(max(after) if after else math.nan)}"
        )
        print(
            f"{r.kind:<16} {len(r.samples):>4} {missed:>6} {r.grace_ms:>8} "
            f"{fmt_ms(pct(lat, 50)):>7} {fmt_ms(pct(lat, 99)):>7} "
            f"{fmt_ms(max(lat) if lat else math.nan):>7} {after_text:>27} {r.waves:>5} "
            f"{r.elapsed_s:>6.1f}"
        )
        dirty = sum(1 for s in r.samples if not s.clean)
        if dirty:
            print(f"  {r.kind}: {dirty} incident(s) not seen cleared after the reset")
        p99_after = pct(after, 99) if after else math.nan
        ok = missed == 0 and not math.isnan(p99_after) and p99_after <= AFTER_GRACE_TARGET_MS
        rows.append(
            (
                f"a {r.kind}: p99 latency after grace",
                f"{fmt_ms(p99_after)} ms (p99 {fmt_ms(pct(lat, 99))} ms, n={len(lat)})",
                f"<= {AFTER_GRACE_TARGET_MS:.0f} ms (p99 <= {r.grace_ms + 250:,} ms)",
                verdict(ok)
                + ("" if ok or math.isnan(p99_after) else f" by {p99_after - 250:,.0f} ms"),
            )
        )


def print_b(r: MissingResult, rows: list[tuple[str, str, str, str]]) -> None:
    print()
    lat = [s.latency_s for s in r.samples if s.latency_s is not None]
    to_snap = [s.to_snapshot_s for s in r.samples if s.to_snapshot_s is not None]
    triage = [
        s.latency_s - s.to_snapshot_s
        for s in r.samples
        if s.latency_s is not None and s.to_snapshot_s is not None
    ]
    missed = len(r.samples) - len(lat)
    confirm_s = (r.threshold - 1) * r.retry_s
    design = r.interval_s + confirm_s
    print("b. vanished expected order (DELETE /_sim/orders, no event) -> ORDER_MISSING_ON_EXCHANGE")
    if r.mode == "forced":
        print(
            "   mode forced: a snapshot was forced right after the vanishing, so this times the "
            "triage part only (NOT the periodic figure; run without --quick/--smoke for that)"
        )
    else:
        print(
            f"   mode periodic: vanishing times spread evenly over one snapshot interval in force "
            f"({r.interval_s:.0f} s), {r.services} service instance(s) x <= {r.per_service} "
            f"orders (within the triage budget: none deferred)"
        )
    head = f"{'':<26} {'n':>4} {'missed':>6} {'p50 s':>7} {'p99 s':>7} {'max s':>7} {'min s':>7}"
    print(head)
    print("-" * len(head))
    for name, values, n in (
        ("vanish -> incident", lat, len(r.samples)),
        ("  vanish -> next snapshot", to_snap, len(to_snap)),
        ("  snapshot -> incident", triage, len(triage)),
    ):
        print(
            f"{name:<26} {n:>4} {(missed if name.startswith('vanish') else 0):>6} "
            f"{pct(values, 50):>7.1f} {pct(values, 99):>7.1f} "
            f"{(max(values) if values else math.nan):>7.1f} "
            f"{(min(values) if values else math.nan):>7.1f}"
        )
    in_force = [s.interval_s for s in r.samples]
    print(
        f"   snapshot interval in force at the vanishings {min(in_force):.1f}-{max(in_force):.1f} s"
        f" (at service start {r.interval_s:.1f} s); triage needs "
        f"{r.threshold} consecutive misses, one per run: the snapshot's own run, then a run "
        f"every {r.retry_s:g} s (triage_retry_ms) -> +{confirm_s:g} s; design "
        f"bound interval + {confirm_s:g} s = {design:.1f} s; "
        f"took {r.elapsed_s:.0f} s"
    )
    p99 = pct(lat, 99)
    if r.mode == "periodic":
        ok1 = missed == 0 and p99 <= r.interval_s
        rows.append(
            (
                "b vanished order: p99 latency",
                f"{p99:,.1f} s (p50 {pct(lat, 50):,.1f} s, n={len(lat)})",
                f"<= snapshot interval {r.interval_s:.0f} s",
                verdict(ok1) + ("" if ok1 else f" by {p99 - r.interval_s:,.1f} s"),
            )
        )
        mx = max(lat) if lat else math.nan
        ok2 = missed == 0 and mx <= design + 1.0
        rows.append(
            (
                "b vanished order: max latency",
                f"{mx:,.1f} s",
                f"<= interval + {r.threshold - 1} retries + 1 s = {design + 1.0:.1f} s",
                verdict(ok2),
            )
        )
    else:
        bound = confirm_s + 1.0
        ok = missed == 0 and p99 <= bound
        rows.append(
            (
                "b vanished order (forced snapshot): p99",
                f"{p99:,.1f} s (n={len(lat)})",
                f"<= {r.threshold - 1} retries + 1 s = {bound:.1f} s (triage only)",
                verdict(ok),
            )
        )


def print_c(results: list[WeightResult], rows: list[tuple[str, str, str, str]]) -> None:
    print()
    print("c. request weight (simulator per-IP accounting, every charge)")
    head = (
        f"{'scenario':<14} {'start-up':>8} {'window':>6} {'snap#':>5} {'snapshot':>8} "
        f"{'triage':>6} {'listenKey':>9} {'mark':>4} {'other':>5} {'/min':>6} "
        f"{'peak clock-min':>14} {'long-run/min':>12}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        cat = r.by_category
        peak = max(r.clock_minutes.values()) if r.clock_minutes else 0
        print(
            f"{r.scenario:<14} {r.startup_weight:>8} {r.window_weight:>6} "
            f"{len(r.window_snapshots):>5} {cat.get('snapshot', 0):>8} {cat.get('triage', 0):>6} "
            f"{cat.get('listenKey', 0):>9} {cat.get('mark', 0):>4} {cat.get('other', 0):>5} "
            f"{r.per_minute:>6.1f} {peak:>14} {r.projection:>12.1f}"
        )
    for r in results:
        minutes = sorted(r.clock_minutes.items())
        series = ", ".join(str(v) for _, v in minutes)
        client = "n/a" if r.client_spent is None else str(r.client_spent)
        print(
            f"   {r.scenario}: window {r.minutes:g} min after start-up; start-up snapshots "
            f"{r.startup_snapshots}, window snapshots {r.window_snapshots}; snapshot interval "
            f"in force {r.interval_s:.0f} s; usedWeight1m per clock minute (GET /_sim/state): "
            f"[{series}]; cross-check now: ledger {r.ledger_total_at_end}, REST client "
            f"weight_spent {client}, requests {r.client_requests}"
        )
        if r.drift_events:
            print(f"   {r.scenario}: drift injected {dict(r.drift_events)}")
        if r.minutes * 60 < r.interval_s:
            print(
                f"   {r.scenario}: the window ({r.minutes * 60:.0f} s) is shorter than the "
                f"snapshot interval ({r.interval_s:.0f} s): it holds 0 or 1 periodic snapshot "
                "depending on phase; the long-run estimate is the steady-state figure"
            )
    print(
        "   long-run/min (an estimate from the measured pieces) = last snapshot's weight x 60 / "
        "interval in force + the extra weight of the periodic all-symbols snapshot when the "
        "service takes one (85 minus the regular snapshots it replaces in the interval that "
        "follows it) + one listenKey keepalive per keepalive interval + the window's "
        "triage / mark / other weight per minute"
    )
    for r in results:
        rows.append(
            (
                f"c weight/min, {r.scenario} (window)",
                f"{r.per_minute:.1f} ({r.window_weight} in {r.minutes:g} min)",
                f"<= {WEIGHT_TARGET_PER_MIN:.0f}/min",
                verdict(r.per_minute <= WEIGHT_TARGET_PER_MIN),
            )
        )
        ok = r.projection <= WEIGHT_TARGET_PER_MIN
        rows.append(
            (
                f"c weight/min, {r.scenario} (long-run estimate)",
                f"{r.projection:.1f}",
                f"<= {WEIGHT_TARGET_PER_MIN:.0f}/min",
                verdict(ok) + ("" if ok else f" by {r.projection - WEIGHT_TARGET_PER_MIN:.1f}"),
            )
        )
        rows.append(
            (
                f"c start-up weight, {r.scenario}",
                f"{r.startup_weight} (snapshots {r.startup_snapshots})",
                "(one-off, no target)",
                "-",
            )
        )


def print_final(rows: list[tuple[str, str, str, str]], took_s: float) -> None:
    print()
    print(f"summary (whole benchmark took {took_s:.0f} s)")
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    head = f"{'figure':<{w0}}  {'measured':<{w1}}  {'target':<{w2}}  verdict"
    print(head)
    print("-" * len(head))
    for name, measured, target, result in rows:
        print(f"{name:<{w0}}  {measured:<{w1}}  {target:<{w2}}  {result}")


# --- main -----------------------------------------------------------------------------------


@dataclass
class Plan:
    injections: int
    missing: int
    concurrency: int
    minutes: float
    forced: bool
    parts: str
    sequential: bool


async def run(plan: Plan) -> None:
    install_endpoint_recorder()
    rigs: list[Rig] = []
    a_results: list[LatencyResult] = []
    b_results: list[MissingResult] = []
    c_results: list[WeightResult] = []
    lag: list[float] = []
    stop_lag = asyncio.Event()
    lag_task = asyncio.create_task(loop_lag(stop_lag, lag))
    jobs: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    if "a" in plan.parts:
        for kind in ("orphan order", "manual position"):
            job_a = partial(part_a, kind, plan.injections, plan.concurrency, rigs, a_results)
            jobs.append((f"a {kind}", job_a))
    if "b" in plan.parts:
        jobs.append(("b", partial(part_b, plan.missing, plan.forced, rigs, b_results)))
    if "c" in plan.parts:
        for scenario in ("idle", "light drift"):
            job_c = partial(part_c, scenario, plan.minutes, rigs, c_results)
            jobs.append((f"c {scenario}", job_c))
    failures: list[str] = []

    async def guarded(name: str, job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except Exception as exc:
            log.error("part %s failed", name, exc_info=True)
            failures.append(f"part {name} failed: {type(exc).__name__}: {exc}")

    t0 = time.perf_counter()
    try:
        if plan.sequential:
            for name, job in jobs:
                await guarded(name, job)
        else:
            await asyncio.gather(*(guarded(name, job) for name, job in jobs))
    finally:
        took = time.perf_counter() - t0
        stop_lag.set()
        await lag_task
        for rig in rigs:
            await rig.stop()

    cfg = ReconcileConfig()
    svc = ServiceConfig()
    print(HEADER)
    print_settings(cfg, svc)
    how = "one after the other" if plan.sequential else "side by side"
    print(
        f"venue:      one SimulatorServer(port=0) per service instance, {len(SYMBOLS)} symbols, "
        f"mark walk on; {len(rigs)} service instance(s), {how}"
    )
    left_out = sorted(set(CATALOG) - set(SYMBOLS))
    if left_out:
        print(
            f"            left out: {', '.join(left_out)} (the simulator's exchangeInfo writes "
            "a filter in exponent notation, e.g. tickSize '1E-7', which the client refuses)"
        )
    print(
        f"event loop: lag p50 {pct(lag, 50):.1f} ms, p99 {pct(lag, 99):.1f} ms, "
        f"max {max(lag) if lag else math.nan:.1f} ms (50 ms sleeps, all parts sharing it)"
    )
    rows: list[tuple[str, str, str, str]] = []
    order = {"orphan order": 0, "manual position": 1}
    if a_results:
        print_a(sorted(a_results, key=lambda r: order[r.kind]), rows)
    for r in b_results:
        print_b(r, rows)
    if c_results:
        print_c(sorted(c_results, key=lambda r: r.scenario != "idle"), rows)
    if rows:
        print_final(rows, took)
    for failure in failures:
        print(f"FAILED: {failure}")
    if failures:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="10 injections, 1 min of weight")
    mode.add_argument(
        "--smoke", action="store_true", help="3 injections, 20 s of weight (for the test suite)"
    )
    parser.add_argument("--injections", type=int, default=None, help="per drift kind (a, b)")
    parser.add_argument("--minutes", type=float, default=None, help="weight window (c)")
    parser.add_argument("--concurrency", type=int, default=None, help="injections per wave (a)")
    parser.add_argument(
        "--missing-mode",
        choices=("periodic", "forced"),
        default=None,
        help="b: wait for the periodic snapshot (default) or force one (quick/smoke)",
    )
    parser.add_argument("--parts", default="abc", help="which parts to run (default abc)")
    parser.add_argument("--sequential", action="store_true", help="run the parts one by one")
    parser.add_argument("--verbose", action="store_true", help="show the service's log")
    args = parser.parse_args()
    if args.smoke:
        injections, minutes, concurrency = 3, 20 / 60, 3
    elif args.quick:
        injections, minutes, concurrency = 10, 1.0, 10
    else:
        injections, minutes, concurrency = 50, 3.0, 10
    injections = args.injections if args.injections is not None else injections
    minutes = args.minutes if args.minutes is not None else minutes
    concurrency = args.concurrency if args.concurrency is not None else concurrency
    forced = (args.missing_mode or ("forced" if args.quick or args.smoke else "periodic")) == (
        "forced"
    )
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    plan = Plan(
        injections=max(1, injections),
        missing=max(1, injections),
        concurrency=max(1, concurrency),
        minutes=max(minutes, 1 / 60),
        forced=forced,
        parts=args.parts,
        sequential=args.sequential,
    )
    asyncio.run(run(plan))


if __name__ == "__main__":
    main()
