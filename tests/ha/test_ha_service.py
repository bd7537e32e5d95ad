"""Several service instances (subprocesses) against one simulator and one real Redis.

Each instance is ``python -m scripts.run_live_reconcile --venue sim --venue-url … --redis-url
… --instance-id X`` with every live gate opened through the environment, a 1.5 s lease
and short grace periods (``[ha]`` / ``[reconcile]`` in a TOML config). Exchange writes are
counted by the simulator (``/_sim/state`` counters, ``/_sim/events``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from tests.support.wait import wait_until_async

pytestmark = [pytest.mark.redis, pytest.mark.subprocess]

LEASE_TTL_S = 1.5
DELETE = "DELETE /fapi/v1/order"
POST = "POST /fapi/v1/order"


def by_endpoint(state: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = state["counters"]["byEndpoint"]
    return counts


def position(state: dict[str, Any], symbol: str) -> Decimal:
    for p in state["positions"]:
        if p["symbol"] == symbol:
            return Decimal(p["positionAmt"])
    return Decimal(0)


def audit_events(inst: Any) -> list[dict[str, Any]]:
    path = inst.dir / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_three_instances_one_leader_followers_detect_and_report_but_only_block(
    cluster: Any,
) -> None:
    a, b, c = await cluster.start("A", "B", "C")
    leader = await cluster.wait_leader()
    followers = sorted({"A", "B", "C"} - {leader})
    samples = []
    for _ in range(30):
        samples.append(await cluster.leaders())
        await asyncio.sleep(0.05)
    assert all(s == [leader] for s in samples), samples
    states = await cluster.ha_states()
    assert states[leader]["enabled"] is True
    assert states[leader]["instance_id"] == leader
    assert states[leader]["token"] >= 1
    assert all(states[f]["leader"] is False and states[f]["token"] is None for f in followers)
    # A position worth more than the flatten cap: the leader blocks it for its notional,
    # the followers -- which detect it too -- block it at gate 0.
    await cluster.sim_call("POST", "/positions", {"symbol": "BTCUSDT", "quantity": "0.5"})
    inst = cluster.instances

    async def blocked(name: str, reason: str) -> bool:
        return await inst[name].metric("grinder_reconcile_action_blocked_total", reason=reason) >= 2

    await wait_until_async(lambda: blocked(leader, "notional_exceeds_limit"))
    for f in followers:
        await wait_until_async(lambda f=f: blocked(f, "not_leader"))
        detected = await inst[f].metric(
            "grinder_reconcile_mismatch_total", type="POSITION_NONZERO_UNEXPECTED"
        )
        assert detected == 1
        assert (
            await inst[f].metric(
                "grinder_reconcile_action_blocked_total", reason="notional_exceeds_limit"
            )
            == 0
        )
        assert await inst[f].metric("grinder_ha_is_leader") == 0
        assert await inst[f].metric("grinder_ha_enabled") == 1
        assert await inst[f].metric("grinder_ha_redis_up") == 1
    assert await inst[leader].metric("grinder_ha_is_leader") == 1
    assert await inst[leader].metric("grinder_ha_fencing_token") == states[leader]["token"]
    assert await inst[leader].metric("grinder_ha_leadership_changes_total", change="acquired") == 1
    assert by_endpoint(await cluster.sim_state()).get(POST, 0) == 0
    assert "REMEDIATION_BLOCKED" in inst[followers[0]].logs()
    assert "reason=not_leader" in inst[followers[0]].logs()
    assert any(e["event_type"] == "HA_LEADER_ACQUIRED" for e in audit_events(inst[leader]))
    assert f"HA_LEADER_ACQUIRED instance={leader} fence=" in inst[leader].logs()
    for i in (a, b, c):
        assert i.alive


async def test_kill_9_of_the_leader_mid_run_a_follower_finishes_the_remediation_exactly_once(
    cluster: Any, ours_id: Callable[..., str]
) -> None:
    await cluster.start("A", "B", "C")
    leader = await cluster.wait_leader()
    # Every REST call takes 300 ms: the leader's run of 4 cancels + 1 flatten takes seconds.
    await cluster.sim_call("POST", "/faults/latency", {"restMs": 300})
    cids = [ours_id(1), ours_id(2), ours_id(3, "ETHUSDT"), ours_id(4, "ETHUSDT")]
    for cid in cids:
        await cluster.place_orphan(cid, "ETHUSDT" if "ETH" in cid else "BTCUSDT")
    await cluster.sim_call("POST", "/positions", {"symbol": "BTCUSDT", "quantity": "0.003"})
    await wait_until_async(lambda: cluster.sim.exchange.requests[DELETE] >= 1)
    cluster.instances[leader].kill()  # mid-run: a cancel is in flight, others not sent yet
    killed_at = time.monotonic()
    calls_at_kill = cluster.budget_calls()
    new_leader = await cluster.wait_leader(timeout_s=LEASE_TTL_S + 3, exclude=leader, acting=False)
    failover_s = time.monotonic() - killed_at
    assert failover_s <= LEASE_TTL_S + 1, failover_s  # leads within the lease TTL + 1 s
    # It acts once its own snapshot (taken after acquiring, 300 ms per REST call) is in.
    assert await cluster.wait_leader(timeout_s=5, exclude=leader) == new_leader
    acting_s = time.monotonic() - killed_at

    async def done() -> bool:
        state = await cluster.sim_state()
        return not state["orders"] and position(state, "BTCUSDT") == 0

    await wait_until_async(done, timeout_s=20)
    await cluster.sim_call("DELETE", "/faults")
    state = await cluster.sim_state()
    counts = by_endpoint(state)
    events = (await cluster.sim_call("GET", "/events?limit=1000"))["events"]
    canceled = [
        e["o"]["c"]
        for e in events
        if e.get("e") == "ORDER_TRADE_UPDATE" and e["o"]["X"] == "CANCELED"
    ]
    fills = [
        e["o"]
        for e in events
        if e.get("e") == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "TRADE" and e["o"]["R"]
    ]
    print(
        f"\nHA kill -9 mid-run: killed={leader} new_leader={new_leader} "
        f"failover_s={failover_s:.2f} acting_s={acting_s:.2f} cancels_sent={counts.get(DELETE, 0)} "
        f"flattens_sent={counts.get(POST, 0)} budget_calls={cluster.budget_calls()} "
        f"budget_calls_at_kill={calls_at_kill}"
    )
    assert sorted(canceled) == sorted(cids)  # every order cancelled exactly once
    assert counts.get(DELETE, 0) == 4  # no cancel sent twice
    assert counts.get(POST, 0) == 1  # flattened once
    assert sum(Decimal(f["l"]) for f in fills) == Decimal("0.003")
    assert position(state, "BTCUSDT") == 0  # never beyond zero
    writes = counts.get(DELETE, 0) + counts.get(POST, 0)
    # The daily budget went on from where the killed leader left it: every write is
    # counted once (a reservation whose call never went out may over-count by one).
    assert writes <= cluster.budget_calls() <= writes + 1
    assert calls_at_kill >= 1
    new = cluster.instances[new_leader]
    assert await new.metric("grinder_reconcile_budget_calls_used_day") == cluster.budget_calls()
    assert f"HA_LEADER_ACTING instance={new_leader}" in new.logs()


async def test_a_leader_paused_past_its_lease_wakes_up_unable_to_write(
    cluster: Any, ours_id: Callable[..., str]
) -> None:
    await cluster.start("A", "B")
    leader = await cluster.wait_leader()
    other = "B" if leader == "A" else "A"
    paused = cluster.instances[leader]
    paused.signal(signal.SIGSTOP)
    new_leader = await cluster.wait_leader(timeout_s=LEASE_TTL_S + 3, exclude=leader)
    assert new_leader == other
    # The deployment is disarmed (given on the new leader's socket, it holds on every instance,
    # the paused one too), so the drift stays for the paused one to see.
    from grinder.cli.control import _call as control_call

    sock = cluster.sockets / other / "grinder" / "control.sock"
    await control_call(sock, "POST", "/arm", {"armed": False})
    await cluster.place_orphan(ours_id(7))
    await wait_until_async(
        lambda: cluster.instances[other].metric(
            "grinder_reconcile_action_blocked_total", reason="not_armed"
        )
    )
    paused.signal(signal.SIGCONT)  # wakes up believing nothing happened
    await wait_until_async(
        lambda: paused.metric("grinder_reconcile_action_blocked_total", reason="not_leader")
    )
    await asyncio.sleep(1.0)
    assert cluster.sim.exchange.write_requests == 0
    logs = paused.logs()
    assert f"HA_LEADER_LOST instance={leader}" in logs
    assert (await cluster.ha_states())[leader]["leader"] is False
    await control_call(sock, "POST", "/lift", {"name": "disarm"})
    await wait_until_async(lambda: cluster.sim.exchange.requests[DELETE] == 1)
    await asyncio.sleep(0.5)
    assert cluster.sim.exchange.write_requests == 1


async def test_redis_down_means_no_write_and_remediation_resumes_when_it_returns(
    cluster: Any, ours_id: Callable[..., str]
) -> None:
    await cluster.start("A", "B")
    await cluster.wait_leader()
    cluster.redis.kill()
    down_at = time.monotonic()
    await wait_until_async(lambda: _no_leader(cluster), timeout_s=LEASE_TTL_S + 2)
    lost_after_s = time.monotonic() - down_at
    await cluster.place_orphan(ours_id(9))
    for inst in cluster.live():
        await wait_until_async(
            lambda inst=inst: inst.metric(
                "grinder_reconcile_mismatch_total", type="ORDER_EXISTS_UNEXPECTED"
            )
        )
        await wait_until_async(
            lambda inst=inst: inst.metric(
                "grinder_reconcile_action_blocked_total", reason="not_leader"
            )
        )
        assert await inst.metric("grinder_ha_redis_up") == 0
        assert await inst.metric("grinder_ha_is_leader") == 0
        assert "HA_REDIS_DOWN" in inst.logs()
    await asyncio.sleep(1.0)
    assert cluster.sim.exchange.write_requests == 0  # nothing written while Redis is down
    cluster.redis.start()  # empty: lease, budget and epoch are gone
    up_at = time.monotonic()
    await wait_until_async(lambda: cluster.sim.exchange.requests[DELETE] == 1, timeout_s=15)
    resumed_s = time.monotonic() - up_at
    print(
        f"\nHA redis down: leadership lost after {lost_after_s:.2f}s, remediation resumed "
        f"{resumed_s:.2f}s after Redis returned (recovery window {LEASE_TTL_S}s)"
    )
    await asyncio.sleep(0.5)
    assert cluster.sim.exchange.write_requests == 1
    assert cluster.budget_calls() == 1
    assert len(await cluster.leaders()) == 1


async def test_manual_failover_over_the_control_socket_hands_the_lease_over_at_once(
    cluster: Any, ours_id: Callable[..., str]
) -> None:
    from grinder.cli.control import _call as control_call

    await cluster.start("A", "B")
    leader = await cluster.wait_leader()
    other = "B" if leader == "A" else "A"
    sock = cluster.sockets / leader / "grinder" / "control.sock"
    asked = time.monotonic()
    answer = await control_call(sock, "POST", "/ha/step-down", {"hold_s": 5})
    assert answer == {"instance_id": leader, "was_leader": True, "hold_s": 5.0}
    assert await cluster.wait_leader(timeout_s=LEASE_TTL_S + 2) == other
    handover_s = time.monotonic() - asked
    assert handover_s < LEASE_TTL_S  # released, not expired
    states = await cluster.ha_states()
    assert states[leader]["campaign_hold_s"] > 0
    await cluster.place_orphan(ours_id(11))
    await wait_until_async(lambda: cluster.sim.exchange.requests[DELETE] == 1)
    assert "HA_STEP_DOWN" in cluster.instances[leader].logs()
    changes = [
        e for e in audit_events(cluster.instances[leader]) if e["event_type"] == "CONTROL_CHANGE"
    ]
    assert [c["field"] for c in changes] == ["ha_leader"]
    print(f"\nHA manual failover: handover in {handover_s:.2f}s")


async def test_grinder_gates_on_a_new_leader_sees_the_cooldown_its_executor_sees(
    cluster: Any, ours_id: Callable[..., str]
) -> None:
    """The cooldown runs from the last write of any instance: a new leader that never wrote
    itself still blocks with cooldown_not_elapsed, and ``grinder gates`` says so."""
    from grinder.cli.control import _call as control_call

    await cluster.start("A", "B")
    leader = await cluster.wait_leader()
    other = "B" if leader == "A" else "A"
    socks = {n: cluster.sockets / n / "grinder" / "control.sock" for n in ("A", "B")}
    for sock in socks.values():
        await control_call(sock, "POST", "/set", {"field": "cooldown_seconds", "value": 600})
    await cluster.place_orphan(ours_id(31))
    await wait_until_async(lambda: cluster.sim.exchange.requests[DELETE] == 1)
    await control_call(socks[leader], "POST", "/ha/step-down", {"hold_s": 60})
    assert await cluster.wait_leader(timeout_s=LEASE_TTL_S + 2) == other

    gates = await asyncio.to_thread(
        cluster.cli.run,
        "grinder.cli",
        "gates",
        "--symbol",
        "BTCUSDT",
        "--order",
        ours_id(32),
        "--json",
        "--socket",
        str(socks[other]),
    )
    assert gates.returncode == 1, gates.stdout + gates.stderr
    chain = json.loads(gates.stdout)
    assert chain["first_block"] == chain["gate_reason"] == "cooldown_not_elapsed"
    gate6 = next(c for c in chain["checks"] if c["gate"] == "6")
    assert gate6["verdict"] == "fail"
    assert "(cooldown 600 s, " in gate6["detail"]
    assert (
        "cooldown anchor: shared in Redis (the last write of any instance), via /status"
        in chain["context"]
    )

    status = await control_call(socks[other], "GET", "/status", None)
    assert status["last_remediation_ts_ms"] is None  # this instance never wrote
    client = cluster.redis.client()
    try:
        shared = int(client.get("grinder:last_write_ms"))
    finally:
        client.close()
    assert status["cooldown"]["source"] == "redis"
    assert status["cooldown"]["live_anchor_ts_ms"] == shared

    # The executor agrees: the next orphan is blocked for the cooldown, not cancelled.
    new_leader = cluster.instances[other]
    await cluster.place_orphan(ours_id(32))
    await wait_until_async(
        lambda: _at_least(
            new_leader, "grinder_reconcile_action_blocked_total", 1, reason="cooldown_not_elapsed"
        )
    )
    assert cluster.sim.exchange.requests[DELETE] == 1
    # And its gauge shows the deployment's last write, not its own "never".
    assert await new_leader.metric("grinder_reconcile_last_remediation_ts_ms") == shared


async def _at_least(inst: Any, name: str, floor: float, **labels: str) -> bool:
    return bool(await inst.metric(name, **labels) >= floor)


async def test_the_expected_state_in_redis_survives_a_failover(
    cluster: Any, ours_id: Callable[..., str]
) -> None:
    """The bot records in Redis; every instance reads it, so no leader cancels the bot's order."""
    from grinder.ha.connection import RedisConnection
    from grinder.reconcile.types import ExpectedOrder, Side
    from grinder.state.redis_store import RedisExpectedStore

    conn = RedisConnection(cluster.redis.url, namespace="grinder")
    bot = RedisExpectedStore(conn, bot=True)
    mine = ours_id(21)
    bot.record_order(
        ExpectedOrder(
            client_order_id=mine,
            symbol="BTCUSDT",
            side=Side.BUY,
            qty=Decimal("0.002"),
            price=Decimal("20000"),
            created_ts_ms=int(time.time() * 1000),
        )
    )
    await cluster.place_orphan(mine)  # the bot's own order, recorded before it was sent
    await cluster.start("A", "B")
    leader = await cluster.wait_leader()
    await cluster.place_orphan(ours_id(22))  # not recorded: an orphan
    await wait_until_async(lambda: cluster.sim.exchange.requests[DELETE] == 1)
    cluster.instances[leader].kill()
    new_leader = await cluster.wait_leader(timeout_s=LEASE_TTL_S + 3, exclude=leader)
    await cluster.place_orphan(ours_id(23))
    await wait_until_async(lambda: cluster.sim.exchange.requests[DELETE] == 2)
    await asyncio.sleep(1.0)
    state = await cluster.sim_state()
    assert [o["clientOrderId"] for o in state["orders"]] == [mine]
    assert cluster.sim.exchange.requests[DELETE] == 2
    assert new_leader != leader
    conn.close()


async def _no_leader(cluster: Any) -> bool:
    states = await cluster.ha_states()
    return bool(states) and not any(s["leader"] for s in states.values())


async def test_a_silent_bot_holds_the_leader_back_and_its_next_heartbeat_lets_it_cancel(
    make_cluster: Any, ours_id: Callable[..., str]
) -> None:
    """Gate E with HA: the bot's heartbeat lives in Redis beside its expected state. While
    the bot is silent the leader detects the orphan but sends nothing; when it beats again,
    the leader cancels it."""
    cluster = await make_cluster()
    text = cluster.config_path.read_text()
    cluster.config_path.write_text(
        text.replace("[service]", "expected_heartbeat_max_age_s = 1.5\n\n[service]")
    )
    cluster.bot.pause()
    await asyncio.sleep(1.6)  # its last beat is older than the limit now
    await cluster.start("A", "B")
    leader = await cluster.wait_leader()
    inst = cluster.instances[leader]
    await cluster.place_orphan(ours_id(31))
    await wait_until_async(
        lambda: _at_least(
            inst, "grinder_reconcile_action_blocked_total", 3, reason="expected_state_stale"
        )
    )
    assert await inst.metric("grinder_reconcile_expected_heartbeat_age_seconds") > 1.5
    assert await inst.metric("grinder_reconcile_expected_heartbeat_max_age_seconds") == 1.5
    assert cluster.sim.exchange.requests[DELETE] == 0
    assert "EXPECTED_STATE_STALE source=redis" in inst.logs()
    cluster.bot.resume()
    await wait_until_async(lambda: cluster.sim.exchange.requests[DELETE] == 1)
    assert "EXPECTED_STATE_LIVE source=redis" in inst.logs()
    assert [o["clientOrderId"] for o in (await cluster.sim_state())["orders"]] == []
