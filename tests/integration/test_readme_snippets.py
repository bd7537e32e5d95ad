"""The README's Python snippets, executed as written against the simulator.

As in the runbook tests (tests/integration/test_runbook_commands.py), nothing touches the real
system: ``/var/lib/grinder`` is a temporary directory, ``127.0.0.1:8765`` a free port where
``grinder sim serve`` runs, and the expected-state file is kept live by a stand-in bot. A snippet
may use nothing it does not build itself: each runs in a fresh namespace.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.reconcile.config import RemediationAction
from grinder.reconcile.labels import BlockReason
from grinder.reconcile.routing import ActionKind
from grinder.remediation.executor import RemediationExecutor

pytestmark = pytest.mark.subprocess

README = Path(__file__).resolve().parents[2] / "README.md"
ORDER = "grinder_d_BTCUSDT_1_1704067200_1"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def test_the_readme_has_the_library_snippet() -> None:
    (snippet,) = python_blocks(README.read_text(encoding="utf-8"))
    assert "futures_port = " in snippet
    assert "executor = RemediationExecutor(" in snippet


def test_every_readme_python_snippet_runs_as_written(
    tmp_path: Path, cli: Any, recorder_bot: Any
) -> None:
    port = cli.free_port()
    log = tmp_path / "sim.log"
    sim = subprocess.Popen(
        cli.sim_argv(port, "BTCUSDT,ETHUSDT"),
        env=cli.env(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    state = tmp_path / "var" / "lib" / "grinder"
    state.mkdir(parents=True)
    bot = recorder_bot(state / "expected.db")
    try:
        cli.wait_http(f"http://127.0.0.1:{port}/fapi/v1/ping", sim, log)
        for snippet in python_blocks(README.read_text(encoding="utf-8")):
            text = snippet.replace("/var/lib/grinder", str(state))
            text = text.replace("127.0.0.1:8765", f"127.0.0.1:{port}")
            ns: dict[str, Any] = {}
            exec(compile(text, str(README), "exec"), ns)
            check_library_snippet(ns)
    finally:
        bot.stop()
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)


def check_library_snippet(ns: dict[str, Any]) -> None:
    """The port the snippet built talks to the exchange; its executor is rolled back (action
    none, disarmed) and, with the action restored, plans a cancel: every gate but the arming
    ones (dry-run) passes, gate E included (the bot's file is live)."""
    port: BinanceFuturesPort = ns["futures_port"]
    executor: RemediationExecutor = ns["executor"]
    assert executor.port is port
    assert executor.armed is False
    assert executor.config.action is RemediationAction.NONE

    async def talk() -> Any:
        try:
            return await port.exchange_info()
        finally:
            await port.rest.close()

    filters = asyncio.run(talk())
    assert {"BTCUSDT", "ETHUSDT"} <= set(filters)
    ctx = executor.begin_run()
    blocked = executor.gate(ActionKind.CANCEL, "BTCUSDT", ORDER, Decimal(0), ctx)
    assert blocked is BlockReason.ACTION_IS_NONE
    executor.config.action = RemediationAction.CANCEL_ALL
    ns["expected"].refresh()
    assert executor.gate(ActionKind.CANCEL, "BTCUSDT", ORDER, Decimal(0), ctx) is None
    assert executor.gate(ActionKind.CANCEL, "ETHUSDT", ORDER, Decimal(0), ctx) is (
        BlockReason.SYMBOL_NOT_IN_WHITELIST
    )
