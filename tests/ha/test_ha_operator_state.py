"""A rollback given on one instance holds on every instance of an HA deployment until lifted.

Three service processes on a real ``redis-server`` (no persistence) and the simulator, each
with its own API key, every live gate open through the environment, and an orphan order of
ours placed every second. A rollback is given on a *follower's* control socket; from its
reply on, the simulator's write log -- every write it received, with its time and key --
must show no write from any instance, through: a reload of every instance with a config
file that says live (and a SIGHUP), a restart of one instance, a ``kill -9`` of the leader,
and a Redis restart that loses everything (the live instances write back what they knew,
marked lost, and every write stays blocked). ``grinder control lift`` given straight to
Redis (``--redis-url``) re-asserts the state and lifts the rollback: the next orphan is
cancelled.

The four rollbacks are the same round, and every one runs in the first part of ``bin/test``
(with the other tests, on several workers): it judges what reaches the exchange, not how soon
a leader takes over, so the load of other tests cannot change its verdict.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from grinder.clock import wall_clock_ms
from grinder.exchange.simulator.client import SimControl
from tests.support.wait import wait_until_async

pytestmark = [pytest.mark.redis, pytest.mark.subprocess]

LEASE_TTL_S = 1.5
NAMES = ("A", "B", "C")
LIVE_FILE = """\
[reconcile]
action = "flatten"
dry_run = false
allow_active_remediation = true
order_grace_ms = 150
position_grace_ms = 150
symbol_whitelist = ["BTCUSDT", "ETHUSDT"]
cooldown_seconds = 0
max_calls_per_day = 100000
max_notional_per_day = 100000000
max_calls_per_run = 50
max_orders_per_action = 50

[service]
full_pass_interval_s = 0.25
armed = true

[ha]
lease_ttl_s = {lease}
redis_timeout_s = 0.2
"""


@dataclass(frozen=True)
class Rollback:
    argv: tuple[str, ...]
    field: str
    shows: str
    """How the leader's runs show it: a block reason, or ``planned`` (dry-run)."""
    name: str


ROLLBACKS = [
    pytest.param(Rollback(("disarm",), "armed", "not_armed", "disarm"), id="disarm"),
    pytest.param(
        Rollback(("set", "action", "none"), "action", "action_is_none", "action-none"),
        id="action-none",
    ),
    pytest.param(
        Rollback(("set", "dry_run", "true"), "dry_run", "planned", "dry-run"),
        id="dry-run",
    ),
    pytest.param(
        Rollback(("deny-mainnet",), "allow_mainnet_trade", "env_var_missing", "deny-mainnet"),
        id="deny-mainnet",
    ),
]


class Round:
    """The cluster, the orphans, and what the operator does."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.orphans = 0

    def socket(self, name: str) -> str:
        return str(self.cluster.sockets / name / "grinder" / "control.sock")

    async def control(self, *args: str, code: int = 0) -> Any:
        cli = self.cluster.cli
        proc = await asyncio.to_thread(cli.run, "grinder.cli", "control", *args)
        assert proc.returncode == code, proc.stdout + proc.stderr
        return json.loads(proc.stdout) if code == 0 else proc

    async def drift(self) -> None:
        async with SimControl(self.cluster.sim_url) as ctl:
            while True:
                self.orphans += 1
                cid = f"grinder_d_BTCUSDT_1_1704067200_{7000 + self.orphans}"
                await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)
                await asyncio.sleep(1.0)

    def writes_since(self, t_ms: int) -> list[Any]:
        return [r for r in self.cluster.sim.exchange.write_log.records if r.received_ms >= t_ms]

    async def shown(self, what: str) -> float:
        """How often the live instances' runs showed ``what``, summed."""
        total = 0.0
        for inst in self.cluster.live():
            if what == "planned":
                total += await inst.metric(
                    "grinder_reconcile_action_planned_total", action="cancel_all"
                )
            else:
                total += await inst.metric("grinder_reconcile_action_blocked_total", reason=what)
        return total

    async def grows(self, what: str, by: float, during: str) -> None:
        start = await self.shown(what)

        async def grown() -> bool:
            return await self.shown(what) >= start + by

        await wait_until_async(grown, f"{what} {during}", 40)

    async def status(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = await self.control("status", "--socket", self.socket(name))
        return status


async def _reload_everywhere(rnd: Round, rollback: Rollback) -> None:
    """Every instance reloads a file that says live (the last one by SIGHUP)."""
    cluster = rnd.cluster
    cluster.config_path.write_text(LIVE_FILE.format(lease=LEASE_TTL_S))
    for name in NAMES[:-1]:
        reloaded = await rnd.control("reload", "--socket", rnd.socket(name))
        assert rollback.field in [h["field"] for h in reloaded["held"]], reloaded
    last = cluster.instances[NAMES[-1]]
    last.signal(signal.SIGHUP)
    await wait_until_async(
        lambda: "CONFIG_RELOADED source=sighup" in last.logs(), "the SIGHUP reload"
    )


async def _lose_redis(rnd: Round, rollback: Rollback, leader: str) -> None:
    """Redis restarted without persistence: the live instances write back what they knew,
    marked lost, and block every write until it is re-asserted."""
    await asyncio.to_thread(rnd.cluster.redis.restart)
    await rnd.grows("operator_state_unknown", 2, "after Redis lost the operator state")
    lost = (await rnd.status(leader))["operator"]
    assert lost["lost"] is not None
    assert lost["rollbacks"] == [rollback.name]  # restored from what the instances knew


async def _a_rollback_round(rnd: Round, rollback: Rollback, follower: str) -> dict[str, Any]:
    cluster = rnd.cluster
    reply = await rnd.control(
        *rollback.argv, "--socket", rnd.socket(follower), "--reason", "incident 7"
    )
    t0 = wall_clock_ms()
    assert (reply["kind"], reply["reason"]) == ("rollback", "incident 7")
    assert reply["recorded"].endswith("key grinder:operator")
    during = f"while {rollback.name} stands"
    await rnd.grows(rollback.shows, 2, during)
    for name in NAMES:  # every instance shows it, with who and why
        setting = (await rnd.status(name))["settings"][rollback.field]
        assert (setting["source"], setting["reason"]) == ("rollback", "incident 7")
    await _reload_everywhere(rnd, rollback)
    await rnd.grows(rollback.shows, 2, f"{during}, after every reload")
    # A restart of one instance: it reads the rollback before anything else.
    cluster.instances[follower].stop()
    await cluster.start(follower)
    assert (await rnd.status(follower))["operator"]["rollbacks"] == [rollback.name]
    await rnd.grows(rollback.shows, 2, f"{during}, after a restart")
    # kill -9 of the leader: the new leader holds it too.
    leader = await cluster.wait_leader()
    cluster.instances[leader].kill()
    new_leader = await cluster.wait_leader(timeout_s=LEASE_TTL_S + 5, exclude=leader)
    await rnd.grows(rollback.shows, 2, f"{during}, after the leader was killed")
    await _lose_redis(rnd, rollback, new_leader)
    sent = rnd.writes_since(t0)
    assert sent == [], f"{len(sent)} write(s) reached the exchange after the rollback"
    figures = {"drained_ms": reply["drained_ms"], "orphans_while_standing": rnd.orphans}
    # Lift, given straight to Redis: it re-asserts the state; the next orphan is cancelled.
    lifted = await rnd.control(
        "lift", rollback.name, "--redis-url", cluster.redis.url, "--reason", "resolved"
    )
    assert lifted["lifted"] == [rollback.field]
    assert lifted.get("reasserted") is True
    t_lift = wall_clock_ms()
    await wait_until_async(
        lambda: any(r.executed for r in rnd.writes_since(t_lift)),
        "an orphan cancelled after the lift",
        40,
    )
    first = min(r.received_ms for r in rnd.writes_since(t_lift) if r.executed)
    figures["first_write_after_lift_ms"] = first - t_lift
    return figures


@pytest.mark.parametrize("rollback", ROLLBACKS)
async def test_a_rollback_on_one_instance_holds_on_every_instance_until_lifted(
    make_cluster: Callable[..., Awaitable[Any]], rollback: Rollback
) -> None:
    keys = {f"key-{n}": f"secret-{n}" for n in NAMES}
    cluster = await make_cluster(lease_ttl_s=LEASE_TTL_S, more_keys=keys)
    cluster.instance_env = {
        n: {"GRINDER_SIM_API_KEY": f"key-{n}", "GRINDER_SIM_API_SECRET": f"secret-{n}"}
        for n in NAMES
    }
    await cluster.start(*NAMES)
    leader = await cluster.wait_leader()
    rnd = Round(cluster)
    drift = asyncio.create_task(rnd.drift())
    try:
        await wait_until_async(
            lambda: any(r.executed for r in cluster.sim.exchange.write_log.records),
            "the first orphan cancelled (the deployment is live)",
            30,
        )
        follower = next(n for n in NAMES if n != leader)  # given on a follower's socket
        figures = await _a_rollback_round(rnd, rollback, follower)
    finally:
        drift.cancel()
    print(f"\nHA operator state, {rollback.name}: {figures}")


def test_control_straight_into_redis_never_prints_its_password(
    redis_servers: Callable[..., Any], cli: Any, tmp_path: Any
) -> None:
    secret = "s3cret-pass-42"
    server = redis_servers(password=secret)
    url = server.url
    no_instance = tmp_path / "run"  # no control socket on this "host"

    def control(*args: str, code: int, **env: str) -> Any:
        proc = cli.run("grinder.cli", "control", *args, env=cli.env(runtime_dir=no_instance, **env))
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert secret not in proc.stdout + proc.stderr
        if code != 0:
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1, proc.stderr
            return lines[0]
        return json.loads(proc.stdout)

    given = control("disarm", "--redis-url", url, "--reason", "drill", code=0)
    assert given["recorded"] == f"redis://:***@127.0.0.1:{server.port}/0 key grinder:operator"
    assert (given["field"], given["old"], given["new"]) == ("armed", None, False)
    shown = control("status", "--redis-url", url, code=0)
    assert shown["rollbacks"][0].startswith("disarm by ")
    assert "(reason: drill)" in shown["rollbacks"][0]
    assert "lift: unknown name 'bogus'" in control("lift", "bogus", "--redis-url", url, code=2)
    assert "lift it first: grinder control lift disarm" in control(
        "arm", "--redis-url", url, code=2
    )
    # Without --socket and with no instance on this host, GRINDER_REDIS_URL is where it goes.
    lifted = control("lift", "all", code=0, GRINDER_REDIS_URL=url)
    assert lifted["lifted"] == ["armed"]
    bad = control("disarm", "--redis-url", f"redis://:{secret}@127.0.0.1:0/0", code=2)
    assert "expected a port from 1 to 65535" in bad
    server.kill()
    down = control("disarm", "--redis-url", url, code=1)
    assert down.startswith("grinder: error: not recorded:")
    assert "redis://:***@127.0.0.1" in down
