"""``grinder expected adopt`` into the shared expected state in Redis (HA deployments).

A real redis-server and a running simulator; the command runs in a subprocess as an
operator runs it, and what it wrote is read back the way a service instance reads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from grinder.clock import wall_clock_ms
from grinder.exchange.binance.credentials import Credentials
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.binance.rest import BinanceRestClient
from grinder.exchange.simulator import SimulatorServer
from grinder.exchange.simulator.client import SimControl
from grinder.ha.connection import RedisConnection
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.types import ExpectedOrder, PositionSide, Side
from grinder.state.adopt import adopt_baseline
from grinder.state.expected import ExpectedStoreFull
from grinder.state.redis_store import RedisExpectedStore

pytestmark = [pytest.mark.redis, pytest.mark.subprocess]

OURS = "grinder_d_BTCUSDT_1_1800000000_1"
OURS_2 = "grinder_d_BTCUSDT_1_1800000000_2"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer(port=0, symbols=["BTCUSDT", "ETHUSDT"])
    await server.start()
    yield server
    await server.stop()


def reader(url: str, namespace: str) -> RedisExpectedStore:
    return RedisExpectedStore(RedisConnection(url, namespace=namespace), readonly=True)


async def test_adopt_writes_ours_and_positions_to_redis_where_the_service_reads(
    sim: SimulatorServer, redis_server: Any, cli: Any
) -> None:
    async with SimControl(sim.base_url) as ctl:
        for cid in (OURS, "web_manual_1"):
            await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)
        await ctl.call("POST", "/positions", {"symbol": "ETHUSDT", "quantity": "-0.100"})
    env = cli.env(GRINDER_REDIS_URL=redis_server.url)
    args = ("--venue", "sim", "--venue-url", sim.base_url, "--redis-namespace", "desk1", "--yes")
    proc = await asyncio.to_thread(cli.run, "grinder.cli", "expected", "adopt", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "EXPECTED_ADOPT orders_adopted=1 " in proc.stdout
    assert "leave alone      web_manual_1 (no_grinder_prefix)" in proc.stdout
    store = reader(redis_server.url, "desk1")
    try:
        assert [o.client_order_id for o in store.orders()] == [OURS]
        pos = store.get_position(("ETHUSDT", PositionSide.BOTH))
        assert pos is not None
        assert pos.qty == Decimal("-0.100")
    finally:
        store.conn.close()
    other = reader(redis_server.url, "grinder")  # another namespace saw nothing
    try:
        assert list(other.orders()) == []
    finally:
        other.conn.close()


async def test_adopt_into_a_redis_store_without_room_writes_nothing(
    sim: SimulatorServer, redis_server: Any
) -> None:
    """Redis has no transaction to roll back: the room is checked before the first write."""
    kept = "grinder_d_ETHUSDT_1_1800000000_9"
    conn = RedisConnection(redis_server.url, namespace="grinder")
    store = RedisExpectedStore(conn, max_orders=2)
    store.record_order(
        ExpectedOrder(
            client_order_id=kept,
            symbol="ETHUSDT",
            side=Side.SELL,
            qty=Decimal("0.01"),
            price=Decimal("9000"),
            created_ts_ms=wall_clock_ms(),  # recent: adoption keeps it open
        )
    )
    async with SimControl(sim.base_url) as ctl:
        for cid in (OURS, OURS_2):
            await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)
    rest = BinanceRestClient(sim.base_url, Credentials(sim.config.api_key, sim.config.api_secret))
    try:
        with pytest.raises(ExpectedStoreFull, match="nothing was written"):
            await adopt_baseline(
                store, BinanceFuturesPort(rest), ReconcileConfig(), wall_clock_ms()
            )
    finally:
        await rest.close()
    check = reader(redis_server.url, "grinder")
    try:
        assert [o.client_order_id for o in check.orders()] == [kept]
        assert list(check.positions()) == []
    finally:
        check.conn.close()
        conn.close()


def test_adopt_needs_a_file_or_a_redis_url(cli: Any) -> None:
    proc = cli.run(
        "grinder.cli", "expected", "adopt", "--venue", "sim", "--venue-url", "http://x", "--yes"
    )
    assert proc.returncode == 2
    assert "--expected-db (or GRINDER_EXPECTED_DB) or --redis-url" in proc.stderr


def test_adopt_with_a_malformed_redis_url_names_it(cli: Any) -> None:
    proc = cli.run(
        "grinder.cli",
        "expected",
        "adopt",
        "--redis-url",
        "http://127.0.0.1:6379",
        "--venue",
        "sim",
        "--venue-url",
        "http://127.0.0.1:9",
        "--yes",
    )
    assert proc.returncode == 2
    assert "--redis-url" in proc.stderr
