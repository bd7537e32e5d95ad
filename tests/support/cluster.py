"""Several service instances with HA on, against one simulator and one real ``redis-server``:
``Cluster`` (the deployment), ``Instance`` (one ``scripts.run_live_reconcile`` process),
``HeartbeatBot`` (the bot's heartbeat in Redis, gate E). ``tests/ha/conftest.py`` offers
them as the ``make_cluster`` and ``cluster`` fixtures.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from grinder.exchange.simulator.client import SimControl

# --- several service instances against one simulator and one Redis --------------------------

LEASE_TTL_S = 1.5

CONFIG_TOML = """\
[reconcile]
action = "flatten"
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

[ha]
lease_ttl_s = {lease}
redis_timeout_s = 0.2
"""


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


class Instance:
    """One ``scripts.run_live_reconcile`` subprocess with HA on."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.dir = cluster.workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_url: str | None = None
        self.starts = 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def stdout_path(self) -> Path:
        return self.dir / f"stdout-{self.starts}.log"

    @property
    def stderr_path(self) -> Path:
        return self.dir / f"stderr-{self.starts}.log"

    def logs(self) -> str:
        return "".join(
            (self.dir / f"stderr-{n}.log").read_text(errors="replace")
            for n in range(1, self.starts + 1)
            if (self.dir / f"stderr-{n}.log").exists()
        )

    def start(self) -> None:
        assert not self.alive
        self.starts += 1
        self.metrics_url = None
        env = self.cluster.cli.env(
            scripts=True,
            runtime_dir=self.cluster.sockets / self.name,
            RECONCILE_DRY_RUN="0",
            RECONCILE_ALLOW_ACTIVE="1",
            ARMED="1",
            ALLOW_MAINNET_TRADE="1",
            **self.cluster.instance_env.get(self.name, {}),
        )
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scripts.run_live_reconcile",
                    "--venue",
                    "sim",
                    "--venue-url",
                    self.cluster.sim_url,
                    "--redis-url",
                    self.cluster.redis.url,
                    "--instance-id",
                    self.name,
                    "--metrics-port",
                    "0",
                    "--config",
                    str(self.cluster.config_path),
                    "--audit-out",
                    str(self.dir / "audit.jsonl"),
                ],
                cwd=self.dir,
                env=env,
                stdout=out,
                stderr=err,
            )

    def _discover(self) -> None:
        """Pick up the metrics URL the instance prints once its endpoint listens."""
        if self.metrics_url is None and self.stdout_path.exists():
            for line in self.stdout_path.read_text(errors="replace").splitlines():
                if line.startswith("metrics: "):
                    self.metrics_url = line.split(" ", 1)[1].strip()

    async def wait_started(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.metrics_url is None:
            if not self.alive:
                raise AssertionError(f"{self.name} exited:\n{self.logs()[-3000:]}")
            self._discover()
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not start:\n{self.logs()[-3000:]}")
            await asyncio.sleep(0.05)

    def signal(self, sig: int) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """``kill -9``: no clean-up, the lease stays until its TTL runs out."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    async def get(self, path: str, timeout_s: float = 1.0) -> str | None:
        self._discover()
        if not self.alive or self.metrics_url is None:
            return None
        import aiohttp

        url = self.metrics_url.removesuffix("/metrics") + path
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s,
                s.get(url) as resp,
            ):
                return await resp.text()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None

    async def ha(self) -> dict[str, Any] | None:
        import json

        text = await self.get("/readyz")
        if text is None:
            return None
        try:
            data: dict[str, Any] = json.loads(text)["ha"]
        except (ValueError, KeyError):
            return None
        return data

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        text = await self.get("/metrics", timeout_s=2.0)
        return {} if text is None else parse_metrics(text)

    async def metric(self, name: str, **labels: str) -> float:
        return (await self.metrics()).get((name, frozenset(labels.items())), 0.0)


class HeartbeatBot:
    """The bot of the deployment, as far as gate E sees it: it heartbeats the shared expected
    state in Redis every ``every_s`` from its own thread (``RedisExpectedStore(bot=True)``),
    through Redis outages and restarts, until ``stop()`` (``pause()``: it goes silent)."""

    def __init__(self, redis_url: str, *, namespace: str = "grinder", every_s: float = 0.2):
        import threading

        self.redis_url = redis_url
        self.namespace = namespace
        self.every_s = every_s
        self.beats = 0
        self.paused = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat-bot", daemon=True)

    def start(self) -> HeartbeatBot:
        self._thread.start()
        return self

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def _run(self) -> None:
        from grinder.ha.connection import RedisConnection, RedisUnavailable
        from grinder.state.redis_store import RedisExpectedStore

        conn = RedisConnection(self.redis_url, namespace=self.namespace, timeout_s=0.25)
        store = RedisExpectedStore(conn, bot=True, load=False)
        try:
            while not self._stop.is_set():
                if not self.paused:
                    try:
                        store.heartbeat()
                        self.beats += 1
                    except RedisUnavailable:
                        pass  # Redis down: beat again once it answers
                self._stop.wait(self.every_s)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class Cluster:
    """One in-process simulator, one Redis, named service instances, and the bot's heartbeat
    in Redis (``bot``; without it every remediation is blocked with expected_state_stale)."""

    def __init__(
        self,
        workdir: Path,
        sockets: Path,
        redis_server: Any,
        cli: Any,
        *,
        lease_ttl_s: float = LEASE_TTL_S,
    ) -> None:
        self.workdir = workdir
        self.cli = cli
        self.sockets = sockets
        self.redis = redis_server
        self.lease_ttl_s = lease_ttl_s
        self.instances: dict[str, Instance] = {}
        self.instance_env: dict[str, dict[str, str]] = {}
        """Extra environment of each instance by name (e.g. its own simulator API key)."""
        self.sim: Any = None
        self.bot: HeartbeatBot | None = None
        self.config_path = workdir / "grinder.toml"
        self.config_path.write_text(CONFIG_TOML.format(lease=lease_ttl_s))

    @property
    def sim_url(self) -> str:
        url: str = self.sim.base_url
        return url

    async def start_sim(self, **config: Any) -> None:
        from grinder.exchange.simulator import SimConfig, SimulatorServer

        self.sim = SimulatorServer(
            port=0,
            seed=7,
            symbols=["BTCUSDT", "ETHUSDT"],
            config=SimConfig(walk_frozen=True, **config),
        )
        await self.sim.start()

    async def start(self, *names: str) -> list[Instance]:
        started = []
        for name in names:
            inst = self.instances.get(name) or Instance(self, name)
            self.instances[name] = inst
            inst.start()
            started.append(inst)
        for inst in started:
            await inst.wait_started()
        return started

    def live(self) -> list[Instance]:
        return [i for i in self.instances.values() if i.alive]

    async def ha_states(self) -> dict[str, dict[str, Any]]:
        live = self.live()
        states = await asyncio.gather(*(i.ha() for i in live))
        return {i.name: s for i, s in zip(live, states, strict=True) if s is not None}

    async def leaders(self, *, acting: bool = False) -> list[str]:
        key = "acting" if acting else "leader"
        return sorted(n for n, s in (await self.ha_states()).items() if s.get(key))

    async def wait_leader(
        self, timeout_s: float = 10.0, *, exclude: str | None = None, acting: bool = True
    ) -> str:
        """The one leader (``acting``: that has taken its fresh snapshot)."""
        deadline = time.monotonic() + timeout_s
        while True:
            leaders = [n for n in await self.leaders(acting=acting) if n != exclude]
            if len(leaders) == 1:
                return leaders[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no single acting leader in time: {leaders}")
            await asyncio.sleep(0.05)

    async def sim_call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with SimControl(self.sim_url) as ctl:
            return await ctl.call(method, path, body)

    async def sim_state(self) -> Any:
        return await self.sim_call("GET", "/state")

    async def place_orphan(self, cid: str, symbol: str = "BTCUSDT") -> None:
        price = "20000" if symbol == "BTCUSDT" else "1000"
        qty = "0.002" if symbol == "BTCUSDT" else "0.050"
        async with SimControl(self.sim_url) as ctl:
            await ctl.place_order(symbol, "BUY", qty, price, cid)

    def budget_calls(self) -> int:
        import datetime

        day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        client = self.redis.client()
        try:
            raw = client.hget(f"grinder:budget:{day}", "calls")
        finally:
            client.close()
        return int(raw or 0)

    def start_bot(self) -> HeartbeatBot:
        """The bot's heartbeat in Redis, from now on."""
        if self.bot is None:
            self.bot = HeartbeatBot(self.redis.url).start()
        return self.bot

    def stop_all(self) -> None:
        for inst in self.instances.values():
            inst.stop()
        if self.bot is not None:
            self.bot.stop()
