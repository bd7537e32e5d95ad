"""A leader paused past its lease while it retries a cancel under 5xx: it must not write.

Three service processes on one real ``redis-server`` and one in-process simulator.
Each instance trades with its own API key of the same simulated account, and the
simulator's write log calls an observer at the moment it receives each write --
before processing it. The observer reads, right then, the lease key in Redis (who
leads, with which fencing token) and the test's record of what the bot expects.

A **round**: an orphan order of ours appears while every ``DELETE /fapi/v1/order``
is answered ``503`` (not processed), so the leader keeps retrying its cancel. At a
random moment 0-700 ms after its first attempt reached the venue the leader gets
``SIGSTOP``; the bot then records the order as its own (in Redis); the test waits
past the lease until another instance leads, lifts the 503s, and resumes the old
leader with ``SIGCONT``, giving it a second to send whatever it still had pending.

Checked at every write the venue receives, and reported as figures:

* ``executed_from_deposed`` -- writes executed by the venue from an instance whose
  lease was not the current one when the venue received them. Must be 0.
* ``received_from_deposed`` -- such writes that reached the venue at all (a request
  authorized before the pause and sent after it). The lease cannot fence the venue
  itself; each must have been refused by the venue because it arrived later than the
  ``recvWindow`` it was granted (``-1021``).
* ``cancels_of_expected`` -- cancels executed of an order the bot expected at that
  moment. Must be 0; and each round's order is still open at the end.

``GRINDER_FENCE_ROUNDS`` (default 20) sets the number of rounds; the figures are
printed.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from grinder.clock import wall_clock_ms
from tests.support.wait import wait_until_async

pytestmark = [pytest.mark.redis, pytest.mark.subprocess]

LEASE_TTL_S = 1.0
DELETE_PATH = "/fapi/v1/order"
NAMES = ("A", "B", "C")


@dataclass
class Seen:
    """One write as the venue received it, with the world at that moment."""

    record: Any
    sender: str
    holder: str | None
    bot_expected: bool


@dataclass
class FenceFigures:
    rounds: int = 0
    writes: int = 0
    pause_points_ms: list[int] = field(default_factory=list)
    paused_ms: list[int] = field(default_factory=list)
    attempts_before_pause: list[int] = field(default_factory=list)
    received_from_deposed: int = 0
    refused_late_by_venue: int = 0
    executed_from_deposed: int = 0
    cancels_of_expected: int = 0
    withheld_by_woken_leaders: float = 0.0
    elapsed_s: float = 0.0

    def line(self) -> str:
        points = self.pause_points_ms or [0]
        tries = self.attempts_before_pause or [0]
        paused = self.paused_ms or [0]
        return (
            f"HA fence figures: rounds={self.rounds} writes_received={self.writes} "
            f"pause_after_first_attempt_ms=[{min(points)}..{max(points)}] "
            f"paused_ms=[{min(paused)}..{max(paused)}] "
            f"attempts_before_pause=[{min(tries)}..{max(tries)}] "
            f"received_from_deposed={self.received_from_deposed} "
            f"refused_late_by_venue={self.refused_late_by_venue} "
            f"executed_from_deposed={self.executed_from_deposed} "
            f"cancels_of_expected={self.cancels_of_expected} "
            f"withheld_at_the_wire={self.withheld_by_woken_leaders:g} "
            f"(lease {LEASE_TTL_S:g}s) elapsed_s={self.elapsed_s:.1f}"
        )


class WireWitness:
    """Called by the simulator for each write it receives: records who led right then."""

    def __init__(self, redis_client: Any, keys: dict[str, str]) -> None:
        self.redis = redis_client
        self.sender_of_key = keys
        self.expected: set[str] = set()
        """Client order ids the bot has recorded as its own (updated by the test)."""
        self.seen: list[Seen] = []

    def __call__(self, record: Any) -> None:
        raw = self.redis.get("grinder:leader")
        holder = str(raw).split(" ")[0] if raw else None
        self.seen.append(
            Seen(
                record=record,
                sender=self.sender_of_key.get(record.api_key or "", "?"),
                holder=holder,
                bot_expected=record.client_order_id in self.expected,
            )
        )


async def acting_leader_among(cluster: Any, names: list[str], timeout_s: float) -> str:
    """The instance among ``names`` that acts as leader (asked only of them: a paused
    instance would hold each poll for the length of its HTTP timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = await asyncio.gather(*(cluster.instances[n].ha() for n in names))
        acting = [n for n, st in zip(names, states, strict=True) if st and st.get("acting")]
        if len(acting) == 1:
            return acting[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no acting leader among {names} in {timeout_s} s")
        await asyncio.sleep(0.02)


@pytest.mark.ha_soak
async def test_a_leader_paused_past_its_lease_mid_retry_never_writes_after_waking(
    make_cluster: Callable[..., Awaitable[Any]],
    ours_id: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from grinder.ha.connection import RedisConnection
    from grinder.reconcile.types import ExpectedOrder, Side
    from grinder.state.redis_store import RedisExpectedStore

    rounds = int(os.environ.get("GRINDER_FENCE_ROUNDS", "20"))
    seed = int(os.environ.get("GRINDER_HA_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    keys = {f"key-{n}": f"secret-{n}" for n in NAMES}
    cluster = await make_cluster(lease_ttl_s=LEASE_TTL_S, weight_limit=1_000_000, more_keys=keys)
    cluster.instance_env = {
        n: {"GRINDER_SIM_API_KEY": f"key-{n}", "GRINDER_SIM_API_SECRET": f"secret-{n}"}
        for n in NAMES
    }
    witness = WireWitness(cluster.redis.client(), {f"key-{n}": n for n in NAMES})
    cluster.sim.exchange.write_log.observers.append(witness)
    conn = RedisConnection(cluster.redis.url, namespace="grinder")
    bot = RedisExpectedStore(conn)
    figures = FenceFigures()
    started = time.monotonic()
    await cluster.start(*NAMES)
    try:
        for n in range(rounds):
            leader = await cluster.wait_leader(timeout_s=15)
            cid = ours_id(5000 + n)
            await cluster.sim_call(
                "POST",
                "/faults/errors",
                {"count": 100_000, "status": 503, "paths": [DELETE_PATH], "methods": ["DELETE"]},
            )
            await cluster.place_orphan(cid)

            def first_attempt(cid: str = cid) -> bool:
                return any(s.record.client_order_id == cid for s in witness.seen)

            await wait_until_async(
                first_attempt, f"the leader's first cancel of {cid}", 15, interval_s=0.01
            )
            first_ms = min(
                s.record.received_ms for s in witness.seen if s.record.client_order_id == cid
            )
            await asyncio.sleep(rng.uniform(0, 0.7))
            cluster.instances[leader].signal(signal.SIGSTOP)
            stopped_ms = wall_clock_ms()
            bot.record_order(
                ExpectedOrder(
                    client_order_id=cid,
                    symbol="BTCUSDT",
                    side=Side.BUY,
                    qty=Decimal("0.002"),
                    price=Decimal("20000"),
                    created_ts_ms=stopped_ms,
                )
            )
            witness.expected.add(cid)
            figures.pause_points_ms.append(stopped_ms - first_ms)
            figures.attempts_before_pause.append(
                sum(1 for s in witness.seen if s.record.client_order_id == cid)
            )
            # Paused until its lease ran out and another instance acts on a fresh snapshot:
            # the lease (renewed every TTL/3) ends 2/3 TTL to 1 TTL after the pause began.
            await acting_leader_among(cluster, [x for x in NAMES if x != leader], 15)
            await cluster.sim_call("DELETE", "/faults")
            figures.paused_ms.append(wall_clock_ms() - stopped_ms)
            cluster.instances[leader].signal(signal.SIGCONT)
            await asyncio.sleep(0.7)  # whatever the woken leader still had, it sends now
            state = await cluster.sim_state()
            assert cid in {o["clientOrderId"] for o in state["orders"]}, (
                f"round {n}: the bot's order {cid} was cancelled"
            )
            figures.rounds += 1
        for name in NAMES:
            figures.withheld_by_woken_leaders += await cluster.instances[name].metric(
                "grinder_reconcile_write_attempts_total", action="cancel_all", outcome="withheld"
            )
    finally:
        figures.elapsed_s = time.monotonic() - started
        for s in witness.seen:
            figures.writes += 1
            if s.sender != s.holder:
                figures.received_from_deposed += 1
                if s.record.executed:
                    figures.executed_from_deposed += 1
                elif s.record.code == -1021:
                    figures.refused_late_by_venue += 1
            if s.bot_expected and s.record.executed and s.record.method == "DELETE":
                figures.cancels_of_expected += 1
        with capsys.disabled():
            print(f"\n{figures.line()} seed={seed}")
        conn.close()
        witness.redis.close()
    assert figures.writes == len(cluster.sim.exchange.write_log.records)  # every one witnessed
    assert figures.executed_from_deposed == 0, figures.line()
    assert figures.cancels_of_expected == 0, figures.line()
    assert figures.received_from_deposed == figures.refused_late_by_venue, figures.line()
    assert figures.rounds == rounds
