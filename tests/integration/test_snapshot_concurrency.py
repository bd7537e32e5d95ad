"""Per-symbol snapshot calls run concurrently, bounded, and still respect the weight limit.

Real HTTP over loopback to the simulator; the simulator delays every REST
response (``/_sim/faults/latency``) so that calls overlap as on a real network.
The client is the real one, instrumented to record how many requests were in
flight at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from grinder.exchange.binance.credentials import Credentials
from grinder.exchange.binance.futures_port import SNAPSHOT_CONCURRENCY, BinanceFuturesPort
from grinder.exchange.binance.rest import BinanceRestClient, RestSettings
from grinder.exchange.port import TransientExchangeError
from grinder.exchange.simulator import CATALOG, SimConfig, SimulatorServer
from grinder.exchange.simulator.client import SimControl
from grinder.reconcile.identity import generate_client_order_id

KEY, SECRET = "test-key", "test-secret"
SYMBOLS = [s for s in sorted(CATALOG) if len(s) <= 8][:12]  # ids stay within 36 chars


class CountingClient(BinanceRestClient):
    """The REST client, recording the largest number of requests in flight at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0
        self.peak = 0
        self.waits: list[float] = []
        self.at_start: list[int] = []
        """How many requests were in flight when each one went out."""

    async def _send(self, *args: Any, **kwargs: Any) -> Any:
        self.at_start.append(self.in_flight)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await super()._send(*args, **kwargs)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer(
        port=0,
        api_key=KEY,
        api_secret=SECRET,
        symbols=SYMBOLS,
        config=SimConfig(seed=5, walk_frozen=True, tick_interval_ms=50),
    )
    await server.start()
    yield server
    await server.stop()


def client(sim: SimulatorServer, **settings: Any) -> CountingClient:
    made: CountingClient

    async def sleep(seconds: float) -> None:
        made.waits.append(seconds)
        await asyncio.sleep(0)

    made = CountingClient(
        sim.base_url,
        Credentials(KEY, SECRET),
        settings=RestSettings(max_retries=0, **settings),
        sleep=sleep,
    )
    return made


async def place_one_per_symbol(sim: SimulatorServer) -> set[str]:
    control = SimControl(sim.base_url)
    cids: set[str] = set()
    try:
        state = await control.state()
        for seq, symbol in enumerate(SYMBOLS, start=1):
            cid = generate_client_order_id(
                strategy_id="d", symbol=symbol, level_id=1, ts_seconds=1_800_000_000, seq=seq
            )
            price = Decimal(str(state["markPrices"][symbol])) * Decimal("0.9")
            body = {
                "symbol": symbol,
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": str(int(20 / price) + 1),  # notional above every minimum
                "price": str(price),
                "clientOrderId": cid,
                "validate": False,  # resting far below the mark; filters are not the point
            }
            await control.call("POST", "/orders", body)
            cids.add(cid)
    finally:
        await control.close()
    return cids


async def test_per_symbol_calls_overlap_up_to_the_bound_and_give_the_same_picture(
    sim: SimulatorServer,
) -> None:
    cids = await place_one_per_symbol(sim)
    control = SimControl(sim.base_url)
    await control.call("POST", "/faults/latency", {"restMs": 40})
    await control.close()
    pictures = {}
    peaks = {}
    for concurrency in (1, SNAPSHOT_CONCURRENCY):
        rest = client(sim)
        try:
            port = BinanceFuturesPort(rest, snapshot_concurrency=concurrency)
            orders = await port.fetch_open_orders(SYMBOLS)
        finally:
            await rest.close()
        pictures[concurrency] = [(o.symbol, o.client_order_id) for o in orders]
        peaks[concurrency] = rest.peak
        assert rest.requests_sent == 2 * len(SYMBOLS)  # openOrders + openAlgoOrders each
    assert {cid for _, cid in pictures[1]} == cids
    assert pictures[SNAPSHOT_CONCURRENCY] == pictures[1]  # same orders, same order
    assert peaks == {1: 1, SNAPSHOT_CONCURRENCY: SNAPSHOT_CONCURRENCY}


async def test_one_failed_call_fails_the_snapshot_with_the_exchange_error(
    sim: SimulatorServer,
) -> None:
    control = SimControl(sim.base_url)
    await control.call("POST", "/faults/latency", {"restMs": 20})
    await control.call(
        "POST",
        "/faults/errors",
        {"count": 100, "status": 503, "paths": ["/fapi/v1/openAlgoOrders"]},
    )
    await control.close()
    rest = client(sim)
    try:
        port = BinanceFuturesPort(rest)
        with pytest.raises(TransientExchangeError):
            await port.fetch_open_orders(SYMBOLS)
        await asyncio.sleep(0.1)  # the cancelled calls have unwound
        assert rest.limits.inflight_weight == 0
    finally:
        await rest.close()


async def test_requests_in_flight_count_against_the_weight_limit(
    sim: SimulatorServer,
) -> None:
    """24 calls of weight 1 at once against a soft limit of 18: the six past it wait
    for the next window instead of going out before any weight header came back
    (the test's sleep only records the wait)."""
    control = SimControl(sim.base_url)
    await control.call("POST", "/faults/latency", {"restMs": 50})
    await control.close()
    rest = client(sim, weight_limit=20, slow_down_ratio=0.9)
    try:
        port = BinanceFuturesPort(rest, snapshot_concurrency=len(SYMBOLS) * 2)
        await port.fetch_open_orders(SYMBOLS)
    finally:
        await rest.close()
    assert rest.requests_sent == 24
    assert len(rest.waits) == 24 - 18  # those past the soft limit waited for the next window
    assert all(0 < w <= 60.05 for w in rest.waits)


async def test_a_client_that_has_not_read_this_minutes_weight_sends_one_call_alone_first(
    sim: SimulatorServer,
) -> None:
    """Other clients on the same IP may have used most of the minute's weight: a burst
    waits for the first answer's weight header."""
    control = SimControl(sim.base_url)
    await control.call("POST", "/faults/latency", {"restMs": 20})
    await control.close()
    fresh = client(sim)
    try:
        await BinanceFuturesPort(fresh).fetch_open_orders(SYMBOLS)
    finally:
        await fresh.close()
    assert fresh.at_start[:2] == [0, 0]  # the first call came back before the others left
    assert fresh.peak == SNAPSHOT_CONCURRENCY
    informed = client(sim)
    try:
        await informed.request("GET", "/fapi/v1/time")  # a weight header of this minute
        assert informed.weight_known()
        await BinanceFuturesPort(informed).fetch_open_orders(SYMBOLS)
    finally:
        await informed.close()
    assert informed.at_start[1:3] == [0, 1]  # the burst starts at once
