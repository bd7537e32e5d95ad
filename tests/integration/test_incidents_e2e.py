"""The incident ledger end to end: the simulator, the service, a bot; one case of each cause
the simulator can produce, each checked in the ledger with its evidence, through a restart.

One simulator (a real HTTP + WebSocket server) outlives two services run one after the
other in this process, each with the real stream, snapshots, triage and control socket,
sharing one ledger file and one expected-state file that the test writes as the bot
(``SqliteExpectedStore`` with a heartbeat clock: every write is the bot's). Grace periods
are shortened (orders 500 ms, positions 300 ms) and the bot's heartbeat limit is 1 s; the
code paths are the production ones.

The causes, and how the simulator produces each:

=====================  =====================================================================
cause                  drift
=====================  =====================================================================
manual                 a position bought by an order with a ``web_`` id
other_strategy         a position bought by an order of strategy ``x`` (not allowed)
liquidation            the bot's SOL long sold by an ``autoclose-`` order
bot_stopped            an order of ours the bot never recorded, its heartbeat stale
remediation_order      an open order with remediation's own id (level ``R``)
missed_stream_event    an expected order ended by the venue, its event suppressed
stream_gap             an expected order ended while the stream was reconnecting
trigger_rejected       an expected reduce-only stop whose trigger the venue rejected
=====================  =====================================================================

Self-trade prevention, ADL, settlement and GTE_GTC expiries are not produced by the
simulator; ``tests/unit/test_incident_causes.py`` decides them from recorded messages.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from grinder.budget.stores import FileBudgetStore
from grinder.budget.tracker import BudgetTracker
from grinder.cli.control import _call as control_call
from grinder.clock import wall_clock_ms
from grinder.config_sources import RuntimeEnv
from grinder.exchange.binance.stream import StreamState
from grinder.exchange.simulator import SimulatorServer
from grinder.exchange.simulator.client import SimControl
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.identity import remediation_client_order_id
from grinder.reconcile.types import ExpectedOrder, MismatchType, Side
from grinder.reporting.audit import AuditWriter
from grinder.service.app import ReconcileService
from grinder.service.options import ServiceConfig, ServiceOptions
from grinder.service.running import RunningService
from grinder.service.venue import credentials_for
from grinder.state.sqlite import SqliteExpectedStore
from tests.support.ids import ours
from tests.support.wait import wait_until_async

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"]
GAP = ours(101)
MISSED = ours(102)
TRIGGER = ours(103, "XRPUSDT")
ORPHAN = ours(104)


@dataclass
class Running:
    service: ReconcileService
    running: RunningService
    task: asyncio.Task[None]
    audit: Path

    async def control(self, method: str, route: str, body: dict[str, Any] | None = None) -> Any:
        assert self.service.control_socket is not None
        return await control_call(self.service.control_socket, method, route, body)

    def open_by_key(self) -> dict[tuple[str, str, str], Any]:
        return {r.key: r for r in self.running.ledger.open_records()}

    def audit_events(self, event: str) -> list[dict[str, Any]]:
        if not self.audit.exists():
            return []
        records = [json.loads(x) for x in self.audit.read_text().splitlines()]
        return [r for r in records if r["event_type"] == event]

    async def stop(self) -> None:
        self.service.request_stop()
        await asyncio.wait_for(self.task, 10)
        await self.service.close()


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer(port=0, symbols=SYMBOLS)
    await server.start()
    yield server
    await server.stop()


async def start(tmp: Path, sim: SimulatorServer, name: str) -> Running:
    cfg = ReconcileConfig(
        order_grace_ms=500, position_grace_ms=300, expected_heartbeat_max_age_s=1.0
    )
    opts = ServiceOptions(
        venue="sim",
        venue_url=sim.base_url,
        metrics_port=0,
        env=RuntimeEnv.from_env({}),
        reconcile=cfg,
        service=ServiceConfig(full_pass_interval_s=0.5),
        expected_db=tmp / "expected.db",
        ledger_db=tmp / "incidents.db",
    )
    audit = tmp / f"audit-{name}.jsonl"
    service = ReconcileService(
        opts,
        credentials=credentials_for("sim"),
        budget=BudgetTracker(config=cfg, store=FileBudgetStore(tmp / "budget.json")),
        audit=AuditWriter(audit),
        control_socket=tmp / f"ctl-{name}" / "control.sock",
        env={},
    )
    running = await service.start()
    assert await running.stream.wait_live(5)
    task = asyncio.create_task(running.loop.run_until_stopped())
    return Running(service, running, task, audit)


def order_key(cid: str, mtype: MismatchType, symbol: str = "BTCUSDT") -> tuple[str, str, str]:
    return (mtype.value, symbol, cid)


def position_key(symbol: str, mtype: MismatchType) -> tuple[str, str, str]:
    return (mtype.value, symbol, "BOTH")


DIVERGENCE = MismatchType.ORDER_STATUS_DIVERGENCE
UNEXPECTED = MismatchType.ORDER_EXISTS_UNEXPECTED
NONZERO = MismatchType.POSITION_NONZERO_UNEXPECTED


def expected_order(cid: str, symbol: str, side: Side, qty: str, **kw: Any) -> ExpectedOrder:
    now = wall_clock_ms()
    return ExpectedOrder(
        client_order_id=cid,
        symbol=symbol,
        side=side,
        qty=Decimal(qty),
        created_ts_ms=now,
        updated_ts_ms=now,
        **kw,
    )


async def bot_places(bot: SqliteExpectedStore, ctl: SimControl, remediation_id: str) -> None:
    """The bot, while it runs: records then sends three orders, and holds 2 SOL long."""
    await ctl.call("POST", "/positions", {"symbol": "SOLUSDT", "quantity": "2", "via": "set"})
    bot.set_position("SOLUSDT", Decimal(2), wall_clock_ms())
    for cid in (GAP, MISSED):
        bot.record_order(expected_order(cid, "BTCUSDT", Side.BUY, "0.002", price=Decimal(20000)))
        await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)
    bot.record_order(
        expected_order(TRIGGER, "XRPUSDT", Side.SELL, "20", order_type="STOP_MARKET", is_algo=True)
    )
    await ctl.call(
        "POST",
        "/algo-orders",
        {
            "symbol": "XRPUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "algoType": "CONDITIONAL",
            "quantity": "20",
            "triggerPrice": "0.5000",
            "reduceOnly": "true",
            "clientAlgoId": TRIGGER,
        },
    )


async def stream_gap(run: Running, ctl: SimControl) -> None:
    """The stream drops and reconnects slowly; the venue cancels GAP meanwhile."""
    stream = run.running.stream
    assert stream is not None
    await ctl.call(
        "POST",
        "/faults/latency",
        {"restMs": 1500, "paths": ["/fapi/v1/listenKey"], "methods": ["POST"]},
    )
    await ctl.call("POST", "/ws/drop", {"mode": "abort"})
    await wait_until_async(lambda: stream.state is not StreamState.LIVE, "the stream dropped")
    await ctl.call("POST", "/orders/cancel", {"clientOrderId": GAP})
    await ctl.call("DELETE", "/faults")
    await wait_until_async(lambda: stream.state is StreamState.LIVE, "the stream live again")


async def drift(run: Running, ctl: SimControl, remediation_id: str) -> None:
    await stream_gap(run, ctl)
    await ctl.call("POST", "/stream/suppress", {"clientOrderId": MISSED})
    await ctl.call("POST", "/orders/cancel", {"clientOrderId": MISSED})
    await run.running.loop.snapshot()  # a snapshot sees it gone; triage finds its end
    await ctl.call("POST", "/algo-orders/trigger", {"clientAlgoId": TRIGGER})
    await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", ORPHAN)
    await ctl.place_order("BTCUSDT", "BUY", "0.002", "20000", remediation_id)
    for symbol, qty, cid in (
        ("ETHUSDT", "0.05", "web_3c5dm4etfEvSlDpirssF"),
        ("BNBUSDT", "0.05", "grinder_x_BNBUSDT_1_1704067200_1"),
        ("SOLUSDT", "-2", "autoclose-1234567890123456"),
    ):
        await ctl.call(
            "POST", "/positions", {"symbol": symbol, "quantity": qty, "clientOrderId": cid}
        )


async def test_each_cause_the_simulator_produces_is_in_the_ledger_through_a_restart(
    tmp_path: Path, sim: SimulatorServer
) -> None:
    ctl = SimControl(sim.base_url)
    bot = SqliteExpectedStore(tmp_path / "expected.db", heartbeat_clock=wall_clock_ms)
    remediation_id = remediation_client_order_id(
        strategy_id="d", symbol="BTCUSDT", ts_seconds=wall_clock_ms() // 1000, seq=7
    )
    run = await start(tmp_path, sim, "first")
    try:
        await bot_places(bot, ctl, remediation_id)
        await asyncio.sleep(1.2)  # the bot stops: its heartbeat (1 s limit) goes stale
        await drift(run, ctl, remediation_id)
        expected = {
            position_key("ETHUSDT", NONZERO): ("manual", "fill", "web_3c5dm4etfEvSlDpirssF"),
            position_key("BNBUSDT", NONZERO): ("other_strategy", "fill", "grinder_x_BNBUSDT"),
            position_key("SOLUSDT", MismatchType.POSITION_QTY_DIVERGENCE): (
                "liquidation",
                "fill",
                "autoclose-1234567890123456",
            ),
            order_key(ORPHAN, UNEXPECTED): ("bot_stopped", "heartbeat", "stopped recording"),
            order_key(remediation_id, UNEXPECTED): (
                "remediation_order",
                "client_order_id",
                "remediation placed it",
            ),
            order_key(MISSED, DIVERGENCE): ("missed_stream_event", "triage", "CANCELED"),
            order_key(GAP, DIVERGENCE): ("stream_gap", "stream_gap", "reconnecting"),
            order_key(TRIGGER, DIVERGENCE, "XRPUSDT"): (
                "trigger_rejected",
                "order_event",
                "X=REJECTED",
            ),
        }
        await wait_until_async(
            lambda: set(expected) <= set(run.open_by_key()), "every incident open", timeout_s=20
        )
        found = run.open_by_key()
        for key, (cause, kind, text) in expected.items():
            rec = found[key]
            assert rec.cause.value == cause, (key, rec.cause, rec.evidence)
            assert rec.evidence[0].kind == kind, (key, rec.evidence)
            assert text in rec.evidence[0].summary, (key, rec.evidence[0].summary)
        ids = {key: found[key].id for key in expected}
        # The same through the control socket, as `grinder incidents` reads it.
        listed = await run.control("GET", "/incidents?open=1")
        listed_causes = {i["id"]: i["cause"] for i in listed["incidents"]}
        assert listed_causes.items() >= {ids[k]: v[0] for k, v in expected.items()}.items()
        shown = await run.control("GET", f"/incidents/{ids[order_key(GAP, DIVERGENCE)]}")
        assert [e["kind"] for e in shown["evidence"]] == ["stream_gap", "triage"]
        opened = {r["incident_id"] for r in run.audit_events("INCIDENT_OPENED")}
        assert set(ids.values()) <= opened
    finally:
        await run.stop()

    # --- a restart: the same ledger file, the same exchange, the bot still stopped ------------
    again = await start(tmp_path, sim, "second")
    try:
        await wait_until_async(
            lambda: set(expected) <= set(again.open_by_key()), "incidents continued", timeout_s=20
        )
        continued = again.open_by_key()
        for key, (cause, _kind, _text) in expected.items():
            assert continued[key].id == ids[key]
            assert continued[key].cause.value == cause
        await asyncio.sleep(1.0)  # a few more runs: still no incident opened again
        assert again.audit_events("INCIDENT_OPENED") == []
        manual = ids[position_key("ETHUSDT", NONZERO)]
        acked = await again.control(
            "POST", f"/incidents/{manual}/ack", {"by": "oncall", "note": "manual buy; sold by hand"}
        )
        assert acked["ack"]["by"] == "oncall"
        await ctl.call("POST", "/orders/cancel", {"clientOrderId": remediation_id})
        gone = ids[order_key(remediation_id, UNEXPECTED)]
        await wait_until_async(
            lambda: any(r["incident_id"] == gone for r in again.audit_events("INCIDENT_CLEARED")),
            "the cancelled order's incident cleared",
        )

        async def stored_cleared() -> Any:  # the record is written at the run's end
            record = await again.control("GET", f"/incidents/{gone}")
            return record if record["cleared_ms"] is not None else None

        record = await wait_until_async(stored_cleared, "the cleared incident stored")
        assert record["steps"][0]["gates"] == ["action_is_none"]  # passive: blocked, never sent
        (ack,) = again.audit_events("INCIDENT_ACKNOWLEDGED")
        assert (ack["incident_id"], ack["by"]) == (manual, "oncall")
    finally:
        await again.stop()
        bot.close()
        await ctl.close()
    writes = await SimControl(sim.base_url).call("GET", f"/writes?apiKey={sim.api_key}")
    assert writes["writes"] == []  # passive: the ledger never made the service trade


async def test_a_live_flatten_is_a_step_with_the_exchanges_answer(tmp_path: Path) -> None:
    """Live (every gate open): the manual position's incident gets an EXECUTED step with the
    remediation order and each attempt's answer, then clears; one write reached the venue."""
    cfg = ReconcileConfig(
        order_grace_ms=500,
        position_grace_ms=300,
        action=RemediationAction.FLATTEN,
        dry_run=False,
        allow_active_remediation=True,
        symbol_whitelist=["ETHUSDT"],
        cooldown_seconds=0,
    )
    opts = ServiceOptions(
        venue="sim",
        metrics_port=0,
        env=RuntimeEnv.from_env({}),
        reconcile=cfg,
        service=ServiceConfig(full_pass_interval_s=0.5, sim_symbols=["ETHUSDT"]),
        ledger_db=tmp_path / "incidents.db",
        armed=True,
    )
    service = ReconcileService(
        opts,
        credentials=credentials_for("sim"),
        budget=BudgetTracker(config=cfg, store=FileBudgetStore(tmp_path / "budget.json")),
        audit=AuditWriter(tmp_path / "audit.jsonl"),
        control_socket=tmp_path / "ctl" / "control.sock",
        env={"ALLOW_MAINNET_TRADE": "1"},
    )
    running = await service.start()
    task = asyncio.create_task(running.loop.run_until_stopped())
    try:
        assert running.expected.source.memory is not None
        running.expected.source.memory.heartbeat()  # a bot keeps the expected state (gate E)
        assert await running.stream.wait_live(5)
        assert running.venue.sim is not None
        sim = running.venue.sim
        ctl = SimControl(sim.base_url)
        await ctl.call(
            "POST",
            "/positions",
            {"symbol": "ETHUSDT", "quantity": "0.05", "clientOrderId": "web_q"},
        )
        await ctl.close()
        ledger = running.ledger
        cleared = await wait_until_async(
            lambda: [s for s in ledger.summaries() if not s.is_open], "the incident cleared"
        )
        (summary,) = cleared
        assert summary.cause.value == "manual"
        rec = await wait_until_async(
            lambda: (r := ledger.get(summary.id)) is not None and r.steps and r,
            "the step stored",
        )
        (step,) = [s for s in rec.steps if s.status.value == "EXECUTED"]
        assert (step.action, step.mode, Decimal(step.qty or "0")) == (
            "flatten",
            "live",
            Decimal("0.05"),
        )
        assert step.attempts == ("accepted",)
        assert step.remediation_order_id is not None
        assert step.remediation_order_id.startswith("grinder_d_ETHUSDT_R_")
        async with SimControl(sim.base_url) as check:
            writes = (await check.call("GET", f"/writes?apiKey={sim.api_key}"))["writes"]
        assert [w["clientOrderId"] for w in writes] == [step.remediation_order_id]
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 10)
        await service.close()
