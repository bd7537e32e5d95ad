"""Cost of keeping the service's mirror of a SQLite expected store up to date.

Workload: a 10,000-order expected store in a SQLite file (WAL), written by one
``SqliteExpectedStore`` (the bot's side) and read by a read-only one (the
service's side). Measured on the reader:

* ``refresh()`` when nothing changed (the common case, once per reconcile cycle);
* ``refresh()`` after the writer changed 1 and 100 orders;
* one full iteration of ``orders()`` (what detection does each pass), next to the
  same iteration over a ``MemoryExpectedStore``;
* opening the reader (a full load of the mirror), and one write on the writer
  side with ``synchronous=FULL`` and ``NORMAL``, for context.

Run: ``.venv/bin/python -m benchmarks.bench_expected_store`` (``--quick`` for fewer
repeats). Prints medians; no assertions.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from grinder.reconcile.identity import generate_client_order_id
from grinder.reconcile.types import ExpectedOrder, OrderStatus, Side
from grinder.state.expected import MemoryExpectedStore
from grinder.state.sqlite import SqliteExpectedStore

N_ORDERS = 10_000
N_SYMBOLS = 500
NOW = 1_800_000_000_000


def order(i: int) -> ExpectedOrder:
    sym = f"S{i % N_SYMBOLS:03d}USDT"
    return ExpectedOrder(
        client_order_id=generate_client_order_id(
            strategy_id="d", symbol=sym, level_id=i // 1000, ts_seconds=NOW // 1000, seq=i % 1000
        ),
        symbol=sym,
        side=Side.BUY if i % 2 else Side.SELL,
        qty=Decimal("0.010"),
        price=Decimal("100.5"),
        created_ts_ms=NOW - 60_000,
        updated_ts_ms=NOW - 60_000,
    )


def median_us(samples: list[int]) -> float:
    return statistics.median(samples) / 1e3


def timed(fn: Callable[[], object], repeats: int) -> float:
    samples = []
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    return median_us(samples)


def refresh_after(
    writer: SqliteExpectedStore, reader: SqliteExpectedStore, ids: list[str], repeats: int
) -> tuple[float, int]:
    """Median µs of ``reader.refresh()`` after the writer changed ``ids`` (one batch)."""
    samples = []
    changed = 0
    status = OrderStatus.NEW
    for r in range(repeats):
        status = OrderStatus.PARTIALLY_FILLED if status is OrderStatus.NEW else OrderStatus.NEW
        with writer.batch():
            for cid in ids:
                writer.mark_status(cid, status, NOW + r)
        gc.disable()
        t0 = time.perf_counter_ns()
        result = reader.refresh()
        samples.append(time.perf_counter_ns() - t0)
        gc.enable()
        changed = len(result.order_ids)
    return median_us(samples), changed


def iterate(store: SqliteExpectedStore | MemoryExpectedStore) -> int:
    n = 0
    for o in store.orders():
        if o.ended_ts_ms is None:
            n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    scale = 5 if args.quick else 1
    orders = [order(i) for i in range(N_ORDERS)]
    ids = [o.client_order_id for o in orders]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "expected.db"
        writer = SqliteExpectedStore(path, max_orders=N_ORDERS * 2)
        with writer.batch():
            for o in orders:
                writer.record_order(o)
        t0 = time.perf_counter_ns()
        reader = SqliteExpectedStore(path, readonly=True)
        open_ms = (time.perf_counter_ns() - t0) / 1e6
        memory = MemoryExpectedStore(max_orders=N_ORDERS * 2)
        for o in orders:
            memory.record_order(o)

        idle = timed(reader.refresh, 5000 // scale)
        one, one_changed = refresh_after(writer, reader, ids[:1], 400 // scale)
        hundred, hundred_changed = refresh_after(writer, reader, ids[:100], 100 // scale)
        iter_sqlite = timed(lambda: iterate(reader), 200 // scale)
        iter_memory = timed(lambda: iterate(memory), 200 // scale)
        write_full = timed(lambda: writer.set_position("BTCUSDT", Decimal(1), NOW), 300 // scale)
        writer.close()
        normal = SqliteExpectedStore(path, synchronous="NORMAL", max_orders=N_ORDERS * 2)
        write_normal = timed(lambda: normal.set_position("BTCUSDT", Decimal(1), NOW), 300 // scale)
        normal.close()
        reader.close()

    print(f"SqliteExpectedStore, {N_ORDERS:,} orders over {N_SYMBOLS} symbols (medians)")
    rows = [
        ("refresh(), nothing changed", idle, "us"),
        (f"refresh(), 1 order changed ({one_changed} reported)", one, "us"),
        (f"refresh(), 100 orders changed ({hundred_changed} reported)", hundred, "us"),
        ("orders() full iteration, SQLite mirror", iter_sqlite, "us"),
        ("orders() full iteration, MemoryExpectedStore", iter_memory, "us"),
        ("open read-only (full load of the mirror)", open_ms * 1000, "us"),
        ("one write, synchronous=FULL", write_full, "us"),
        ("one write, synchronous=NORMAL", write_normal, "us"),
    ]
    width = max(len(name) for name, _, _ in rows)
    for name, value, unit in rows:
        print(f"  {name:<{width}}  {value:>10.1f} {unit}")


if __name__ == "__main__":
    main()
