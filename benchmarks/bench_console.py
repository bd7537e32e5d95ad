"""The console page: its model and HTML alone, and what one request costs under HA.

    .venv/bin/python -m benchmarks.bench_console [--quick] [--incidents N]
    .venv/bin/python -m benchmarks.bench_console --ha [--counts 10,100,1000] [--requests K]

Render (default): the median time of one render (model + HTML) of N open incidents, without
gate chains, and the page's size.

``--ha``: the whole request as an operator's browser makes it. A real ``redis-server`` (a
private one on a free port, no persistence), the simulator in this process and two service
processes with HA on (``scripts.run_live_reconcile``, service defaults, short grace periods).
For each count N, N orphan orders of ours stand on the venue (no bot heartbeats: every
remediation is blocked at gate E), so the leader's ledger holds N open incidents and every
page evaluates N gate chains. ``GET /console`` K times in a row on the leader, then on the
follower: the median and the worst time per request, the page's size, the instance's CPU time
per request (``/proc/PID/stat``: less sensitive than the wall time to other load on the
machine) and the Redis commands per request (``INFO commandstats``); both less the
instance's own background rate, measured just before over an idle window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from grinder.console.page import Masker, console_page, incident_view
from grinder.console.render import render_console
from grinder.incidents.records import Evidence, IncidentRecord
from grinder.reconcile.labels import IncidentCause
from grinder.reconcile.types import MismatchType

STATUS = {
    "venue": "sim",
    "mode": "dry_run",
    "armed": False,
    "ha": {"enabled": False, "leader": True},
    "budget": {"calls_remaining_day": 5, "notional_remaining_day": "500"},
    "settings": {"armed": {"value": False, "source": "default"}},
    "operator": {"rollbacks": [], "words": []},
}


def records(n: int) -> list[IncidentRecord]:
    return [
        IncidentRecord(
            id=f"INC-{i:010d}",
            type=MismatchType.POSITION_NONZERO_UNEXPECTED,
            symbol="BTCUSDT",
            subject="BOTH",
            first_seen_ms=1_700_000_000_000 + i,
            last_seen_ms=1_700_000_000_000 + i,
            opened_run_id="r",
            cause=IncidentCause.MANUAL,
            evidence=(Evidence("fill", "order web_x filled 0.01", i, (("qty", "0.01"),)),),
        )
        for i in range(n)
    ]


def render_only(args: argparse.Namespace) -> None:
    recs = records(args.incidents)
    rounds = 3 if args.quick else 10
    times, size = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        now = 1_700_000_100_000
        mask = Masker()  # one per page, as the console's routes do
        views = [incident_view(r, "no remediation: alert_only", now, mask) for r in recs]
        html = render_console(console_page(STATUS, views, [], now))
        times.append(time.perf_counter() - start)
        size = len(html)
    median_ms = statistics.median(times) * 1000
    print(
        f"console render: {args.incidents} open incidents, median {median_ms:.1f} ms "
        f"over {rounds} rounds, page {size / 1024:.0f} KiB"
    )


# --- under HA: whole requests to service processes -------------------------------------------

HA_SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT"]
HA_CONFIG = """\
[reconcile]
order_grace_ms = 150
position_grace_ms = 150

[ha]
lease_ttl_s = 3
"""
IDLE_S = 3.0


def cpu_ms(pid: int) -> float:
    """The CPU time (user + system) process ``pid`` has used so far, in ms (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def redis_calls(client: Any) -> int:
    """Every command the server ran so far, less the ``INFO`` calls that read it."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


async def place_orphans(sim: Any, n: int) -> None:
    from benchmarks.common import our_client_id, resting_order
    from grinder.exchange.simulator import CATALOG
    from grinder.exchange.simulator.client import SimControl

    async with SimControl(sim.base_url) as ctl:
        for i in range(n):
            symbol = HA_SYMBOLS[i % len(HA_SYMBOLS)]
            mark = sim.exchange.book.mark(symbol)
            cid = our_client_id(symbol, i + 1, 1_800_000_000)
            await ctl.call(
                "POST", "/orders", resting_order(CATALOG[symbol], mark, "BUY", Decimal("0.2"), cid)
            )


async def requests_to(inst: Any, client: Any, k: int) -> tuple[list[float], float, float, int]:
    """K requests of ``/console``: their times (ms), the instance's CPU ms and the Redis
    commands per request (each less its rate over an idle window just before), page size."""
    pid = inst.proc.pid
    c0, p0, t0 = redis_calls(client), cpu_ms(pid), time.monotonic()
    await asyncio.sleep(IDLE_S)
    idle_s = time.monotonic() - t0
    background = (redis_calls(client) - c0) / idle_s
    cpu_background = (cpu_ms(pid) - p0) / idle_s
    times, size = [], 0
    c1, p1, t1 = redis_calls(client), cpu_ms(pid), time.monotonic()
    for _ in range(k):
        start = time.perf_counter()
        page = await inst.get("/console", timeout_s=60)
        times.append((time.perf_counter() - start) * 1000)
        if page is None or "GRINDER console" not in page:
            raise RuntimeError(f"{inst.name}: no console page")
        size = len(page)
    took_s = time.monotonic() - t1
    used = redis_calls(client) - c1 - background * took_s
    cpu = cpu_ms(pid) - p1 - cpu_background * took_s
    return times, cpu / k, used / k, size


async def ha_round(work: Path, redis: Any, n: int, k: int) -> None:
    from grinder.exchange.simulator import SimConfig, SimulatorServer
    from grinder.ha.connection import RedisConnection
    from grinder.incidents.redis_store import RedisIncidentStore
    from tests.support.cli import Cli
    from tests.support.cluster import Cluster
    from tests.support.wait import wait_until_async

    client = redis.client()
    client.flushall()
    sockets = Path(tempfile.mkdtemp(prefix="bcon-", dir="/tmp"))
    (work / f"n{n}").mkdir()
    cluster = Cluster(work / f"n{n}", sockets, redis, Cli(), lease_ttl_s=3)
    cluster.config_path.write_text(HA_CONFIG)
    cluster.sim = SimulatorServer(
        port=0, seed=7, symbols=HA_SYMBOLS, config=SimConfig(walk_frozen=True)
    )
    await cluster.sim.start()
    store = RedisIncidentStore(RedisConnection(redis.url, namespace="grinder"))
    try:
        await cluster.start("A", "B")
        leader = await cluster.wait_leader(timeout_s=30)
        follower = "B" if leader == "A" else "A"
        await place_orphans(cluster.sim, n)

        async def every_chain_shown(name: str) -> bool:
            page = await cluster.instances[name].get("/console", timeout_s=60)
            return page is not None and page.count("gate chain</summary>") == n

        await wait_until_async(
            lambda: len(store.summaries(open_only=True)) == n, f"{n} open incidents", 600
        )
        for name in (leader, follower):
            await wait_until_async(
                lambda name=name: every_chain_shown(name), f"{n} chains on {name}", 600
            )
        for role, name in (("leader", leader), ("follower", follower)):
            times, cpu, cmds, size = await requests_to(cluster.instances[name], client, k)
            print(
                f"{n:>6} {role:>9} {statistics.median(times):>10.1f} {max(times):>9.1f} "
                f"{cpu:>12.1f} {cmds:>14.1f} {size / 1024:>8.0f}"
            )
    finally:
        store.conn.close()
        await asyncio.to_thread(cluster.stop_all)
        await cluster.sim.stop()
        client.close()
        shutil.rmtree(sockets, ignore_errors=True)


async def under_ha(args: argparse.Namespace) -> None:
    from tests.support.cli import Cli, find_tool
    from tests.support.redis_server import RedisServer

    counts = [int(c) for c in args.counts.split(",")]
    binary = find_tool("redis-server")
    if binary is None:
        raise SystemExit("bench_console --ha: no redis-server (Debian's redis-server package)")
    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    redis = RedisServer(binary, work / "redis", Cli.free_port())
    redis.start()
    print(f"console under HA: GET /console x{args.requests} per instance, 2 instances, Redis")
    heads = ("open", "instance", "median ms", "worst ms", "CPU ms/req", "redis cmds/req", "KiB")
    print("{:>6} {:>9} {:>10} {:>9} {:>12} {:>14} {:>8}".format(*heads))
    try:
        for n in counts:
            await ha_round(work, redis, n, args.requests)
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--ha", action="store_true", help="whole requests under HA (Redis)")
    parser.add_argument("--counts", default="10,100,1000", help="open incidents per round (--ha)")
    parser.add_argument("--requests", type=int, default=10, help="requests per instance (--ha)")
    args = parser.parse_args()
    if args.ha:
        asyncio.run(under_ha(args))
    else:
        render_only(args)


if __name__ == "__main__":
    main()
