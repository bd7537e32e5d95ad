"""A position incident's trades on the console's incident page, in a real headless browser.

The simulator and the service run in this process (real stream, snapshots, ledger); a manual
fill makes an unexpected position; once its trades are attached, the incident's page on the
metrics port shows each fill (quantity, price, fee, order) and the verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By

from grinder.clock import wall_clock_ms
from grinder.exchange.simulator import SimulatorServer
from grinder.exchange.simulator.client import SimControl
from grinder.reconcile.types import MismatchType
from grinder.state.sqlite import SqliteExpectedStore
from tests.integration.test_incidents_e2e import start
from tests.support.browser import headless_chromium
from tests.support.wait import wait_until, wait_until_async

KEY = (MismatchType.POSITION_NONZERO_UNEXPECTED.value, "ETHUSDT", "BOTH")


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer(port=0, symbols=["BTCUSDT", "ETHUSDT"])
    await server.start()
    yield server
    await server.stop()


async def test_the_incident_page_shows_the_trades_and_the_verdict(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    ctl = SimControl(sim.base_url)
    SqliteExpectedStore(tmp_path / "expected.db", heartbeat_clock=wall_clock_ms)  # the bot's file
    run = await start(tmp_path, sim, "trades")
    try:
        await ctl.call(
            "POST",
            "/positions",
            {"symbol": "ETHUSDT", "quantity": "0.05", "clientOrderId": "web_t"},
        )
        ledger = run.running.ledger

        def with_trades() -> Any:
            for r in ledger.open_records():
                if r.key == KEY and r.trades is not None:
                    return r
            return None

        rec = await wait_until_async(with_trades, "the incident's trades attached", 20)
        (fill,) = [t.view() for t in sim.exchange.account.ledger.trades if t.symbol == "ETHUSDT"]
        page = run.running.metrics_url.removesuffix("/metrics") + f"/console/incidents/{rec.id}"
        with headless_chromium() as browser:

            def text_of_card() -> str:
                try:
                    found = browser.find_elements(By.ID, rec.id)
                    return str(found[0].text) if found else ""
                except StaleElementReferenceException:
                    return ""

            await asyncio.to_thread(browser.get, page)
            card = await asyncio.to_thread(
                wait_until, lambda: "explained fully" in text_of_card() and text_of_card(), "card"
            )
            assert "explained fully: 1 trade(s) make up the difference 0.05" in card
            rows = await asyncio.to_thread(
                lambda: [r.text for r in browser.find_elements(By.CSS_SELECTOR, "table.trades tr")]
            )
            (data,) = [r for r in rows if r.strip()]  # a narrow window hides the header row
            cells = data.split()
            assert cells[2:] == [
                "BUY",
                "0.05",
                format(float(fill["price"]), "g"),
                format(float(fill["commission"]), "g"),
                "USDT",
                str(fill["orderId"]),
                str(fill["id"]),
            ]
    finally:
        await run.stop()
        await ctl.close()
