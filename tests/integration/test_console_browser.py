"""The console in a real headless browser (Debian's chromium via Selenium).

A simulator and the service (real stream, snapshots, ledger, control socket) run in this
process; the browser loads ``/console`` on the service's metrics port. A manual position
appears on the venue: the page, reloading itself, shows its incident with its cause; an
operator disarms with ``grinder control disarm --reason …`` (the real command): the page
shows the standing rollback and the command that lifts it. A screenshot of each is written
under the test's ``tmp_path`` (its path printed) for a person to look at.
"""

from __future__ import annotations

import asyncio
import sys
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
from tests.integration.test_incidents_e2e import Running, start
from tests.support.browser import headless_chromium
from tests.support.wait import wait_until, wait_until_async

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
MANUAL = "web_3c5dm4etfEvSlDpirssF"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer(port=0, symbols=SYMBOLS)
    await server.start()
    yield server
    await server.stop()


def console_url(run: Running, path: str = "/console") -> str:
    return run.running.metrics_url.removesuffix("/metrics") + path


async def grinder_control(*args: str) -> tuple[int, str]:
    """The real ``grinder control`` command, as an operator types it."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "grinder"),
        "control",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_console_shows_an_incident_and_a_standing_rollback_in_a_browser(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    ctl = SimControl(sim.base_url)
    SqliteExpectedStore(tmp_path / "expected.db", heartbeat_clock=wall_clock_ms)  # the bot's file
    run = await start(tmp_path, sim, "console")
    try:
        with headless_chromium() as browser:
            # The service answers the browser in this thread's event loop: every browser call
            # runs in a worker thread (``in_browser``), never blocking the loop.
            def in_browser(fn: Any, *args: Any) -> Any:
                return asyncio.to_thread(fn, *args)

            def text_of(element_id: str) -> str:
                """The element's text; "" while the page is reloading (it reloads itself)."""
                try:
                    found = browser.find_elements(By.ID, element_id)
                    return str(found[0].text) if found else ""
                except StaleElementReferenceException:
                    return ""

            def read(element_id: str) -> str:
                return str(wait_until(lambda: text_of(element_id), f"#{element_id} on the page"))

            await in_browser(browser.get, console_url(run))
            assert "GRINDER console" in await in_browser(lambda: browser.title)
            assert "none open" in await in_browser(read, "incidents")
            await ctl.call(
                "POST",
                "/positions",
                {"symbol": "ETHUSDT", "quantity": "0.05", "clientOrderId": MANUAL},
            )
            key = (MismatchType.POSITION_NONZERO_UNEXPECTED.value, "ETHUSDT", "BOTH")
            await wait_until_async(
                lambda: key in {r.key for r in run.running.ledger.open_records()},
                "the manual position's incident opened",
                timeout_s=20,
            )
            rec = next(r for r in run.running.ledger.open_records() if r.key == key)

            # The page reloads itself (meta refresh): no reload from the test.
            await in_browser(
                wait_until, lambda: "manual" in text_of(rec.id), "the incident on the page", 20
            )
            card = await in_browser(read, rec.id)
            assert "POSITION_NONZERO_UNEXPECTED" in card
            assert "ETHUSDT" in card
            assert f"grinder incidents ack {rec.id}" in card
            shot = tmp_path / "console-incident.png"
            await in_browser(browser.save_screenshot, str(shot))
            print(f"screenshot: {shot}")

            code, out = await grinder_control(
                "disarm", "--reason", "console test", "--socket", str(run.service.control_socket)
            )
            assert code == 0, out
            await in_browser(
                wait_until,
                lambda: "disarm stands" in text_of("rollbacks"),
                "the standing rollback on the page",
                20,
            )
            rollbacks = await in_browser(read, "rollbacks")
            assert "grinder control lift disarm" in rollbacks
            assert "console test" in rollbacks
            shot = tmp_path / "console-rollback.png"
            await in_browser(browser.save_screenshot, str(shot))
            print(f"screenshot: {shot}")
            # A phone's width: nothing overflows sideways.
            widths = await in_browser(
                browser.execute_script,
                "return [document.documentElement.scrollWidth, window.innerWidth]",
            )
            assert widths[0] <= widths[1], widths

            hostile = "<img src=x onerror=window.hacked=1>"
            await in_browser(browser.get, console_url(run, f"/console/incidents/{hostile}"))
            assert hostile in await in_browser(read, "error")  # shown as text, never run
            assert await in_browser(browser.execute_script, "return window.hacked === undefined")
    finally:
        await run.stop()
        await ctl.close()
