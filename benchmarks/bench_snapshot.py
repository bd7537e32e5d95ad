"""Wall time and request weight of one full REST snapshot: 1,000 open orders over 20 symbols.

A snapshot is what the service takes: open orders (``/fapi/v1/openOrders``),
open conditional orders (``/fapi/v1/openAlgoOrders``) and positions
(``/fapi/v3/positionRisk``), through ``BinanceFuturesPort.fetch_open_orders()``
and ``fetch_positions()``, parsing included. The venue is the bundled simulator
started in-process on loopback (``SimulatorServer(port=0)``, mark walk frozen so
nothing fills); the orders are injected through ``POST /_sim/orders`` with our
client order ids.

Two forms are measured, each with a fresh client (its first snapshot is the
cold one: new connection, first parse):

* all-symbols: one call per endpoint without ``symbol`` (weight 40 + 40 + 5);
* per-symbol: the 20 symbols named, one call per symbol per endpoint
  (20 + 20 calls of weight 1, + 5 for positions), at most
  ``SNAPSHOT_CONCURRENCY`` (8) in flight at once as the service does;
* per-symbol/1: the same calls one after the other (``snapshot_concurrency=1``),
  the baseline the concurrent form is compared with (ratio printed).

``--latency-ms N`` makes the simulator delay every REST response by N ms
(``/_sim/faults/latency``), which stands for a network round trip: on loopback
the per-symbol forms differ little, on a real network the sequential one pays
one round trip per call.

The request weight is the sum of the ``X-MBX-USED-WEIGHT-1M`` increments the
simulator reported for the snapshot's requests (``rest.used_weight`` after each
response; one meter over both clients, as the simulator counts per IP). The
2,400/min limit of the simulator and of the clients is raised for this run so
that pacing never enters the wall time; every request is still charged its
Binance weight. Warm snapshots of the two forms alternate.

Run: ``.venv/bin/python -m benchmarks.bench_snapshot [--orders N] [--snapshots N] [--quick]
[--latency-ms N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp

from benchmarks import common
from benchmarks.common import our_client_id, pct
from grinder.exchange.binance.futures_port import SNAPSHOT_CONCURRENCY, BinanceFuturesPort
from grinder.exchange.binance.rest import BinanceRestClient, Credentials, RestSettings
from grinder.exchange.simulator import CATALOG, SimConfig, SimulatorServer, SymbolSpec

HEADER = "REST snapshot (openOrders + openAlgoOrders + v3/positionRisk) via BinanceFuturesPort"
UNLIMITED = 1_000_000_000
INJECT_CONCURRENCY = 50


# --- shared helpers -------------------------------------------------------------------------


def resting_order(
    spec: SymbolSpec, mark: Decimal, side: str, depth: int, client_id: str
) -> dict[str, Any]:
    """A GTC LIMIT order ``depth`` steps away from the mark, inside PERCENT_PRICE, no events."""
    away = Decimal("0.03") + Decimal("0.0005") * depth
    return {**common.resting_order(spec, mark, side, away, client_id), "emitEvents": False}


def span(values: Sequence[int]) -> str:
    """``n`` when every value is the same, else ``min-max``."""
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


class WeightMeter:
    """Sums ``X-MBX-USED-WEIGHT-1M`` increments (the header restarts each clock minute)."""

    def __init__(self) -> None:
        self.total = 0
        self._last = 0
        self._minute: int | None = None

    def observe(self, used: int) -> None:
        minute = time.time_ns() // 60_000_000_000
        if minute != self._minute or used < self._last:
            self.total += used
        else:
            self.total += used - self._last
        self._last = used
        self._minute = minute


# --- the benchmark --------------------------------------------------------------------------


@dataclass
class Form:
    name: str
    symbols: list[str] | None
    rest: BinanceRestClient
    port: BinanceFuturesPort
    meter: WeightMeter
    cold_ms: float = 0.0
    cold_weight: int = 0
    warm_ms: list[float] = field(default_factory=list)
    orders_ms: list[float] = field(default_factory=list)
    positions_ms: list[float] = field(default_factory=list)
    weights: list[int] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)


async def inject(base_url: str, n_orders: int, symbols: list[str]) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/_sim/state") as resp:
            marks = {s: Decimal(p) for s, p in (await resp.json())["markPrices"].items()}
        ts = int(time.time())
        bodies = []
        for i in range(n_orders):
            sym = symbols[i % len(symbols)]
            k = i // len(symbols)
            side = "BUY" if k % 2 == 0 else "SELL"
            bodies.append(
                resting_order(CATALOG[sym], marks[sym], side, k // 2, our_client_id(sym, i, ts))
            )

        async def post(body: dict[str, Any]) -> None:
            async with session.post(f"{base_url}/_sim/orders", json=body) as resp:
                if resp.status != 200:
                    raise SystemExit(f"order injection failed: {await resp.text()}")

        for start in range(0, len(bodies), INJECT_CONCURRENCY):
            await asyncio.gather(*(post(b) for b in bodies[start : start + INJECT_CONCURRENCY]))


async def take(form: Form) -> tuple[float, float, float, int, int, int]:
    """One snapshot: (total ms, open-orders ms, positions ms, weight, calls, orders seen)."""
    weight0 = form.meter.total
    calls0 = form.rest.requests_sent
    t0 = time.perf_counter()
    orders = await form.port.fetch_open_orders(form.symbols)
    t1 = time.perf_counter()
    await form.port.fetch_positions(form.symbols)
    t2 = time.perf_counter()
    return (
        (t2 - t0) * 1000,
        (t1 - t0) * 1000,
        (t2 - t1) * 1000,
        form.meter.total - weight0,
        form.rest.requests_sent - calls0,
        len(orders),
    )


async def run(n_orders: int, n_snapshots: int, latency_ms: int) -> None:
    config = SimConfig(seed=1, walk_frozen=True, weight_limit=UNLIMITED)
    async with SimulatorServer(port=0, config=config) as sim:
        symbols = list(sim.exchange.specs)
        t0 = time.perf_counter()
        await inject(sim.base_url, n_orders, symbols)
        inject_s = time.perf_counter() - t0
        if latency_ms:
            async with aiohttp.ClientSession() as session:
                url = f"{sim.base_url}/_sim/faults/latency"
                async with session.post(url, json={"restMs": latency_ms}) as resp:
                    resp.raise_for_status()
        creds = Credentials(sim.config.api_key, sim.config.api_secret)
        settings = RestSettings(weight_limit=UNLIMITED)
        # One meter for both clients: the simulator counts weight per IP, and both forms
        # share 127.0.0.1, so each header includes the other form's earlier requests.
        meter = WeightMeter()
        forms: list[Form] = []
        for name, syms, concurrency in (
            ("all-symbols", None, SNAPSHOT_CONCURRENCY),
            ("per-symbol", symbols, SNAPSHOT_CONCURRENCY),
            ("per-symbol/1", symbols, 1),
        ):
            rest = BinanceRestClient(
                sim.base_url, creds, settings=settings, on_weight=meter.observe
            )
            port = BinanceFuturesPort(rest, snapshot_concurrency=concurrency)
            forms.append(Form(name, syms, rest, port, meter))
        try:
            for form in forms:
                total, _, _, weight, calls, seen = await take(form)
                form.cold_ms, form.cold_weight = total, weight
                form.calls.append(calls)
                form.seen.append(seen)
            for _ in range(n_snapshots):
                for form in forms:
                    total, o_ms, p_ms, weight, calls, seen = await take(form)
                    form.warm_ms.append(total)
                    form.orders_ms.append(o_ms)
                    form.positions_ms.append(p_ms)
                    form.weights.append(weight)
                    form.calls.append(calls)
                    form.seen.append(seen)
        finally:
            for form in forms:
                await form.rest.close()
        server_side = sim.exchange.dump()["counters"]["openOrders"]

    print(HEADER)
    print(
        f"venue:      in-process simulator on loopback, {server_side:,} open orders over "
        f"{len(symbols)} symbols (injected through /_sim/orders in {inject_s:.2f} s), 0 algo"
    )
    print(f"latency:    {latency_ms} ms added to every REST response by the simulator")
    print(f"snapshots:  1 cold + {n_snapshots} warm per form (warm ones alternate between forms)")
    print("weight:     sum of X-MBX-USED-WEIGHT-1M increments per snapshot (Binance weights)")
    print()
    head = (
        f"{'form':<12} {'calls':>5} {'weight':>6} {'declared':>8} {'cold ms':>8} "
        f"{'median ms':>9} {'p90 ms':>7} {'min ms':>7} {'max ms':>7} "
        f"{'orders ms':>9} {'pos ms':>7} {'orders':>6}"
    )
    print(head)
    print("-" * len(head))
    for form in forms:
        weight_text = span(form.weights)
        calls_text = span(form.calls)
        seen_text = span(form.seen)
        declared = BinanceFuturesPort.snapshot_weight(form.symbols)
        print(
            f"{form.name:<12} {calls_text:>5} {weight_text:>6} {declared:>8} "
            f"{form.cold_ms:>8.1f} {statistics.median(form.warm_ms):>9.1f} "
            f"{pct(form.warm_ms, 90):>7.1f} {min(form.warm_ms):>7.1f} {max(form.warm_ms):>7.1f} "
            f"{statistics.median(form.orders_ms):>9.1f} "
            f"{statistics.median(form.positions_ms):>7.1f} {seen_text:>6}"
        )
    print()
    print(
        "cold = first snapshot of a fresh client (new connection); median / p90 / min / max over "
        "the warm ones; orders ms / pos ms = medians of the two parts."
    )
    print(
        "declared = BinanceFuturesPort.snapshot_weight(symbols); "
        f"cold-snapshot weights: {', '.join(f'{f.name} {f.cold_weight}' for f in forms)}."
    )
    concurrent, sequential = forms[1], forms[2]
    print(
        f"per-symbol with {SNAPSHOT_CONCURRENCY} in flight vs one at a time: median "
        f"{statistics.median(concurrent.warm_ms):.1f} / "
        f"{statistics.median(sequential.warm_ms):.1f} ms = "
        f"{statistics.median(concurrent.warm_ms) / statistics.median(sequential.warm_ms):.2f}x "
        "the sequential wall time, same calls and weight."
    )
    for form in forms:
        if any(s != n_orders for s in form.seen):
            print(f"WARNING: {form.name} saw {sorted(set(form.seen))} orders, not {n_orders}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--snapshots", type=int, default=None, help="warm snapshots per form")
    parser.add_argument("--quick", action="store_true", help="5 warm snapshots per form")
    parser.add_argument(
        "--latency-ms", type=int, default=0, help="delay every REST response by N ms"
    )
    args = parser.parse_args()
    snapshots = args.snapshots if args.snapshots is not None else (5 if args.quick else 30)
    if args.latency_ms < 0:
        parser.error(f"--latency-ms must be >= 0, got {args.latency_ms}")
    asyncio.run(run(args.orders, max(1, snapshots), args.latency_ms))


if __name__ == "__main__":
    main()
