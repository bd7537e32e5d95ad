"""A rollback holds on a service running alone: through reload, SIGHUP and restart, until lifted.

One ``scripts.run_live_reconcile`` subprocess against an in-process simulator, every live gate
open (environment), a bot keeping its expected-state file live, and an orphan order of ours
placed every second. A rollback is given with ``grinder control``; from its reply on, the
simulator's write log (every write it received, with its time) must show no write at all --
through a reload with a config file that says live, a SIGHUP and a restart -- and after
``grinder control lift`` the next orphan is cancelled. The operator state lives in
``operator_state.json`` beside ``BUDGET_STATE_PATH``; a corrupt one refuses the start.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from grinder.clock import wall_clock_ms
from grinder.exchange.simulator import SimConfig, SimulatorServer
from grinder.exchange.simulator.client import SimControl
from tests.support.ids import ours
from tests.support.recorder import RecorderBot
from tests.support.wait import wait_until_async

pytestmark = [pytest.mark.subprocess]

CONFIG = """\
[reconcile]
action = "cancel_all"
order_grace_ms = 150
symbol_whitelist = ["BTCUSDT"]
cooldown_seconds = 0
max_calls_per_day = 100000
max_notional_per_day = 100000000
max_calls_per_run = 50
max_orders_per_action = 50
{extra}
[service]
full_pass_interval_s = 0.25
{service}
"""
LIVE_FILE = CONFIG.format(extra="dry_run = false\n", service="armed = true\n")


@dataclass(frozen=True)
class Rollback:
    """One of the four rollbacks: the command, the setting it holds, how the leader's runs
    show it (a block reason, or ``planned`` for dry-run), and its name for ``lift``."""

    argv: tuple[str, ...]
    field: str
    shows: str
    name: str


ROLLBACKS = [
    Rollback(("disarm",), "armed", "not_armed", "disarm"),
    Rollback(("set", "action", "none"), "action", "action_is_none", "action-none"),
    Rollback(("set", "dry_run", "true"), "dry_run", "planned", "dry-run"),
    Rollback(("deny-mainnet",), "allow_mainnet_trade", "env_var_missing", "deny-mainnet"),
]


class Alone:
    """The service, its files, the simulator and the bot."""

    def __init__(self, tmp: Path, sim: SimulatorServer, cli: Any) -> None:
        self.tmp = tmp
        self.sim = sim
        self.cli = cli
        self.config = tmp / "grinder.toml"
        self.config.write_text(CONFIG.format(extra="", service=""))
        self.state_dir = tmp / "state"
        self.runtime = tmp / "run"
        self.socket = self.runtime / "grinder" / "control.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.metrics_url: str | None = None
        self.orphans = 0

    def env(self) -> dict[str, str]:
        env: dict[str, str] = self.cli.env(
            scripts=True,
            runtime_dir=self.runtime,
            RECONCILE_DRY_RUN="0",
            RECONCILE_ALLOW_ACTIVE="1",
            ARMED="1",
            ALLOW_MAINNET_TRADE="1",
            BUDGET_STATE_PATH=str(self.state_dir / "budget.json"),
        )
        return env

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "scripts.run_live_reconcile",
            "--venue",
            "sim",
            "--venue-url",
            self.sim.base_url,
            "--config",
            str(self.config),
            "--expected-db",
            str(self.tmp / "expected.db"),
            "--metrics-port",
            "0",
            "--audit-out",
            str(self.tmp / "audit.jsonl"),
        ]

    async def start(self) -> None:
        self.starts += 1
        self.metrics_url = None
        out = (self.tmp / f"stdout-{self.starts}.log").open("wb")
        err = (self.tmp / f"stderr-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            self.argv(), cwd=self.tmp, env=self.env(), stdout=out, stderr=err
        )
        out.close()
        err.close()

        def started() -> str | None:
            assert self.proc is not None
            assert self.proc.poll() is None, self.logs()[-3000:]
            text = (self.tmp / f"stdout-{self.starts}.log").read_text(errors="replace")
            for line in text.splitlines():
                if line.startswith("metrics: "):
                    return line.split(" ", 1)[1].strip()
            return None

        self.metrics_url = await wait_until_async(started, "the service's metrics line", 30)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)

    def logs(self) -> str:
        return "".join(
            (self.tmp / f"stderr-{n}.log").read_text(errors="replace")
            for n in range(1, self.starts + 1)
        )

    async def metric(self, name: str, **labels: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        assert self.metrics_url is not None
        async with aiohttp.ClientSession() as session, session.get(self.metrics_url) as resp:
            text = await resp.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    async def shows(self, what: str) -> float:
        if what == "planned":
            return await self.metric("grinder_reconcile_action_planned_total", action="cancel_all")
        return await self.metric("grinder_reconcile_action_blocked_total", reason=what)

    async def control(self, *args: str, code: int = 0) -> Any:
        proc = await asyncio.to_thread(
            self.cli.run, "grinder.cli", "control", *args, "--socket", str(self.socket)
        )
        assert proc.returncode == code, proc.stdout + proc.stderr
        return json.loads(proc.stdout) if code == 0 else proc

    def writes_since(self, t_ms: int) -> list[Any]:
        return [r for r in self.sim.exchange.write_log.records if r.received_ms >= t_ms]

    async def drift(self) -> None:
        """An orphan order of ours every second, as a crashed bot would leave them."""
        async with SimControl(self.sim.base_url) as ctl:
            while True:
                self.orphans += 1
                await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", ours(900 + self.orphans))
                await asyncio.sleep(1.0)


@pytest.fixture
async def alone(tmp_path: Path, cli: Any) -> AsyncIterator[Alone]:
    sim = SimulatorServer(port=0, seed=3, symbols=["BTCUSDT"], config=SimConfig(walk_frozen=True))
    await sim.start()
    bot = RecorderBot(tmp_path / "expected.db", every_s=0.2)
    rig = Alone(tmp_path, sim, cli)
    try:
        yield rig
    finally:
        if rig.proc is not None and rig.proc.poll() is None:
            rig.proc.kill()
            rig.proc.wait(timeout=10)
        bot.stop()
        await sim.stop()


async def grows(read: Callable[[], Any], by: float, what: str) -> None:
    """Until ``read()`` has grown by ``by`` from now (runs have seen that many more orphans)."""
    start = await read()

    async def grown() -> bool:
        return bool(await read() >= start + by)

    await wait_until_async(grown, what, 30)


async def _reload_twice(alone: Alone, rollback: Rollback) -> None:
    """A reload whose file says live, then a SIGHUP: the rollback holds, the reply says so."""
    alone.config.write_text(LIVE_FILE)
    reloaded = await alone.control("reload")
    assert rollback.field in [h["field"] for h in reloaded["held"]], reloaded
    gate5 = reloaded["allow_mainnet_trade"]
    assert gate5["source"] == ("rollback" if rollback.field == "allow_mainnet_trade" else "env")
    assert "CONFIG_HELD" in alone.logs()
    assert alone.proc is not None
    alone.proc.send_signal(signal.SIGHUP)
    await wait_until_async(
        lambda: alone.logs().count("CONFIG_RELOADED source=sighup") >= 1, "the SIGHUP reload"
    )


async def _restart(alone: Alone, rollback: Rollback) -> None:
    """A restart: the file next to the budget state holds it, and the start says so."""
    assert alone.stop() == 0
    await alone.start()
    assert f"CONFIG_HELD source=start field={rollback.field} " in alone.logs()
    status = await alone.control("status")
    assert status["operator"]["rollbacks"] == [rollback.name]
    setting = status["settings"][rollback.field]
    assert (setting["source"], setting["reason"]) == ("rollback", "incident 42")


async def _lift(alone: Alone, rollback: Rollback) -> None:
    """``lift``: the next orphan is cancelled; the rollback and the lift are both audited."""
    lifted = await alone.control("lift", rollback.name, "--reason", "resolved")
    assert lifted["lifted"] == [rollback.field]
    t_lift = wall_clock_ms()
    await wait_until_async(
        lambda: any(r.executed for r in alone.writes_since(t_lift)),
        "an orphan cancelled after the lift",
        30,
    )
    audit = [json.loads(x) for x in (alone.tmp / "audit.jsonl").read_text().splitlines()]
    words = [
        (a["kind"], a["field"], a["reason"]) for a in audit if a["event_type"] == "OPERATOR_WORD"
    ]
    assert words == [
        ("rollback", rollback.field, "incident 42"),
        ("lift", rollback.field, "resolved"),
    ]
    lifts = [
        a for a in audit if a["event_type"] == "CONTROL_CHANGE" and a.get("reason") == "resolved"
    ]
    assert lifts
    assert all("@" in a["by"] for a in lifts)


@pytest.mark.parametrize("rollback", ROLLBACKS, ids=[r.name for r in ROLLBACKS])
async def test_a_rollback_holds_through_reload_sighup_and_restart_until_lifted(
    alone: Alone, rollback: Rollback
) -> None:
    await alone.start()
    drift = asyncio.create_task(alone.drift())
    try:
        await wait_until_async(
            lambda: any(r.executed for r in alone.sim.exchange.write_log.records),
            "the first orphan cancelled (the service is live)",
            30,
        )
        reply = await alone.control(*rollback.argv, "--reason", "incident 42")
        t0 = wall_clock_ms()
        assert (reply["field"], reply["kind"], reply["reason"]) == (
            rollback.field,
            "rollback",
            "incident 42",
        )
        assert "@" in reply["by"]
        saved = json.loads((alone.state_dir / "operator_state.json").read_text())
        assert saved["words"][rollback.field]["reason"] == "incident 42"
        shown = f"{rollback.shows} while {rollback.name} stands"
        await grows(lambda: alone.shows(rollback.shows), 2, shown)
        await _reload_twice(alone, rollback)
        await grows(lambda: alone.shows(rollback.shows), 2, f"{shown}, after the reloads")
        await _restart(alone, rollback)
        await grows(lambda: alone.shows(rollback.shows), 2, f"{shown}, after the restart")
        assert alone.writes_since(t0) == [], "a write reached the exchange after the rollback"
        await _lift(alone, rollback)
    finally:
        drift.cancel()
    print(
        f"\nalone {rollback.name}: orphans placed={alone.orphans}, writes after the rollback "
        f"before the lift=0, starts={alone.starts}"
    )


async def test_a_corrupt_operator_state_file_refuses_the_start(alone: Alone) -> None:
    alone.state_dir.mkdir(parents=True)
    state = alone.state_dir / "operator_state.json"
    state.write_text('{"schema_version": 1, "id": "x", "revision": "seven", "words": {}}')
    proc = await asyncio.to_thread(
        subprocess.run,
        alone.argv(),
        cwd=alone.tmp,
        env=alone.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(state) in lines[0]
    assert "revision must be a positive integer" in lines[0]
    assert state.read_text().startswith('{"schema_version": 1, "id": "x"')  # left as it was


async def test_bad_control_input_is_one_line_and_changes_nothing(alone: Alone) -> None:
    await alone.start()
    await alone.control("disarm", "--reason", "incident 42")
    state = alone.state_dir / "operator_state.json"
    before = state.read_text()
    cases = [
        (("lift", "bogus"), "lift: unknown name 'bogus'; expected a rollback (action-none"),
        (("lift", "deny-mainnet"), "nothing to lift: the rollback deny-mainnet does not stand"),
        (("lift", "max_orders_per_action"), "nothing to lift: no operator word on"),
        (("arm",), "the rollback disarm stands on armed (by "),
        (("set", "dry_run", "yes"), "dry_run: expected true/false (or 1/0), got 'yes'"),
        (("set", "armd", "1"), "unknown field 'armd'"),
        (("disarm", "--reason", "two\nlines"), "--reason: expected one line of at most 200"),
        (("disarm", "--redis-url", "redis://:pw@h:1/0"), "--socket and --redis-url: give one"),
    ]
    for args, message in cases:
        proc = await alone.control(*args, code=2)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (args, proc.stderr)
        assert message in lines[0], (args, lines[0])
        assert proc.stdout == ""
    assert state.read_text() == before  # nothing recorded
    status = await alone.control("status")
    assert status["operator"]["rollbacks"] == ["disarm"]
    assert status["settings"]["armed"]["reason"] == "incident 42"


async def test_a_lone_service_takes_the_word_even_from_a_shell_with_a_redis_url(
    alone: Alone,
) -> None:
    """Without --socket, the host's own instance takes the word: a GRINDER_REDIS_URL left in the
    shell must not send a lone service's rollback to a Redis it never reads."""
    await alone.start()
    env = alone.cli.env(runtime_dir=alone.runtime, GRINDER_REDIS_URL="redis://127.0.0.1:1/0")
    proc = await asyncio.to_thread(alone.cli.run, "grinder.cli", "control", "disarm", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["recorded"] == str(alone.state_dir / "operator_state.json")
