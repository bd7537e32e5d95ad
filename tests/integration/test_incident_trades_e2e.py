"""The trades behind position incidents, end to end: the simulator (a real HTTP + WebSocket
server), the service with its stream, snapshots and control socket, the bot's expected state
in SQLite, and ``grinder incidents show`` run as an operator runs it.

* a manual fill makes an unexpected position (ETH) and a position divergence (SOL, the bot
  holds 5): each record carries exactly the simulator's trades that make up its difference,
  ``explained`` true, in the store and in ``show --json``; once explained, no more requests;
* a fill older than the window (the margin 0: it came before the first sighting) is missing:
  the record shows the shortfall;
* the venue answers ``userTrades`` with 503s: the record stays without trades, the service
  runs on, and a later fetch attaches them.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from grinder.budget.stores import FileBudgetStore
from grinder.budget.tracker import BudgetTracker
from grinder.clock import wall_clock_ms
from grinder.config_sources import RuntimeEnv
from grinder.exchange.simulator import SimulatorServer
from grinder.exchange.simulator.client import SimControl
from grinder.incidents.records import IncidentRecord
from grinder.incidents.sqlite_store import SqliteIncidentStore
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.types import MismatchType
from grinder.redaction import register_secret
from grinder.reporting.audit import AuditWriter
from grinder.service.app import ReconcileService
from grinder.service.options import ServiceConfig, ServiceOptions
from grinder.service.running import RunningService
from grinder.service.venue import credentials_for
from grinder.state.sqlite import SqliteExpectedStore
from tests.support.wait import wait_until_async

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
TRADES = "GET /fapi/v1/userTrades"
NONZERO = MismatchType.POSITION_NONZERO_UNEXPECTED
DIVERGENCE = MismatchType.POSITION_QTY_DIVERGENCE


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer(port=0, symbols=SYMBOLS)
    await server.start()
    yield server
    await server.stop()


class Running:
    def __init__(
        self,
        service: ReconcileService,
        running: RunningService,
        task: asyncio.Task[None],
        tmp: Path,
    ) -> None:
        self.service = service
        self.running = running
        self.task = task
        self.tmp = tmp

    def record(self, symbol: str, mtype: MismatchType) -> IncidentRecord | None:
        for rec in self.running.ledger.open_records():
            if rec.key == (mtype.value, symbol, "BOTH"):
                return rec
        return None

    def metric(self, outcome: str) -> float:
        ledger = self.running.ledger
        assert ledger.metrics is not None
        return float(ledger.metrics.trade_fetches.labels(outcome=outcome)._value.get())

    async def stop(self) -> None:
        self.service.request_stop()
        await asyncio.wait_for(self.task, 10)
        await self.service.close()


async def start(tmp: Path, sim: SimulatorServer, *, margin_s: float = 600.0) -> Running:
    cfg = ReconcileConfig(order_grace_ms=500, position_grace_ms=300)
    opts = ServiceOptions(
        venue="sim",
        venue_url=sim.base_url,
        metrics_port=0,
        env=RuntimeEnv.from_env({}),
        reconcile=cfg,
        service=ServiceConfig(
            full_pass_interval_s=0.5,
            incident_trades_every_s=1.0,
            incident_trades_margin_s=margin_s,
        ),
        expected_db=tmp / "expected.db",
        create_expected_db=True,
        ledger_db=tmp / "incidents.db",
    )
    service = ReconcileService(
        opts,
        credentials=credentials_for("sim"),
        budget=BudgetTracker(config=cfg, store=FileBudgetStore(tmp / "budget.json")),
        audit=AuditWriter(tmp / "audit.jsonl"),
        control_socket=tmp / "run" / "grinder" / "control.sock",
        env={},
    )
    running = await service.start()
    assert await running.stream.wait_live(5)
    return Running(service, running, asyncio.create_task(running.loop.run_until_stopped()), tmp)


def _num(text: str) -> str:
    d = Decimal(text)
    return format(d.normalize(), "f") if d else "0"


def sim_trades(sim: SimulatorServer, symbol: str) -> list[dict[str, Any]]:
    """The simulator's own book of the account's fills of ``symbol`` (its ``userTrades`` rows),
    as the record keeps them."""
    rows = [t.view() for t in sim.exchange.account.ledger.trades if t.symbol == symbol]
    return [
        {
            "trade_id": v["id"],
            "order_id": v["orderId"],
            "side": v["side"],
            "qty": _num(v["qty"]),
            "price": _num(v["price"]),
            "commission": _num(v["commission"]),
            "commission_asset": v["commissionAsset"],
            "time_ms": v["time"],
            "position_side": v["positionSide"],
        }
        for v in rows
    ]


def read_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text: str = resp.read().decode()
    return text


def requests(sim: SimulatorServer) -> int:
    return int(sim.exchange.requests.get(TRADES, 0))


async def manual(ctl: SimControl, symbol: str, qty: str, cid: str) -> None:
    await ctl.call("POST", "/positions", {"symbol": symbol, "quantity": qty, "clientOrderId": cid})


async def show_json(cli: Any, tmp: Path, incident_id: str) -> dict[str, Any]:
    proc = await asyncio.to_thread(
        cli.run,
        "grinder.cli",
        "incidents",
        "show",
        incident_id,
        "--json",
        env=cli.env(runtime_dir=tmp / "run"),
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


async def test_a_manual_fill_is_explained_by_exactly_its_trades(
    cli: Any, tmp_path: Path, sim: SimulatorServer
) -> None:
    ctl = SimControl(sim.base_url)
    bot = SqliteExpectedStore(tmp_path / "expected.db", heartbeat_clock=wall_clock_ms)
    await ctl.call("POST", "/positions", {"symbol": "SOLUSDT", "quantity": "5", "via": "set"})
    bot.set_position("SOLUSDT", Decimal(5), wall_clock_ms())
    run = await start(tmp_path, sim)
    try:
        await manual(ctl, "ETHUSDT", "0.05", "web_eth1")
        await manual(ctl, "SOLUSDT", "-2", "web_sol1")  # more than a step (1)

        def explained() -> bool:
            recs = [run.record("ETHUSDT", NONZERO), run.record("SOLUSDT", DIVERGENCE)]
            return all(r is not None and r.trades is not None for r in recs)

        await wait_until_async(explained, "both position incidents with their trades", 20)
        eth, sol = run.record("ETHUSDT", NONZERO), run.record("SOLUSDT", DIVERGENCE)
        assert eth is not None
        assert sol is not None
        store = SqliteIncidentStore(tmp_path / "incidents.db")
        try:
            for rec, symbol, diff in ((eth, "ETHUSDT", "0.05"), (sol, "SOLUSDT", "-2")):
                shown = await show_json(cli, tmp_path, rec.id)
                trades = shown["trades"]
                assert trades["explained"] is True, trades
                assert trades["difference"] == diff
                assert trades["unexplained"] == "0"
                assert trades["trades"] == sim_trades(sim, symbol)  # exactly the manual fill
                assert len(trades["trades"]) == 1
                stored = store.get(rec.id)
                assert stored is not None
                assert stored.trades == rec.trades
        finally:
            store.close()
        text = await asyncio.to_thread(
            cli.run,
            "grinder.cli",
            "incidents",
            "show",
            eth.id,
            env=cli.env(runtime_dir=tmp_path / "run"),
        )
        assert "trades:    explained fully: 1 trade(s) make up the difference 0.05" in text.stdout
        sent = requests(sim)
        assert sent == 2  # one per incident
        assert run.metric("explained") == 2
        exposed = await asyncio.to_thread(read_text, run.running.metrics_url)
        assert 'grinder_incidents_trade_fetches_total{outcome="explained"} 2.0' in exposed
        assert 'grinder_incidents_trade_fetches_total{outcome="failed"} 0.0' in exposed
        assert "grinder_incidents_trade_fetch_weight_total 10.0" in exposed
        # Once explained, no more requests: watch a few more runs, past the pacing interval.
        runs = run.service.tally.runs
        since = wall_clock_ms()
        await wait_until_async(
            lambda: run.service.tally.runs >= runs + 6 and wall_clock_ms() - since > 3_000,
            "six more runs, three pacing intervals",
            20,
        )
        assert requests(sim) == sent
    finally:
        await run.stop()
        await ctl.close()
        bot.close()


async def test_a_fill_before_the_window_shows_the_shortfall(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    ctl = SimControl(sim.base_url)
    await manual(ctl, "ETHUSDT", "0.03", "web_before")  # before the service runs
    run = await start(tmp_path, sim, margin_s=0.0)
    try:
        await wait_until_async(
            lambda: run.record("ETHUSDT", NONZERO) is not None, "the incident open", 20
        )
        await manual(ctl, "ETHUSDT", "0.02", "web_after")

        def refetched() -> bool:
            rec = run.record("ETHUSDT", NONZERO)
            return rec is not None and rec.trades is not None and rec.trades.difference == "0.05"

        await wait_until_async(refetched, "the trades fetched for the new difference", 20)
        rec = run.record("ETHUSDT", NONZERO)
        assert rec is not None
        t = rec.trades
        assert t is not None
        assert not t.explained
        after = [r for r in sim_trades(sim, "ETHUSDT") if r["qty"] == "0.02"]
        assert [r.trade_id for r in t.trades] == [r["trade_id"] for r in after]
        assert (t.signed_sum, t.unexplained) == ("0.02", "0.03")
        assert t.start_ms == rec.first_seen_ms  # the margin 0: the older fill is outside
        assert run.metric("not_explained") >= 1
    finally:
        await run.stop()
        await ctl.close()


async def test_a_failed_fetch_leaves_the_record_and_is_tried_again(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    ctl = SimControl(sim.base_url)
    await ctl.call(
        "POST",
        "/faults/errors",
        {"count": 2, "status": 503, "paths": ["/fapi/v1/userTrades"], "methods": ["GET"]},
    )
    run = await start(tmp_path, sim)
    try:
        await manual(ctl, "ETHUSDT", "0.05", "web_eth2")
        await wait_until_async(lambda: run.metric("failed") >= 1, "a failed fetch", 20)
        rec = run.record("ETHUSDT", NONZERO)
        assert rec is not None
        assert rec.trades is None
        stored = SqliteIncidentStore(tmp_path / "incidents.db")
        try:
            on_disk = stored.get(rec.id)
            assert on_disk is not None
            assert on_disk.trades is None
        finally:
            stored.close()

        def attached() -> bool:
            r = run.record("ETHUSDT", NONZERO)
            return r is not None and r.trades is not None

        await wait_until_async(attached, "the trades attached after the failures", 30)
        rec = run.record("ETHUSDT", NONZERO)
        assert rec is not None
        assert rec.trades is not None
        assert rec.trades.explained
        assert run.metric("failed") == 2
        assert requests(sim) == 3  # two 503s (not repeated by the client), then the answer
        assert not run.task.done()  # the service ran on
    finally:
        await run.stop()
        await ctl.close()


async def test_a_secret_registered_while_running_is_masked_on_the_next_console_page(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    """The console's masking is per page (``Masker``), never kept by the running service: a
    value that becomes a secret after one page was served is gone from the next."""
    ctl = SimControl(sim.base_url)
    cid = f"web_{secrets.token_hex(8)}"
    run = await start(tmp_path, sim)
    try:
        await manual(ctl, "ETHUSDT", "0.05", cid)
        console = run.running.metrics_url.removesuffix("/metrics") + "/console"

        def shows_it() -> bool:
            return cid in read_text(console)

        await wait_until_async(lambda: asyncio.to_thread(shows_it), f"the console shows {cid}", 20)
        register_secret(cid)
        page = await asyncio.to_thread(read_text, console)
        assert cid not in page
        assert "ETHUSDT" in page  # the page itself is still there
    finally:
        await run.stop()
        await ctl.close()


def read_page(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


async def test_a_damaged_record_shows_one_line_on_the_console_never_a_bare_error(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    ctl = SimControl(sim.base_url)
    run = await start(tmp_path, sim)
    try:
        await manual(ctl, "ETHUSDT", "0.05", "web_eth9")

        def with_trades() -> IncidentRecord | None:
            rec = run.record("ETHUSDT", NONZERO)
            return rec if rec is not None and rec.trades is not None else None

        rec = await wait_until_async(with_trades, "ETH's trades attached", 20)
        await manual(ctl, "ETHUSDT", "-0.05", "web_eth10")  # flat: the incident clears
        await wait_until_async(
            lambda: run.record("ETHUSDT", NONZERO) is None, "ETH's incident cleared", 20
        )
        store = SqliteIncidentStore(tmp_path / "incidents.db")
        try:
            await wait_until_async(
                lambda: (got := store.get(rec.id)) is not None and not got.is_open,
                "the cleared record written",
                20,
            )
        finally:
            store.close()
        with sqlite3.connect(tmp_path / "incidents.db") as db:  # another version wrote it so
            (text,) = db.execute("SELECT record FROM incidents WHERE id = ?", (rec.id,)).fetchone()
            obj = json.loads(text)
            obj["trades"]["difference"] = "0,05"
            db.execute("UPDATE incidents SET record = ? WHERE id = ?", (json.dumps(obj), rec.id))
        base = run.running.metrics_url.removesuffix("/metrics")
        status, page = await asyncio.to_thread(read_page, f"{base}/console/incidents/{rec.id}")
        assert status == 503, page
        assert "ledger unreadable" in page
        assert "field &#39;difference&#39; is &#39;0,05&#39;, expected a decimal number" in page
        status, page = await asyncio.to_thread(read_page, f"{base}/console")
        assert status == 200  # the console itself still shows
    finally:
        await run.stop()
        await ctl.close()


async def test_a_slow_trades_answer_never_holds_the_next_runs(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    """The trades pass runs beside the loop: while a ``userTrades`` answer takes 1.5 s (under
    the pass's 2 s deadline), the service goes on running every 0.5 s."""
    ctl = SimControl(sim.base_url)
    await ctl.call(
        "POST",
        "/faults/latency",
        {"restMs": 1500, "methods": ["GET"], "paths": ["/fapi/v1/userTrades"]},
    )
    run = await start(tmp_path, sim)
    try:
        await manual(ctl, "ETHUSDT", "0.05", "web_eth_slow")
        await wait_until_async(lambda: requests(sim) >= 1, "a trades request out", 20)
        runs_when_asked = run.service.tally.runs
        seen: dict[str, int] = {}

        def attached() -> bool:
            r = run.record("ETHUSDT", NONZERO)
            if r is None or r.trades is None:
                return False
            seen["runs"] = run.service.tally.runs
            return True

        await wait_until_async(attached, "the slow trades attached", 20)
        # Inline (awaited after the run) the loop would have made no run in the meantime.
        assert seen["runs"] - runs_when_asked >= 2, (runs_when_asked, seen)
    finally:
        await run.stop()
