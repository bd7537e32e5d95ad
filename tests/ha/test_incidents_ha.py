"""The incident ledger under HA: one shared ledger in Redis, one writer, through a kill -9.

Two instances (subprocesses) against one simulator and a real ``redis-server``; no bot
keeps the expected state, so every remediation is blocked at gate E and the incidents
stand. The leader opens them, the follower shows them; the leader is killed with
SIGKILL, the other takes over and continues them -- the same ids, no second
``INCIDENT_OPENED`` -- opens the next one and clears one that ends.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from grinder.cli.control import _call as control_call
from grinder.ha.connection import RedisConnection
from grinder.incidents.redis_store import RedisIncidentStore
from tests.support.ids import ours
from tests.support.wait import wait_until_async

pytestmark = [pytest.mark.redis, pytest.mark.subprocess]


def socket_of(cluster: Any, name: str) -> Path:
    return Path(cluster.sockets) / name / "grinder" / "control.sock"


def audit(cluster: Any, name: str, event: str) -> list[dict[str, Any]]:
    path = Path(cluster.workdir) / name / "audit.jsonl"
    if not path.exists():
        return []
    records = [json.loads(x) for x in path.read_text().splitlines()]
    return [r for r in records if r["event_type"] == event]


async def test_a_failover_continues_the_incidents_of_the_shared_ledger(
    make_cluster: Any, redis_server: Any
) -> None:
    cluster = await make_cluster(bot=False)
    await cluster.start("grinder-a", "grinder-b")
    leader = await cluster.wait_leader()
    follower = next(n for n in ("grinder-a", "grinder-b") if n != leader)
    conn = RedisConnection(redis_server.url, namespace="grinder")
    store = RedisIncidentStore(conn)
    try:
        await cluster.place_orphan(ours(1))
        first = await wait_until_async(
            lambda: store.summaries(open_only=True), "the leader opened an incident"
        )
        (incident,) = first
        assert incident.cause.value == "bot_stopped"

        async def follower_lists() -> bool:
            data = await control_call(
                socket_of(cluster, follower), "GET", "/incidents?open=1", None
            )
            return [i["id"] for i in data["incidents"]] == [incident.id]

        # The follower reads the shared ledger after its runs (every 5 s at most).
        await wait_until_async(follower_lists, "the follower lists the leader's incident")
        assert [r["incident_id"] for r in audit(cluster, leader, "INCIDENT_OPENED")] == [
            incident.id
        ]
        assert audit(cluster, follower, "INCIDENT_OPENED") == []

        cluster.instances[leader].signal(signal.SIGSTOP)  # frozen, then killed: no hand-over
        cluster.instances[leader].kill()
        assert await cluster.wait_leader(timeout_s=15, exclude=leader) == follower
        await cluster.place_orphan(ours(2))
        both = await wait_until_async(
            lambda: (s := store.summaries(open_only=True)) and len(s) == 2 and s,
            "the new leader opened the second incident",
        )
        assert incident.id in {s.id for s in both}
        second = next(s for s in both if s.id != incident.id)
        assert [r["incident_id"] for r in audit(cluster, follower, "INCIDENT_OPENED")] == [
            second.id
        ]

        await cluster.sim_call("POST", "/orders/cancel", {"clientOrderId": ours(1)})
        await wait_until_async(
            lambda: (
                [r["incident_id"] for r in audit(cluster, follower, "INCIDENT_CLEARED")]
                == [incident.id]
            ),
            "the new leader cleared the first incident",
        )
        # The audit line is written as the incident clears, the record at the run's end.
        done = await wait_until_async(
            lambda: (r := store.get(incident.id)) is not None and r.cleared_ms is not None and r,
            "the cleared incident stored",
        )
        assert any(s.gates == ("expected_state_stale",) for s in done.steps)
        assert [s.id for s in store.summaries(open_only=True)] == [second.id]
    finally:
        conn.close()
