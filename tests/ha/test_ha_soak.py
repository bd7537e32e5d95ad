"""Random kill/restart rounds: three service instances, one simulator, one real Redis.

A **round** is: drift injected on the simulator (1-2 orphan orders of ours, and in
about half the rounds an unexpected position), one fault chosen at random and
applied at a random moment, then a wait until the drift is remediated. Faults:

* ``kill_leader`` -- ``kill -9`` of the acting leader 0-400 ms after the drift
  appeared (before, during or after its remediation run), restarted at once;
* ``pause_leader`` -- ``SIGSTOP`` of the leader while idle, for its lease TTL +
  0.3 s, with the drift injected while it is stopped; then ``SIGCONT``;
* ``kill_redis`` -- ``kill -9`` of redis-server (no persistence: it comes back
  empty) 0-400 ms after the drift, restarted 0.1-0.6 s later;
* ``kill_follower`` -- ``kill -9`` of a follower, restarted at once;
* ``none``.

Checked every round, from the simulator's own counters: cancels sent = orphan
orders injected, flatten orders sent = positions injected (a double execution is
any request beyond that), every position back to exactly zero with flatten fills
equal to what was injected (never beyond zero), and the shared daily budget in
Redis >= every write the simulator received so far (an under-count is any
shortfall). Leadership is sampled through ``/readyz`` every 100 ms: an overlap is a
leadership seen still valid (``checked_ms``) after the next one began
(``leader_since_ms``); a token reuse is one fencing token seen on two
leaderships (every new leadership must get a larger one, also after Redis lost
its data); failover time is from the fault to the new leadership's start.

``GRINDER_HA_ROUNDS`` (default 100) and ``GRINDER_HA_SOAK_SECONDS`` (default 240,
the time cap) tune it. It is part of the default run; ``-m ha_soak`` selects it alone and
``-m "not ha_soak"`` leaves it out. The figures are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from grinder.clock import wall_clock_ms

pytestmark = [pytest.mark.redis, pytest.mark.subprocess]

LEASE_TTL_S = 1.0
DELETE = "DELETE /fapi/v1/order"
POST = "POST /fapi/v1/order"
FAULTS = (
    ("kill_leader", 30),
    ("pause_leader", 15),
    ("kill_redis", 15),
    ("kill_follower", 15),
    ("none", 25),
)


@dataclass
class Leadership:
    token: int
    instance: str
    since_ms: int
    last_seen_ms: int


@dataclass
class Figures:
    rounds: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    orders_injected: int = 0
    positions_injected: int = 0
    cancels_sent: int = 0
    flattens_sent: int = 0
    double_executions: int = 0
    beyond_zero: int = 0
    budget_undercounts: int = 0
    max_failover_s: float = 0.0
    max_redis_recovery_s: float = 0.0
    overlaps: int = 0
    token_reuses: int = 0
    leaderships: int = 0
    restarts: int = 0
    elapsed_s: float = 0.0
    last_fault: str = ""

    def line(self) -> str:
        faults = ",".join(f"{k}={v}" for k, v in sorted(self.faults.items()))
        return (
            f"HA soak figures: rounds={self.rounds} ({faults}) "
            f"leaderships={self.leaderships} overlapping_leaderships={self.overlaps} "
            f"token_reuses={self.token_reuses} "
            f"double_executions={self.double_executions} "
            f"budget_undercounts={self.budget_undercounts} beyond_zero={self.beyond_zero} "
            f"orders_injected={self.orders_injected} cancels_sent={self.cancels_sent} "
            f"positions_injected={self.positions_injected} flattens_sent={self.flattens_sent} "
            f"max_time_without_leader_s={self.max_failover_s:.2f} "
            f"(lease {LEASE_TTL_S:g}s; after a leader kill or pause) "
            f"max_redis_outage_to_leader_s={self.max_redis_recovery_s:.2f} "
            f"instance_restarts={self.restarts} elapsed_s={self.elapsed_s:.1f} "
            f"last_fault={self.last_fault}"
        )


class Sampler:
    """Polls every instance's /readyz and records each leadership (by fencing token)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.leaderships: dict[int, Leadership] = {}
        self.token_reuses: list[tuple[Leadership, str, int]] = []
        """A token seen again on another leadership (another instance or start)."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(0.1)

    async def sample(self) -> None:
        for name, ha in (await self.cluster.ha_states()).items():
            token = ha.get("token")
            if not ha.get("leader") or token is None:
                continue
            seen = self.leaderships.get(token)
            if seen is None:
                self.leaderships[token] = Leadership(
                    token, name, ha["leader_since_ms"], ha["checked_ms"]
                )
            elif (seen.instance, seen.since_ms) != (name, ha["leader_since_ms"]):
                self.token_reuses.append((seen, name, ha["leader_since_ms"]))
            else:
                seen.last_seen_ms = max(seen.last_seen_ms, ha["checked_ms"])

    def overlaps(self) -> int:
        """Leaderships seen still valid after a later (higher-token) one had begun."""
        ordered = sorted(self.leaderships.values(), key=lambda x: x.token)
        return sum(
            1
            for i, earlier in enumerate(ordered)
            if any(earlier.last_seen_ms > later.since_ms for later in ordered[i + 1 :])
        )

    async def new_leadership_after(self, ts_ms: int, timeout_s: float) -> Leadership:
        deadline = time.monotonic() + timeout_s
        while True:
            await self.sample()
            fresh = [x for x in self.leaderships.values() if x.since_ms >= ts_ms]
            if fresh or self.token_reuses:
                assert not self.token_reuses, f"a fencing token reused: {self.token_reuses}"
                return min(fresh, key=lambda x: x.since_ms)
            if time.monotonic() > deadline:
                states = await self.cluster.ha_states()
                logs = {n: i.logs()[-3000:] for n, i in self.cluster.instances.items()}
                raise AssertionError(
                    f"no new leadership after {ts_ms} in time: seen={self.leaderships} "
                    f"states={states} logs={logs}"
                )
            await asyncio.sleep(0.02)


def counts(cluster: Any) -> tuple[int, int]:
    requests = cluster.sim.exchange.requests
    return requests[DELETE], requests[POST]


async def settle(cluster: Any, cids: list[str], symbol: str | None, timeout_s: float) -> None:
    """Until none of the round's orders is open and the position is flat."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = await cluster.sim_state()
        open_ids = {o["clientOrderId"] for o in state["orders"]}
        flat = symbol is None or all(
            Decimal(p["positionAmt"]) == 0 for p in state["positions"] if p["symbol"] == symbol
        )
        if flat and not open_ids.intersection(cids):
            return
        if time.monotonic() > deadline:
            logs = {n: i.logs()[-2500:] for n, i in cluster.instances.items()}
            raise AssertionError(f"round not remediated in time: {state['orders']} {logs}")
        await asyncio.sleep(0.05)


async def ensure_running(cluster: Any, names: list[str]) -> None:
    for name in names:
        inst = cluster.instances[name]
        if not inst.alive:
            inst.start()
    for name in names:
        await cluster.instances[name].wait_started()


@pytest.mark.ha_soak
async def test_random_kill_restart_rounds_never_double_execute_or_undercount(
    make_cluster: Callable[..., Awaitable[Any]],
    ours_id: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    rounds = int(os.environ.get("GRINDER_HA_ROUNDS", "100"))
    cap_s = float(os.environ.get("GRINDER_HA_SOAK_SECONDS", "240"))
    seed = int(os.environ.get("GRINDER_HA_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    cluster = await make_cluster(lease_ttl_s=LEASE_TTL_S, weight_limit=1_000_000)
    names = ["A", "B", "C"]
    await cluster.start(*names)
    await cluster.wait_leader()
    sampler = Sampler(cluster)
    sampler.start()
    figures = Figures()
    started = time.monotonic()
    seq = 0
    capped = False
    try:
        for _ in range(rounds):
            if time.monotonic() - started > cap_s:
                capped = True
                break
            await ensure_running(cluster, names)
            leader = await cluster.wait_leader(timeout_s=15)
            fault = rng.choices([f for f, _ in FAULTS], [w for _, w in FAULTS])[0]
            figures.faults[fault] += 1
            figures.last_fault = fault
            before = counts(cluster)
            cids = []
            for _ in range(rng.randint(1, 2)):
                seq += 1
                symbol = rng.choice(["BTCUSDT", "ETHUSDT"])
                cids.append((ours_id(seq, symbol), symbol))
            position: tuple[str, Decimal] | None = None
            if rng.random() < 0.5:
                symbol = rng.choice(["BTCUSDT", "ETHUSDT"])
                step = Decimal("0.001") if symbol == "BTCUSDT" else Decimal("0.01")
                qty = step * rng.randint(1, 5) * rng.choice([1, -1])
                position = (symbol, qty)
            round_ms = fault_ms = wall_clock_ms()
            redis_back_ms = 0
            if fault == "pause_leader":
                cluster.instances[leader].signal(signal.SIGSTOP)
                fault_ms = wall_clock_ms()
                await asyncio.sleep(rng.uniform(0, 0.3))
            for cid, symbol in cids:
                await cluster.place_orphan(cid, symbol)
            if position is not None:  # as if traded by hand: appears with an ACCOUNT_UPDATE
                await cluster.sim_call(
                    "POST",
                    "/positions",
                    {"symbol": position[0], "quantity": str(position[1]), "via": "set"},
                )
            if fault == "pause_leader":
                await asyncio.sleep(
                    max(0.0, LEASE_TTL_S + 0.3 - (wall_clock_ms() - fault_ms) / 1000)
                )
                cluster.instances[leader].signal(signal.SIGCONT)
            elif fault != "none":
                await asyncio.sleep(rng.uniform(0, 0.4))
                fault_ms = wall_clock_ms()
                if fault == "kill_leader":
                    cluster.instances[leader].kill()
                    cluster.instances[leader].start()
                    figures.restarts += 1
                elif fault == "kill_follower":
                    victim = rng.choice([n for n in names if n != leader])
                    cluster.instances[victim].kill()
                    cluster.instances[victim].start()
                    figures.restarts += 1
                elif fault == "kill_redis":
                    cluster.redis.kill()
                    await asyncio.sleep(rng.uniform(0.1, 0.6))
                    cluster.redis.start()
                    redis_back_ms = wall_clock_ms()
            if fault in ("kill_leader", "pause_leader"):
                new = await sampler.new_leadership_after(fault_ms, timeout_s=15)
                figures.max_failover_s = max(
                    figures.max_failover_s, (new.since_ms - fault_ms) / 1000
                )
            elif fault == "kill_redis":
                new = await sampler.new_leadership_after(redis_back_ms, timeout_s=15)
                figures.max_redis_recovery_s = max(
                    figures.max_redis_recovery_s, (new.since_ms - redis_back_ms) / 1000
                )
            await settle(
                cluster,
                [c for c, _ in cids],
                None if position is None else position[0],
                timeout_s=30,
            )
            await asyncio.sleep(0.2)  # a late duplicate would arrive now
            after = counts(cluster)
            cancels, flattens = after[0] - before[0], after[1] - before[1]
            expected_flattens = 0 if position is None else 1
            figures.rounds += 1
            figures.orders_injected += len(cids)
            figures.positions_injected += expected_flattens
            figures.cancels_sent += cancels
            figures.flattens_sent += flattens
            figures.double_executions += max(0, cancels - len(cids))
            figures.double_executions += max(0, flattens - expected_flattens)
            assert cancels >= len(cids)  # nothing else cancels them
            state = await cluster.sim_state()
            if any(Decimal(p["positionAmt"]) != 0 for p in state["positions"]):
                figures.beyond_zero += 1
            if position is not None:  # flatten fills of this round == what was injected
                events = (await cluster.sim_call("GET", "/events?limit=300"))["events"]
                filled = sum(
                    Decimal(e["o"]["l"])
                    for e in events
                    if e.get("e") == "ORDER_TRADE_UPDATE"
                    and e["o"]["x"] == "TRADE"
                    and e["o"]["s"] == position[0]
                    and e["E"] >= round_ms
                )
                if filled != abs(position[1]):
                    figures.beyond_zero += 1
            writes = after[0] + after[1]
            calls = cluster.budget_calls()
            figures.budget_undercounts += max(0, writes - calls)
            if figures.double_executions or figures.budget_undercounts or figures.beyond_zero:
                break
    finally:
        await sampler.stop()
        figures.elapsed_s = time.monotonic() - started
        figures.leaderships = len(sampler.leaderships)
        figures.overlaps = sampler.overlaps()
        figures.token_reuses = len(sampler.token_reuses)
        with capsys.disabled():
            print(f"\n{figures.line()} seed={seed}")
    events = (await cluster.sim_call("GET", "/events?limit=1000"))["events"]
    fills = [
        e["o"] for e in events if e.get("e") == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "TRADE"
    ]
    assert all(f["R"] for f in fills)  # every fill was a reduce-only flatten
    assert cluster.sim.exchange.internal_errors == 0
    assert not capped, f"time cap of {cap_s:g}s reached after {figures.rounds} rounds"
    assert figures.rounds == rounds
    assert figures.double_executions == 0
    assert figures.budget_undercounts == 0
    assert figures.beyond_zero == 0
    assert figures.overlaps == 0
    assert figures.token_reuses == 0
    assert figures.max_failover_s <= LEASE_TTL_S + 1
