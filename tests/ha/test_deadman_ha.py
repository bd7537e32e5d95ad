"""The dead-man switch on a real deployment: three instances, one Redis, the simulator.

Each instance trades with its own API key of one simulated account, so the simulator's
write log tells who sent each ``countdownCancelAll``; an observer reads, at the moment
the venue receives each one, who holds the lease in Redis. The bot keeps one resting
order (recorded in its expected state: no instance may cancel it) and heartbeats.

One deployment, in order:

1. the acting leader renews the BTCUSDT countdown; no other instance does;
2. the leader is paused (SIGSTOP) past its lease and past its next renewal, then woken:
   another instance takes over and renews, and the woken one has no renewal executed
   while it did not hold the lease;
3. the leader is killed (kill -9): the next leader renews before the countdown ends --
   the switch does not trip, the bot's order rests;
4. the bot stops recording: the leader withholds the renewals
   (``expected_state_stale``), the countdown ends, the exchange cancels the bot's
   order, and the incident ledger records the cause (``bot_stopped``).

Figures (renewal gaps at each handover, the trip's delay after the countdown) are printed.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from tests.support.wait import wait_until_async

pytestmark = [pytest.mark.redis, pytest.mark.subprocess]

LEASE_TTL_S = 1.0
COUNTDOWN_S = 15.0
RENEW_S = 5.0
PATH = "/fapi/v1/countdownCancelAll"
NAMES = ("A", "B", "C")
BOT_ORDER = "bot-resting-1"

DEADMAN_TOML = f"""
[deadman]
enabled = true
symbols = ["BTCUSDT"]
countdown_s = {COUNTDOWN_S}
renew_interval_s = {RENEW_S}
max_snapshot_age_s = 120.0
"""


@dataclass
class Renewal:
    received_ms: int
    sender: str
    holder: str | None
    executed: bool | None = None


class RenewalWitness:
    """Called by the simulator for each write it receives: who sent it, who led then."""

    def __init__(self, redis_client: Any, senders: dict[str, str]) -> None:
        self.redis = redis_client
        self.senders = senders
        self.seen: list[tuple[Any, Renewal]] = []

    def __call__(self, record: Any) -> None:
        if record.path != PATH:
            return
        raw = self.redis.get("grinder:leader")
        holder = str(raw).split(" ")[0] if raw else None
        sender = self.senders.get(record.api_key or "", "?")
        self.seen.append((record, Renewal(record.received_ms, sender, holder)))

    def renewals(self) -> list[Renewal]:
        out = []
        for record, renewal in self.seen:
            renewal.executed = record.executed if record.status is not None else None
            out.append(renewal)
        return out

    def by(self, name: str, *, after_ms: int = 0) -> list[Renewal]:
        return [r for r in self.renewals() if r.sender == name and r.received_ms >= after_ms]


async def test_the_switch_follows_the_leader_and_trips_when_the_bot_stops(
    make_cluster: Callable[..., Awaitable[Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from grinder.clock import wall_clock_ms
    from grinder.ha.connection import RedisConnection
    from grinder.reconcile.labels import IncidentCause
    from grinder.reconcile.types import ExpectedOrder, Side
    from grinder.state.redis_store import RedisExpectedStore

    keys = {f"key-{n}": f"secret-{n}" for n in NAMES}
    cluster = await make_cluster(lease_ttl_s=LEASE_TTL_S, weight_limit=1_000_000, more_keys=keys)
    cluster.instance_env = {
        n: {"GRINDER_SIM_API_KEY": f"key-{n}", "GRINDER_SIM_API_SECRET": f"secret-{n}"}
        for n in NAMES
    }
    config = cluster.config_path.read_text()
    config = config.replace("[service]", "expected_heartbeat_max_age_s = 2.0\n\n[service]")
    cluster.config_path.write_text(config + DEADMAN_TOML)
    witness = RenewalWitness(cluster.redis.client(), {f"key-{n}": n for n in NAMES})
    cluster.sim.exchange.write_log.observers.append(witness)
    timers = cluster.sim.exchange.countdowns

    # The bot's resting order: on the exchange and in its expected state.
    conn = RedisConnection(cluster.redis.url, namespace="grinder")
    bot_store = RedisExpectedStore(conn)
    bot_store.record_order(
        ExpectedOrder(
            client_order_id=BOT_ORDER,
            symbol="BTCUSDT",
            side=Side.BUY,
            qty=Decimal("0.002"),
            price=Decimal("20000"),
            created_ts_ms=wall_clock_ms(),
        )
    )
    await cluster.place_orphan(BOT_ORDER)

    def bot_order_open() -> bool:
        state = cluster.sim.exchange.account
        return any(o.client_order_id == BOT_ORDER for o in state.open_orders("BTCUSDT"))

    figures: dict[str, Any] = {}
    await cluster.start(*NAMES)
    try:
        # 1. The acting leader renews; only it.
        leader = await cluster.wait_leader(timeout_s=15)
        await wait_until_async(lambda: witness.by(leader), f"{leader}'s first renewal", 15)
        assert "BTCUSDT" in timers.timers
        assert {r.sender for r in witness.renewals()} == {leader}

        # 2. Paused past its lease and past its next renewal, then woken.
        paused_at = wall_clock_ms()
        cluster.instances[leader].signal(signal.SIGSTOP)
        others = [n for n in NAMES if n != leader]
        await asyncio.sleep(RENEW_S + 1.0)
        cluster.instances[leader].signal(signal.SIGCONT)
        woken_at = wall_clock_ms()
        second = await cluster.wait_leader(timeout_s=15, exclude=leader)
        assert second in others
        await wait_until_async(
            lambda: witness.by(second, after_ms=paused_at), f"{second}'s first renewal", 15
        )
        await asyncio.sleep(1.5)  # the woken instance's pending work, if any, arrives now
        late = [
            r for r in witness.by(leader, after_ms=paused_at) if r.holder != leader and r.executed
        ]
        assert late == [], f"renewals executed from a deposed leader: {late}"
        figures["pause_handover_gap_ms"] = _gap(witness, leader, second, paused_at)
        figures["paused_ms"] = woken_at - paused_at

        # 3. kill -9 of the leader: the next one renews before the countdown ends.
        killed_at = wall_clock_ms()
        cluster.instances[second].kill()
        third = await cluster.wait_leader(timeout_s=15, exclude=second)
        await wait_until_async(
            lambda: witness.by(third, after_ms=killed_at), f"{third}'s first renewal", 15
        )
        figures["kill_handover_gap_ms"] = _gap(witness, second, third, killed_at)
        assert figures["kill_handover_gap_ms"] < COUNTDOWN_S * 1000
        assert timers.firings == [], "the switch tripped during a failover"
        assert bot_order_open()
        every = witness.renewals()
        both = [r for r in every if r.executed and r.holder != r.sender]
        assert both == [], f"a renewal executed from an instance not holding the lease: {both}"

        # 4. The bot stops recording: no more renewals, the exchange cancels its order.
        assert cluster.bot is not None
        cluster.bot.pause()
        stopped_at = wall_clock_ms()
        await wait_until_async(
            lambda: timers.firings, "the countdown to end", COUNTDOWN_S + RENEW_S + 10
        )
        firing = timers.firings[0]
        last = max(r.received_ms for r in witness.renewals() if r.executed)
        assert firing.symbol == "BTCUSDT"
        assert firing.canceled == 1
        assert not bot_order_open()
        assert firing.fired_ms >= last + int(COUNTDOWN_S * 1000)
        figures["trip_after_bot_stopped_s"] = round((firing.fired_ms - stopped_at) / 1000, 1)
        figures["trip_after_countdown_ms"] = firing.fired_ms - firing.deadline_ms
        withheld = await cluster.instances[third].metric(
            "grinder_deadman_renewals_withheld_total", reason="expected_state_stale"
        )
        assert withheld >= 1
        # The incident ledger (in Redis under HA) says why the bot's order is gone.
        record = await wait_until_async(
            lambda: _bot_order_incident(conn), "the ledger's incident of the bot's order", 20
        )
        assert record.cause is IncidentCause.BOT_STOPPED, record
        figures["ledger_cause"] = record.cause.value
        figures["renewals"] = len([r for r in every if r.executed])
    finally:
        conn.close()
    with capsys.disabled():
        print("\nDead-man switch figures: " + " ".join(f"{k}={v}" for k, v in figures.items()))


def _bot_order_incident(conn: Any) -> Any:
    from grinder.incidents.redis_store import RedisIncidentStore

    store = RedisIncidentStore(conn)
    found = [r for r in store.open_incidents() if r.client_order_id == BOT_ORDER]
    return found[0] if found else None


def _gap(witness: RenewalWitness, old: str, new: str, since_ms: int) -> int:
    """From the old leader's last executed renewal before ``since_ms`` (its pause or death)
    to the new one's first after it (ms): how long the countdown ran unrenewed."""
    old_last = max(
        r.received_ms for r in witness.by(old) if r.executed and r.received_ms < since_ms
    )
    new_first = min(r.received_ms for r in witness.by(new, after_ms=since_ms) if r.executed)
    assert new_first > old_last
    return new_first - old_last
