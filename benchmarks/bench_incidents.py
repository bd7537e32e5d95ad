"""The incident ledger: listing a 10,000-incident ledger, and what the ledger adds to a run.

a. Listing: a ledger of 10,000 incidents (100 open, the rest cleared, one in ten
   acknowledged, each with evidence and a few steps) in each store -- memory, a SQLite
   file, Redis (a ``redis-server`` started on a free loopback port when the binary is
   there, or ``--redis-url``) -- then ``grinder incidents list`` as the service answers it:
   every summary, the newest first, rendered as the text table; and the open ones only.
   Target: under 100 ms for all 10,000. Also printed: the whole command as a process
   (``grinder incidents list --ledger-db FILE``), Python's start included.
b. A run's cost: ``ReconcileRunner.run_once`` over 1,000 expected orders (steady state),
   with a given number of mismatches standing, without a ledger and with one on a SQLite
   file (the service's hook: triage findings, incidents, steps, the run's end). Median of
   the repeats; the difference is what the ledger adds to each run.
c. The trades step (D67): the pure plan over 1,000 standing position incidents; the verdict
   (``account_for``) over 1,000 trades; one fetch for one incident against the simulator
   over loopback HTTP (``BinanceFuturesPort``, the real REST client and signature), its
   verdict attached and written to a SQLite ledger (``TradesFetcher.after_run``), with
   1, 100 and 1,000 trades in the window; and the request weight it spends.

Run: ``.venv/bin/python -m benchmarks.bench_incidents [--quick] [--redis-url URL]``. Figures
are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from grinder.clock import ManualClock, wall_clock_ms
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.binance.rest import BinanceRestClient, Credentials
from grinder.exchange.fake import FakePort
from grinder.exchange.simulator import SimulatorServer
from grinder.exchange.simulator.client import SimControl
from grinder.ha.connection import RedisConnection
from grinder.incidents import ledger as core
from grinder.incidents import render, trades_plan
from grinder.incidents.causes import CauseVerdict
from grinder.incidents.records import Ack, Evidence
from grinder.incidents.redis_store import RedisIncidentStore
from grinder.incidents.sink import IncidentLedger
from grinder.incidents.sqlite_store import SqliteIncidentStore
from grinder.incidents.store import IncidentStore, MemoryIncidentStore
from grinder.incidents.trades import TradesFetcher
from grinder.reconcile.actions import ActionResult
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.engine import ReconcileEngine
from grinder.reconcile.identity import generate_client_order_id
from grinder.reconcile.labels import IncidentCause, Mode, ResultStatus
from grinder.reconcile.routing import ActionKind
from grinder.reconcile.trades import AccountTrade, account_for
from grinder.reconcile.types import (
    ExpectedOrder,
    Mismatch,
    MismatchType,
    ObservedOrder,
    OrderStatus,
    PositionSide,
    Side,
)
from grinder.remediation.executor import RemediationExecutor
from grinder.remediation.runner import ReconcileRunner
from grinder.reporting.report import Reporter
from grinder.state.expected import MemoryExpectedStore
from grinder.state.observed import ObservedStore

NOW = 1_800_000_000_000
N_INCIDENTS = 10_000
N_OPEN = 100
TARGET_MS = 100.0
CAUSES = list(IncidentCause)


def cid(n: int, symbol: str = "BTCUSDT") -> str:
    return generate_client_order_id(
        strategy_id="d", symbol=symbol, level_id=1, ts_seconds=1_800_000_000, seq=n
    )


def mismatch(n: int) -> Mismatch:
    return Mismatch(
        type=MismatchType.ORDER_EXISTS_UNEXPECTED,
        symbol="BTCUSDT",
        client_order_id=cid(n),
        observed_status="NEW",
        observed_qty=Decimal("0.002"),
    )


def fill(store: IncidentStore) -> None:
    """10,000 incidents: the first ``N_OPEN`` open, the rest cleared; every tenth acknowledged."""
    for n in range(N_INCIDENTS):
        m = mismatch(n)
        first = NOW - (N_INCIDENTS - n) * 60_000
        verdict = CauseVerdict(
            CAUSES[n % len(CAUSES)],
            (
                Evidence(
                    "fill", f"BUY 0.002 BTCUSDT BOTH by web_{n}", first - 3_000, (("n", str(n)),)
                ),
            ),
        )
        rec = core.opened(m, first, f"run-{n}", verdict)
        step = ActionResult(
            run_id=f"run-{n}",
            kind=ActionKind.CANCEL,
            mismatch=m,
            status=ResultStatus.BLOCKED,
            mode=Mode.DRY_RUN,
            reason="action_is_none",
            ts_ms=first,
        )
        rec = core.with_step(rec, core.step_of(step))
        if n >= N_OPEN:
            rec = core.cleared(rec, first + 30_000)
        store.open_or_adopt(rec)
        if not rec.is_open:
            store.put(rec)
        if n % 10 == 0:
            store.acknowledge(rec.id, Ack(by="oncall", ts_ms=first + 40_000, note="seen"))


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1e6


def listing(store: IncidentStore) -> int:
    items = store.summaries()
    lines = render.table(items, NOW)
    lines.append(render.footer(items, store.where))
    return len(lines)


@contextlib.contextmanager
def redis_url(given: str | None) -> Iterator[str | None]:
    if given:
        yield given
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        conn = RedisConnection(url, timeout_s=1.0)
        deadline = time.monotonic() + 10
        while not conn.ping() and time.monotonic() < deadline:
            time.sleep(0.05)
        conn.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def measure(name: str, store: IncidentStore, repeats: int) -> None:
    t0 = time.perf_counter()
    fill(store)
    filled = time.perf_counter() - t0
    all_ms = median_ms(lambda: listing(store), repeats)
    lines = listing(store)
    open_ms = median_ms(lambda: store.summaries(open_only=True), repeats)
    verdict = "meets" if all_ms < TARGET_MS else "MISSES"
    print(
        f"{name:<8} {filled:>7.1f} {all_ms:>12.1f} {lines:>10} {open_ms:>13.2f}  "
        f"{verdict} (< {TARGET_MS:g} ms)"
    )
    store.close()


def part_a(tmp: Path, repeats: int, redis: str | None) -> None:
    print(f"a. listing a ledger of {N_INCIDENTS:,} incidents ({N_OPEN} open): median of {repeats}")
    header = (
        f"{'store':<8} {'fill s':>7} {'list all ms':>12} {'text lines':>10} "
        f"{'open only ms':>13}  verdict"
    )
    print(header)
    print("-" * len(header))
    measure("memory", MemoryIncidentStore(), repeats)
    measure("sqlite", SqliteIncidentStore(tmp / "incidents.db"), repeats)
    if redis is not None:
        conn = RedisConnection(redis, namespace="bench", timeout_s=5.0)
        measure("redis", RedisIncidentStore(conn), repeats)
        conn.close()
    else:
        print("   redis: no redis-server found (--redis-url URL to use one)")
    cmd = [sys.executable, "-m", "grinder.cli", "incidents", "list"]
    cmd += ["--ledger-db", str(tmp / "incidents.db")]
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        walls.append((time.perf_counter() - t0) * 1000)
    print(
        "   the command as a process (Python's start included): median "
        f"{statistics.median(walls):.0f} ms over 3, exit {proc.returncode}, "
        f"{len(proc.stdout.splitlines())} lines"
    )


def runner(
    n_orders: int, standing: int, ledger: IncidentLedger | None, clock: ManualClock
) -> ReconcileRunner:
    cfg = ReconcileConfig(order_grace_ms=1_000)
    expected = MemoryExpectedStore(max_orders=n_orders * 2)
    observed = ObservedStore()
    created = NOW - 60_000
    qty = Decimal("0.002")
    for i in range(n_orders):
        c = cid(i)
        expected.record_order(
            ExpectedOrder(c, "BTCUSDT", Side.BUY, qty, Decimal(20000), created_ts_ms=created)
        )
        observed.apply_order(
            ObservedOrder(c, "BTCUSDT", Side.BUY, OrderStatus.NEW, qty, created_ts_ms=created)
        )
    for i in range(standing):  # orphans of ours: ORDER_EXISTS_UNEXPECTED, blocked (action none)
        c = cid(n_orders + i)
        observed.apply_order(
            ObservedOrder(c, "BTCUSDT", Side.BUY, OrderStatus.NEW, qty, created_ts_ms=created)
        )
    engine = ReconcileEngine(cfg, expected, observed)
    executor = RemediationExecutor(cfg, FakePort(), clock=clock)
    return ReconcileRunner(engine, executor, reporter=Reporter(ledger=ledger), clock=clock)


async def time_runs(r: ReconcileRunner, clock: ManualClock, repeats: int) -> float:
    """Median ms of ``run_once``, the clock 10 s further each run (a full pass's interval)."""
    await r.run_once()  # the first run opens the incidents
    samples = []
    for _ in range(repeats):
        clock.advance(10_000)
        t0 = time.perf_counter_ns()
        await r.run_once()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1e6


def part_b(tmp: Path, repeats: int) -> None:
    print()
    print(f"b. one run (ReconcileRunner.run_once, 1,000 expected orders): median of {repeats}")
    header = f"{'standing':>8} {'no ledger ms':>13} {'ledger ms':>10} {'added ms':>9}"
    print(header)
    print("-" * len(header))
    for standing in (0, 10, 100):
        figures = []
        for with_ledger in (False, True):
            clock = ManualClock(NOW)
            ledger = None
            if with_ledger:
                path = tmp / f"run-{standing}.db"
                ledger = IncidentLedger(SqliteIncidentStore(path), ReconcileConfig(), clock=clock)
            r = runner(1_000, standing, ledger, clock)
            figures.append(asyncio.run(time_runs(r, clock, repeats)))
            if ledger is not None:
                ledger.close()
        added = figures[1] - figures[0]
        print(f"{standing:>8} {figures[0]:>13.3f} {figures[1]:>10.3f} {added:>9.3f}")


def position(n: int, qty: str = "0.05") -> Mismatch:
    return Mismatch(
        type=MismatchType.POSITION_NONZERO_UNEXPECTED,
        symbol=f"S{n}USDT",
        position_side=PositionSide.BOTH,
        expected_qty=Decimal(0),
        observed_qty=Decimal(qty),
    )


async def part_c(tmp: Path, repeats: int) -> None:
    print()
    print(f"c. the trades step (D67): median of {repeats}")
    verdict = CauseVerdict(IncidentCause.UNKNOWN)
    cands = [
        (core.opened(position(n), NOW - n, "r", verdict), position(n), trades_plan.TradesProgress())
        for n in range(1_000)
    ]
    policy = trades_plan.TradesPolicy()
    ms = median_ms(lambda: trades_plan.plan(cands, NOW, policy, ()), repeats)
    print(f"   plan over 1,000 standing position incidents: {ms:.3f} ms")
    rows = [
        AccountTrade(
            "ETHUSDT", i, i, Side.BUY, Decimal(2000), Decimal("0.001"), Decimal(0), "USDT", i
        )
        for i in range(1_000)
    ]
    ms = median_ms(lambda: account_for(rows, Decimal("0.5")), repeats)
    print(f"   account_for over 1,000 trades: {ms:.3f} ms")
    sim = SimulatorServer(port=0, symbols=["ETHUSDT"])
    await sim.start()
    rest = BinanceRestClient(sim.base_url, Credentials(sim.config.api_key, sim.config.api_secret))
    try:
        await rest.sync_time()
        port = BinanceFuturesPort(rest)
        async with SimControl(sim.base_url) as ctl:
            await ctl.call("POST", "/walk", {"frozen": True})
            await ctl.call("POST", "/mark", {"symbol": "ETHUSDT", "price": "2000"})
            done = 0
            for n in (1, 100, 1_000):
                while done < n:
                    body = {
                        "symbol": "ETHUSDT",
                        "quantity": "0.01",
                        "clientOrderId": f"web_{done}",
                    }
                    await ctl.call("POST", "/positions", body)
                    done += 1
                await fetch_figure(tmp, port, rest, n, repeats)
    finally:
        await rest.close()
        await sim.stop()


async def fetch_figure(
    tmp: Path, port: BinanceFuturesPort, rest: BinanceRestClient, n: int, repeats: int
) -> None:
    clock = ManualClock(wall_clock_ms())
    m = Mismatch(
        type=MismatchType.POSITION_NONZERO_UNEXPECTED,
        symbol="ETHUSDT",
        position_side=PositionSide.BOTH,
        expected_qty=Decimal(0),
        observed_qty=Decimal("0.01") * n,
    )
    samples = []
    weight = 0
    for i in range(repeats):
        store = SqliteIncidentStore(tmp / f"trades-{n}-{i}.db")
        ledger = IncidentLedger(store, ReconcileConfig(), clock=clock)
        ledger.incidents("r", [m], [])
        ledger.run_end("r", [m])
        fetcher = TradesFetcher(ledger, port, clock=clock, limits=rest.limits)
        spent = rest.weight_spent
        t0 = time.perf_counter_ns()
        sent = await fetcher.after_run()
        samples.append(time.perf_counter_ns() - t0)
        weight = rest.weight_spent - spent
        (rec,) = ledger.open_records()
        if sent != 1 or rec.trades is None or not rec.trades.explained:
            raise SystemExit(f"the trades step did not attach the trades: {rec.trades}")
        ledger.close()
    ms = statistics.median(samples) / 1e6
    print(
        f"   one fetch, {n:>5,} trades in the window, verdict attached and written: {ms:.2f} ms, "
        f"weight {weight}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--redis-url", default=None, help="a Redis to fill (its 'bench' keys)")
    args = parser.parse_args()
    repeats = 5 if args.quick else 21
    quiet = logging.getLogger("grinder")  # the runs' log lines: handled, not printed
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    with tempfile.TemporaryDirectory() as tmp, redis_url(args.redis_url) as redis:
        part_a(Path(tmp), repeats, redis)
        part_b(Path(tmp), repeats)
        asyncio.run(part_c(Path(tmp), repeats))


if __name__ == "__main__":
    main()
