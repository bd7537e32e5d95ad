"""``grinder expected adopt`` against a running simulator, writing a real SQLite file."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from grinder.exchange.simulator import SimulatorServer
from grinder.reconcile.types import PositionSide
from grinder.state.sqlite import SqliteExpectedStore

OURS = "grinder_d_BTCUSDT_1_1800000000_1"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer(port=0, symbols=["BTCUSDT", "ETHUSDT"])
    await server.start()
    yield server
    await server.stop()


async def control(sim: SimulatorServer, path: str, body: dict[str, str]) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.base_url}/_sim{path}", json=body) as resp,
    ):
        assert resp.status == 200, await resp.text()


def adopt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRINDER_")}
    return subprocess.run(
        [sys.executable, "-m", "grinder.cli", "expected", "adopt", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


async def test_adopt_records_ours_and_positions_but_never_foreign_orders(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    for cid in (OURS, "web_manual_1", "autoclose-123"):
        await control(
            sim,
            "/orders",
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "0.002",
                "price": "20000",
                "timeInForce": "GTC",
                "clientOrderId": cid,
            },
        )
    await control(sim, "/positions", {"symbol": "ETHUSDT", "quantity": "-0.100"})
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


def test_adopt_without_yes_outside_a_terminal_refuses(tmp_path: Path) -> None:
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


def test_adopt_sim_without_url_is_a_usage_error(tmp_path: Path) -> None:
    proc = adopt("--expected-db", str(tmp_path / "x.db"), "--yes")
    assert proc.returncode == 2
    assert "--venue-url" in proc.stderr
