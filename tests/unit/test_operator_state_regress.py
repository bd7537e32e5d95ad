"""An operator state read back at an older revision of the same document is a loss.

A Redis restarted from its last RDB snapshot (or an ``appendfsync everysec`` crash, or a
replica that missed the last write) hands back the document as it was before the latest
words: a ``disarm`` given after the snapshot is gone from it. An instance that knew the
newer revision must not adopt the older one: it restores the words it knew and marks the
state lost (gate O blocks) until an operator re-asserts or lifts them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from grinder.cli.operator_redis import _nothing_to_apply
from grinder.operator.decide import SetWord, judge
from grinder.operator.state import Stamp
from grinder.operator.stores import MemoryOperatorStore
from grinder.reconcile.config import ReconcileConfig
from grinder.service.configured import settings_of
from grinder.service.operator import OperatorControl
from grinder.service.settings import check_settings

NOW = 1_700_000_000_000


def control(store: Any, name: str) -> OperatorControl:
    c = OperatorControl(
        store,
        instance=name,
        clock=lambda: NOW,
        apply=_nothing_to_apply,
        check=check_settings,
    )
    c.start(settings_of(ReconcileConfig(), True, False, {}))
    return c


def test_an_older_revision_of_the_same_document_is_a_loss() -> None:
    store = MemoryOperatorStore()
    leader = control(store, "leader")
    asyncio.run(leader.command(SetWord("max_orders_per_action", 1, Stamp("a@h", 1))))
    snapshot = store.read()  # what a snapshot taken now holds
    asyncio.run(leader.command(SetWord("armed", False, Stamp("op@h", 2, "incident"))))
    memory = leader._memory
    assert memory is not None
    reading = judge(memory, snapshot, instance="leader", now_ms=NOW, new_id="x", where="store")
    assert reading.state.word("armed") is not None  # the disarm is restored
    assert reading.state.lost is not None
    assert "went back to revision" in reading.state.lost.detail
    assert reading.write is not None  # written back, so every instance blocks


def test_an_older_revision_that_lost_nothing_is_taken_as_it_is() -> None:
    store = MemoryOperatorStore()
    leader = control(store, "leader")
    asyncio.run(leader.command(SetWord("armed", False, Stamp("op@h", 1))))
    asyncio.run(leader.command(SetWord("max_orders_per_action", 2, Stamp("op@h", 2))))
    older = store.read()  # every field the later revision has is in it
    asyncio.run(leader.command(SetWord("max_orders_per_action", 1, Stamp("op@h", 3))))
    memory = leader._memory
    assert memory is not None
    reading = judge(memory, older, instance="leader", now_ms=NOW, new_id="x", where="store")
    assert reading.state.lost is None  # every word it knew is still there


@pytest.mark.redis
def test_a_redis_restarted_from_its_snapshot_blocks_until_reasserted(
    redis_servers: Any, tmp_path: Path
) -> None:
    from grinder.ha.connection import RedisConnection
    from grinder.ha.operator import RedisOperatorStore

    conf = tmp_path / "redis.conf"
    conf.write_text('save ""\nappendonly no\ndbfilename snapshot.rdb\n')
    server = redis_servers(config_file=conf)
    conn = RedisConnection(server.url, namespace="g", timeout_s=1)
    try:
        leader = control(RedisOperatorStore(conn), "leader")
        asyncio.run(leader.command(SetWord("max_orders_per_action", 1, Stamp("a@h", 1))))
        client = server.client()
        client.save()  # the snapshot: before the disarm
        client.close()
        reply = asyncio.run(leader.command(SetWord("armed", False, Stamp("op@h", 2, "incident"))))
        assert reply["kind"] == "rollback"
        server.kill()  # a crash after the disarm: the snapshot does not hold it
        server.restart()
        leader.begin_write()  # the leader's next write reads the store
        leader.end_write()
        assert leader.state.word("armed") is not None
        assert leader.problem is not None  # gate O: nothing is written until re-asserted
    finally:
        conn.close()
