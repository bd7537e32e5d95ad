"""The countdown cancel as a dead-man switch, with a real client process that hangs and dies.

A heartbeat process re-arms ``countdownCancelAll`` (3 s) every 100 ms against ``grinder sim
serve``. While it beats, the symbol's orders stay; paused with SIGSTOP, the timer runs out
and every open order of the symbol is canceled -- at the deadline its last beat set, as the
write log and the venue's record of the firing show; resumed, it re-arms a timer but the
canceled orders stay canceled; killed with SIGKILL, the timer fires once more, on nothing.
Other symbols' orders are never touched.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.binance_client import BinanceFutures
from tests.support.simulator_process import simulator_process
from tests.support.wait import wait_until_async

KEY = "deadman-key"
SECRET = "deadman-secret"
PATH = "/fapi/v1/countdownCancelAll"
COUNTDOWN_MS = 3000
pytestmark = pytest.mark.subprocess


@pytest.fixture
async def venue(cli: Any) -> AsyncIterator[tuple[BinanceFutures, str]]:
    env = cli.env(GRINDER_SIM_API_KEY=KEY, GRINDER_SIM_API_SECRET=SECRET)
    with simulator_process(env, "--tick-ms", "20") as url:
        async with aiohttp.ClientSession() as session:
            yield BinanceFutures(session, url, KEY, SECRET), url


async def _control(c: BinanceFutures, method: str, path: str, body: Any = None) -> Any:
    async with c.session.request(method, c.base_url + path, json=body or {}) as resp:
        assert resp.status == 200
        return await resp.json()


async def _beats(c: BinanceFutures) -> list[dict[str, Any]]:
    writes = (await _control(c, "GET", f"/_sim/writes?apiKey={KEY}"))["writes"]
    return [w for w in writes if w["path"] == PATH and w["status"] == 200]


async def _open_ids(c: BinanceFutures, symbol: str) -> list[str]:
    return [o["clientOrderId"] for o in await c.ok("GET", "/fapi/v1/openOrders", symbol=symbol)]


async def _firings(c: BinanceFutures) -> list[dict[str, Any]]:
    state = await _control(c, "GET", "/_sim/state")
    firings: list[dict[str, Any]] = state["countdowns"]["firings"]
    return firings


async def test_a_paused_then_killed_heartbeat_cancels_the_symbols_orders_at_its_deadline(
    venue: tuple[BinanceFutures, str], cli: Any
) -> None:
    c, url = venue
    await _control(c, "POST", "/_sim/walk", {"frozen": True})
    await _place(c, "BTCUSDT", "dm-1", "0.010", "60000")
    await _place(c, "BTCUSDT", "dm-2", "0.010", "60100")
    await _place(c, "ETHUSDT", "dm-eth", "0.100", "3000")
    argv = [sys.executable, "-m", "tests.support.countdown_heartbeat", url, KEY, SECRET,
            "BTCUSDT", str(COUNTDOWN_MS), "100", "900"]  # fmt: skip
    beater = subprocess.Popen(
        argv, cwd=cli.repo, env=cli.env(scripts=True), stdout=subprocess.DEVNULL
    )
    try:
        await wait_until_async(
            lambda: _count_at_least(c, 35), "35 beats (3.5 s of a 3 s countdown)", 30
        )
        times = [b["receivedMs"] for b in await _beats(c)]
        gap = max(b - a for a, b in itertools.pairwise(times))
        assert gap < COUNTDOWN_MS, f"the heartbeat process was starved ({gap} ms between beats)"
        assert await _open_ids(c, "BTCUSDT") == ["dm-1", "dm-2"], "canceled while beating"
        assert await _firings(c) == []
        os.kill(beater.pid, signal.SIGSTOP)
        fired = await wait_until_async(lambda: _firings(c), "the countdown to fire")
        last_beat = (await _beats(c))[-1]["receivedMs"]
        # the deadline the last beat set (the venue reads its clock twice for one request)
        assert 0 <= fired[0]["deadlineMs"] - (last_beat + COUNTDOWN_MS) <= 5
        assert fired[0]["firedMs"] >= fired[0]["deadlineMs"]
        assert fired[0]["canceled"] == 2
        assert await _open_ids(c, "BTCUSDT") == []
        assert await _open_ids(c, "ETHUSDT") == ["dm-eth"]
        beats_before = len(await _beats(c))
        os.kill(beater.pid, signal.SIGCONT)
        await wait_until_async(
            lambda: _count_at_least(c, beats_before + 3), "the heartbeat to resume"
        )
        assert await _open_ids(c, "BTCUSDT") == [], "a canceled order came back"
        beater.kill()
        beater.wait(timeout=10)
        second = await wait_until_async(
            lambda: _firings_at_least(c, 2), "the re-armed countdown to fire after SIGKILL"
        )
        assert second[1]["canceled"] == 0
        assert await _open_ids(c, "ETHUSDT") == ["dm-eth"]
    finally:
        if beater.poll() is None:
            os.kill(beater.pid, signal.SIGCONT)
            beater.kill()
            beater.wait(timeout=10)


async def _place(c: BinanceFutures, symbol: str, cid: str, qty: str, price: str) -> None:
    await c.ok("POST", "/fapi/v1/order", symbol=symbol, side="BUY", type="LIMIT",
               timeInForce="GTC", quantity=qty, price=price, newClientOrderId=cid)  # fmt: skip


async def _count_at_least(c: BinanceFutures, n: int) -> bool:
    return len(await _beats(c)) >= n


async def _firings_at_least(c: BinanceFutures, n: int) -> list[dict[str, Any]] | None:
    firings = await _firings(c)
    return firings if len(firings) >= n else None
