"""The trades behind position incidents under HA: only the leader asks the venue for them.

Two instances (subprocesses), each with its own simulator API key, against one simulator and
a real ``redis-server``; no bot keeps the expected state, so every flatten is blocked at gate E
and the positions stand. A manual fill makes a position incident: its record in the shared
ledger carries the trade, and the simulator's count of ``GET /fapi/v1/userTrades`` by API
key shows only the leader's key. The leader is frozen and killed (SIGSTOP, SIGKILL); the
other takes over: it fetches for the next incident, and not again for the one the record
already explains.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

from grinder.ha.connection import RedisConnection
from grinder.incidents.redis_store import RedisIncidentStore
from tests.support.wait import wait_until_async

pytestmark = [pytest.mark.redis, pytest.mark.subprocess]

NAMES = ("grinder-a", "grinder-b")
TRADES = "GET /fapi/v1/userTrades"


def trade_requests(cluster: Any) -> dict[str, int]:
    """``userTrades`` requests by instance name (through its API key)."""
    by_key = cluster.sim.exchange.requests_by_key
    return {n: int(by_key.get((f"key-{n}", TRADES), 0)) for n in NAMES}


async def cluster_of_own_keys(make_cluster: Any) -> Any:
    """The instances started, each with an API key of its own (the simulator counts each
    key's requests)."""
    keys = {f"key-{n}": f"secret-{n}" for n in NAMES}
    cluster = await make_cluster(bot=False, more_keys=keys)
    cluster.instance_env = {
        n: {"GRINDER_SIM_API_KEY": f"key-{n}", "GRINDER_SIM_API_SECRET": f"secret-{n}"}
        for n in NAMES
    }
    await cluster.start(*NAMES)
    return cluster


async def test_only_the_leader_fetches_trades_and_a_failover_does_not_fetch_again(
    make_cluster: Any, redis_server: Any
) -> None:
    cluster = await cluster_of_own_keys(make_cluster)
    leader = await cluster.wait_leader(timeout_s=15)
    follower = next(n for n in NAMES if n != leader)
    conn = RedisConnection(redis_server.url, namespace="grinder")
    store = RedisIncidentStore(conn)

    def with_trades(symbol: str) -> Any:
        for rec in store.open_incidents():
            if rec.symbol == symbol and rec.trades is not None and rec.trades.explained:
                return rec
        return None

    try:
        await cluster.sim_call(
            "POST",
            "/positions",
            {"symbol": "ETHUSDT", "quantity": "0.05", "clientOrderId": "web_1"},
        )
        eth = await wait_until_async(lambda: with_trades("ETHUSDT"), "ETH's trades attached", 30)
        assert [t.qty for t in eth.trades.trades] == ["0.05"]
        assert trade_requests(cluster) == {leader: 1, follower: 0}

        cluster.instances[leader].signal(signal.SIGSTOP)  # frozen, then killed: no hand-over
        cluster.instances[leader].kill()
        assert await cluster.wait_leader(timeout_s=15, exclude=leader) == follower
        await cluster.sim_call(
            "POST",
            "/positions",
            {"symbol": "BTCUSDT", "quantity": "0.002", "clientOrderId": "web_2"},
        )
        btc = await wait_until_async(lambda: with_trades("BTCUSDT"), "BTC's trades attached", 30)
        assert [t.qty for t in btc.trades.trades] == ["0.002"]
        # The new leader fetched for BTC only: ETH's record already explains its difference.
        assert trade_requests(cluster) == {leader: 1, follower: 1}
        assert with_trades("ETHUSDT").trades == eth.trades
    finally:
        conn.close()


async def test_a_leader_frozen_past_its_lease_neither_fetches_nor_writes_when_it_wakes(
    make_cluster: Any, redis_server: Any
) -> None:
    cluster = await cluster_of_own_keys(make_cluster)
    old = await cluster.wait_leader(timeout_s=15)
    new = next(n for n in NAMES if n != old)
    conn = RedisConnection(redis_server.url, namespace="grinder")
    store = RedisIncidentStore(conn)

    def explained(symbol: str, difference: str) -> Any:
        for rec in store.open_incidents():
            t = rec.trades
            if (
                rec.symbol == symbol
                and t is not None
                and (t.explained, t.difference)
                == (
                    True,
                    difference,
                )
            ):
                return rec
        return None

    async def fill(symbol: str, qty: str, cid: str) -> None:
        body = {"symbol": symbol, "quantity": qty, "clientOrderId": cid}
        await cluster.sim_call("POST", "/positions", body)

    try:
        await fill("ETHUSDT", "0.05", "web_1")
        await wait_until_async(lambda: explained("ETHUSDT", "0.05"), "ETH's trades", 30)
        assert trade_requests(cluster) == {old: 1, new: 0}

        cluster.instances[old].signal(signal.SIGSTOP)  # frozen past its lease, not killed
        assert await cluster.wait_leader(timeout_s=15, exclude=old) == new
        await fill("BTCUSDT", "0.002", "web_2")
        await wait_until_async(lambda: explained("BTCUSDT", "0.002"), "BTC's trades", 30)
        cluster.instances[old].signal(signal.SIGCONT)  # wakes believing nothing happened

        async def says_follower() -> bool:
            page = await cluster.instances[old].get("/console", timeout_s=5)
            return page is not None and "this instance is a follower" in page

        await wait_until_async(says_follower, f"{old}'s console says it is a follower", 30)
        await fill("ETHUSDT", "0.03", "web_3")  # the difference changes: fetched again
        eth = await wait_until_async(lambda: explained("ETHUSDT", "0.08"), "ETH again", 30)
        assert [t.qty for t in eth.trades.trades] == ["0.05", "0.03"]
        assert trade_requests(cluster) == {old: 1, new: 2}  # the woken one asked nothing
        assert "this instance is a follower" in (
            await cluster.instances[old].get("/console", timeout_s=5) or ""
        )
    finally:
        conn.close()
