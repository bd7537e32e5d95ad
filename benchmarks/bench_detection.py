"""Cost of one full detection pass, and of re-checking one changed order.

Workload: N expected orders over S symbols, all open on the exchange too (the
steady state), plus 1 % orphan orders of ours on the exchange, 1 % expected
orders missing within their grace period, 1 % foreign orders, and one position
per symbol (every tenth one unexpected). The pass is ``ReconcileEngine.detect``
over the real stores.

Run: ``.venv/bin/python -m benchmarks.bench_detection`` (``--quick`` for fewer
repeats). Prints ms per pass, µs per order (expected + observed), and the
re-check cost; the target for the 10,000-order pass is <= 12 ms on a 2-core
machine.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from decimal import Decimal

from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.engine import ReconcileEngine
from grinder.reconcile.identity import generate_client_order_id
from grinder.reconcile.types import (
    ExpectedOrder,
    ObservedOrder,
    ObservedPosition,
    OrderStatus,
    Side,
)
from grinder.state.expected import MemoryExpectedStore
from grinder.state.observed import ObservedStore

NOW = 1_800_000_000_000
TARGET_MS_10K = 12.0


def symbols(n: int) -> list[str]:
    return [f"S{i:03d}USDT" for i in range(n)]


def build(n_orders: int, n_symbols: int) -> tuple[ReconcileEngine, str]:
    syms = symbols(n_symbols)
    expected = MemoryExpectedStore(max_orders=n_orders * 2)
    observed = ObservedStore()
    created = NOW - 60_000
    ts_s = created // 1000
    extra = max(1, n_orders // 100)
    snapshot: list[ObservedOrder] = []
    for i in range(n_orders):
        sym = syms[i % n_symbols]
        cid = generate_client_order_id(
            strategy_id="d", symbol=sym, level_id=i // 1000, ts_seconds=ts_s, seq=i % 1000
        )
        side = Side.BUY if i % 2 else Side.SELL
        missing = i < extra  # placed moments ago, not on the exchange yet
        expected.record_order(
            ExpectedOrder(
                client_order_id=cid,
                symbol=sym,
                side=side,
                qty=Decimal("0.010"),
                price=Decimal("100.5"),
                created_ts_ms=NOW - 1000 if missing else created,
                updated_ts_ms=created,
            )
        )
        if not missing:
            snapshot.append(_obs(cid, sym, side, created))
    for j in range(extra):
        sym = syms[j % n_symbols]
        orphan = generate_client_order_id(
            strategy_id="d", symbol=sym, level_id="X", ts_seconds=ts_s, seq=j
        )
        snapshot.append(_obs(orphan, sym, Side.BUY, created))
        snapshot.append(_obs(f"web_manual_{j}", sym, Side.SELL, created))
    observed.apply_open_orders_snapshot(snapshot, NOW - 500)
    positions = [
        ObservedPosition(
            symbol=sym,
            qty=Decimal("0.5") if k % 10 == 0 else Decimal(0),
            update_ts_ms=created,
        )
        for k, sym in enumerate(syms)
    ]
    observed.apply_positions_snapshot(positions, NOW - 500)
    probe = next(iter(observed.open_order_ids()))
    return ReconcileEngine(ReconcileConfig(), expected, observed), probe


def _obs(cid: str, sym: str, side: Side, ts: int) -> ObservedOrder:
    return ObservedOrder(
        client_order_id=cid,
        symbol=sym,
        side=side,
        status=OrderStatus.NEW,
        qty=Decimal("0.010"),
        price=Decimal("100.5"),
        created_ts_ms=ts,
        update_ts_ms=ts,
    )


def time_pass(engine: ReconcileEngine, repeats: int) -> float:
    engine.detect(NOW)  # warm caches (id parsing) as a running service has them
    samples = []
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            engine.detect(NOW)
            samples.append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    return statistics.median(samples) / 1e6


def time_recheck(engine: ReconcileEngine, cid: str, repeats: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(repeats):
        engine.check_order(cid, NOW)
    return (time.perf_counter_ns() - t0) / repeats / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 5 if args.quick else 25
    sizes = (100, 1_000, 10_000)
    symbol_counts = (10, 50, 500)
    print("detection pass: ReconcileEngine.detect over N expected + N observed orders")
    header = (
        f"{'orders':>7} {'symbols':>7} {'ms/pass':>9} {'us/order':>9} {'recheck us':>10}"
        f" {'mismatches':>10}"
    )
    print(header)
    print("-" * len(header))
    per_order: dict[int, list[float]] = {n: [] for n in sizes}
    result_10k_500 = 0.0
    for n in sizes:
        for s in symbol_counts:
            engine, probe = build(n, s)
            ms = time_pass(engine, repeats)
            recheck = time_recheck(engine, probe, 20_000)
            observed_n = sum(1 for _ in engine.observed.open_orders())
            us_per_order = ms * 1000 / (n + observed_n)
            per_order[n].append(us_per_order)
            if n == 10_000 and s == 500:
                result_10k_500 = ms
            found = len(engine.detect(NOW).mismatches)
            print(f"{n:>7} {s:>7} {ms:>9.3f} {us_per_order:>9.3f} {recheck:>10.3f} {found:>10}")
    print()
    growth = statistics.mean(per_order[10_000]) / statistics.mean(per_order[1_000])
    verdict = "meets" if result_10k_500 <= TARGET_MS_10K else "MISSES"
    print(
        f"10,000 orders / 500 symbols: {result_10k_500:.3f} ms per pass "
        f"({verdict} the {TARGET_MS_10K:g} ms target)"
    )
    print(f"linearity: us/order at 10,000 vs 1,000 orders = {growth:.2f}x (1.00 = linear)")


if __name__ == "__main__":
    main()
