"""Several service instances with HA on, against one simulator and one real ``redis-server``.

The Redis server is the ``redis_server`` fixture of tests/conftest.py: Debian's ``redis-server``
on a free loopback port, without persistence (``--save "" --appendonly no``), as the tests of
data loss require; ``kill()`` / ``restart()`` take it down and bring it back on the same port.
bin/test installs it when it is missing; without it these tests fail with a clear message when
``CI=true`` and are skipped otherwise.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import LEASE_TTL_S, Cluster
from tests.support.ids import ours


@pytest.fixture
def ours_id() -> Callable[..., str]:
    """``ours_id(seq, symbol="BTCUSDT")``: ``tests.support.ids.ours``."""
    return ours


@pytest.fixture
async def make_cluster(
    tmp_path: Path, redis_server: Any, cli: Any
) -> AsyncIterator[Callable[..., Awaitable[Cluster]]]:
    """``await make_cluster(lease_ttl_s=…, bot=True, **SimConfig fields)``; everything stopped
    after. ``bot``: a bot heartbeats the expected state in Redis (gate E)."""
    made: list[Cluster] = []
    sockets = Path(tempfile.mkdtemp(prefix="gha-", dir="/tmp"))  # short: Unix socket paths

    async def factory(
        *, lease_ttl_s: float = LEASE_TTL_S, bot: bool = True, **sim_config: Any
    ) -> Cluster:
        c = Cluster(tmp_path, sockets, redis_server, cli, lease_ttl_s=lease_ttl_s)
        await c.start_sim(**sim_config)
        made.append(c)
        if bot:
            c.start_bot()
        return c

    try:
        yield factory
    finally:
        for c in made:
            await asyncio.to_thread(c.stop_all)
            await c.sim.stop()
        shutil.rmtree(sockets, ignore_errors=True)


@pytest.fixture
async def cluster(make_cluster: Callable[..., Awaitable[Cluster]]) -> Cluster:
    return await make_cluster()
