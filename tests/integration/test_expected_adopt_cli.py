"""``grinder expected adopt`` against a running simulator, writing a real SQLite file."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from grinder.exchange.simulator import SimulatorServer
from grinder.exchange.simulator.client import SimControl
from grinder.reconcile.types import PositionSide
from grinder.state.recorder import ExpectedRecorder
from grinder.state.sqlite import SqliteExpectedStore

pytestmark = pytest.mark.subprocess

OURS = "grinder_d_BTCUSDT_1_1800000000_1"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer(port=0, symbols=["BTCUSDT", "ETHUSDT"])
    await server.start()
    yield server
    await server.stop()


Adopt = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def adopt(cli: Any) -> Adopt:
    """``grinder expected adopt ARGS``, with no terminal on stdin."""

    def adopt(*args: str) -> subprocess.CompletedProcess[str]:
        return cli.run("grinder.cli", "expected", "adopt", *args)

    return adopt


async def test_adopt_records_ours_and_positions_but_never_foreign_orders(
    sim: SimulatorServer, tmp_path: Path, adopt: Adopt
) -> None:
    async with SimControl(sim.base_url) as ctl:
        for cid in (OURS, "web_manual_1", "autoclose-123"):
            await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)
        await ctl.call("POST", "/positions", {"symbol": "ETHUSDT", "quantity": "-0.100"})
    db = tmp_path / "expected.db"
    proc = await asyncio.to_thread(
        adopt, "--expected-db", str(db), "--venue", "sim", "--venue-url", sim.base_url, "--yes"
    )
    assert proc.returncode == 0, proc.stderr
    assert "EXPECTED_ADOPT orders_adopted=1 " in proc.stdout
    assert "leave alone      web_manual_1 (no_grinder_prefix)" in proc.stdout
    with SqliteExpectedStore(db) as store:
        assert [o.client_order_id for o in store.orders()] == [OURS]
        pos = store.get_position(("ETHUSDT", PositionSide.BOTH))
        assert pos is not None
        assert pos.qty == Decimal("-0.100")
        # Adopting created the file (the explicit choice) but is not a bot: the state is not
        # live until the bot writes or heartbeats.
        assert store.bot_heartbeat_ms is None
    assert "The bot heartbeat is left as it was" in proc.stdout


async def test_adopting_leaves_a_bots_heartbeat_as_it_was(
    sim: SimulatorServer, tmp_path: Path, adopt: Adopt
) -> None:
    db = tmp_path / "expected.db"
    with ExpectedRecorder(db, clock=lambda: 1_700_000_000_000) as bot:
        bot.heartbeat()
    async with SimControl(sim.base_url) as ctl:
        await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", OURS)
    proc = await asyncio.to_thread(
        adopt, "--expected-db", str(db), "--venue", "sim", "--venue-url", sim.base_url, "--yes"
    )
    assert proc.returncode == 0, proc.stderr
    with SqliteExpectedStore(db, readonly=True) as store:
        assert [o.client_order_id for o in store.orders()] == [OURS]
        assert store.bot_heartbeat_ms == 1_700_000_000_000


def test_adopt_without_yes_outside_a_terminal_refuses(tmp_path: Path, adopt: Adopt) -> None:
    proc = adopt(
        "--expected-db",
        str(tmp_path / "x.db"),
        "--venue",
        "sim",
        "--venue-url",
        "http://127.0.0.1:9",
    )
    assert proc.returncode == 2
    assert "--yes" in proc.stderr
    assert not (tmp_path / "x.db").exists()


def test_adopt_sim_without_url_is_a_usage_error(tmp_path: Path, adopt: Adopt) -> None:
    proc = adopt("--expected-db", str(tmp_path / "x.db"), "--yes")
    assert proc.returncode == 2
    assert "--venue-url" in proc.stderr


def test_adopt_into_a_file_that_is_not_an_expected_state_database_is_exit_2(
    tmp_path: Path, adopt: Adopt
) -> None:
    foreign = tmp_path / "passwd"
    foreign.write_text("root:x:0:0:root:/root:/bin/bash\n")
    proc = adopt("--expected-db", str(foreign), "--venue-url", "http://127.0.0.1:9", "--yes")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"grinder: error: --expected-db: expected-state database {foreign}")
    assert foreign.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
