"""The live service against the in-process simulator over real sockets.

Grace periods are shortened (500 ms / 300 ms) so each case takes about a
second; the code paths are the production ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from grinder.budget.ledger import RunBudget
from grinder.budget.stores import FileBudgetStore
from grinder.budget.tracker import BudgetTracker
from grinder.cli.control import _call as control_call
from grinder.cli.errors import UsageError
from grinder.config_sources import RuntimeEnv
from grinder.exchange.simulator.client import SimControl
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.types import ExpectedOrder, MismatchType, OrderStatus, Side
from grinder.reporting.audit import AuditWriter
from grinder.service.app import ReconcileService
from grinder.service.options import ServiceConfig, ServiceOptions
from grinder.service.running import RunningService
from grinder.service.venue import credentials_for
from grinder.state.recorder import ExpectedRecorder
from tests.support.ids import ours
from tests.support.wait import wait_until_async

ORDER_GRACE_MS = 500
POSITION_GRACE_MS = 300


class Rig:
    def __init__(self, service: ReconcileService, running: RunningService, tmp: Path) -> None:
        self.service = service
        self.running = running
        self.tmp = tmp
        assert running.venue.sim is not None
        self.sim = SimControl(running.venue.sim.base_url)

    async def place_order(self, cid: str) -> None:
        """A resting BUY 0.002 BTCUSDT @ 20000 with ``cid``, as if placed by hand."""
        await self.sim.place_order("BTCUSDT", "BUY", "0.002", "20000", cid)

    async def state(self) -> Any:
        return await self.sim.state()

    def counter(self, name: str, **labels: str) -> float:
        value = self.service.registry.get_sample_value(name, labels or None)
        return 0.0 if value is None else value

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 8.0) -> None:
        await wait_until_async(predicate, timeout_s=timeout_s)

    async def control(self, method: str, route: str, body: dict[str, Any] | None = None) -> Any:
        assert self.service.control_socket is not None
        return await control_call(self.service.control_socket, method, route, body)


def options(tmp: Path, **reconcile: Any) -> ServiceOptions:
    cfg = ReconcileConfig(
        order_grace_ms=ORDER_GRACE_MS,
        position_grace_ms=POSITION_GRACE_MS,
        symbol_whitelist=["BTCUSDT", "ETHUSDT"],
        cooldown_seconds=0,
        **reconcile,
    )
    return ServiceOptions(
        venue="sim",
        metrics_port=0,
        env=RuntimeEnv.from_env({}),
        reconcile=cfg,
        service=ServiceConfig(full_pass_interval_s=0.5, sim_symbols=["BTCUSDT", "ETHUSDT"]),
    )


ServiceFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_service(tmp_path: Path) -> AsyncIterator[ServiceFactory]:
    started: list[tuple[Rig, asyncio.Task[None]]] = []

    async def factory(
        *,
        live: bool = False,
        expected_db: Path | None = None,
        bot: bool = True,
        **cfg: Any,
    ) -> Rig:
        """``live``: armed, ALLOW_MAINNET_TRADE=1, not dry-run, active remediation allowed.
        ``bot``: a bot in this process keeps the service's in-memory expected state (gate E);
        with ``expected_db`` the file is created and the test's bot process writes it."""
        if live:
            cfg.update(dry_run=False, allow_active_remediation=True)
        opts = replace(
            options(tmp_path, **cfg),
            armed=live,
            expected_db=expected_db,
            create_expected_db=expected_db is not None,
        )
        budget = BudgetTracker(
            config=opts.reconcile, store=FileBudgetStore(tmp_path / "budget.json")
        )
        service = ReconcileService(
            opts,
            credentials=credentials_for("sim"),
            budget=budget,
            audit=AuditWriter(tmp_path / "audit.jsonl"),
            control_socket=tmp_path / "ctl" / "control.sock",
            env={"ALLOW_MAINNET_TRADE": "1"} if live else {},
        )
        running = await service.start()
        if bot and running.expected.source.memory is not None:
            running.expected.source.memory.heartbeat()
        assert await running.stream.wait_live(5)
        task = asyncio.create_task(running.loop.run_until_stopped())
        rig = Rig(service, running, tmp_path)
        started.append((rig, task))
        return rig

    yield factory
    for rig, task in started:
        await rig.sim.close()
        rig.service.request_stop()
        await asyncio.wait_for(task, 5)
        await rig.service.close()


async def test_orphan_order_of_ours_is_detected_and_planned_in_dry_run(
    make_service: ServiceFactory,
) -> None:
    rig = await make_service(action=RemediationAction.CANCEL_ALL)
    await rig.place_order(ours(1))
    await rig.wait_for(
        lambda: rig.counter("grinder_reconcile_action_planned_total", action="cancel_all") >= 1
    )
    assert rig.counter("grinder_reconcile_mismatch_total", type="ORDER_EXISTS_UNEXPECTED") == 1
    state = await rig.state()
    assert state["counters"]["writeRequests"] == 0
    assert [o["clientOrderId"] for o in state["orders"]] == [ours(1)]


async def test_manual_order_is_never_touched_even_when_live(make_service: ServiceFactory) -> None:
    rig = await make_service(live=True, action=RemediationAction.FLATTEN)
    await rig.place_order("web_manual_123")
    runs = rig.service.tally.runs
    await rig.wait_for(lambda: rig.service.tally.runs >= runs + 3)
    state = await rig.state()
    assert state["counters"]["writeRequests"] == 0
    assert rig.counter("grinder_reconcile_foreign_open_orders") == 1
    assert rig.counter("grinder_reconcile_mismatch_total", type="ORDER_EXISTS_UNEXPECTED") == 0


async def test_live_mode_cancels_orphan_and_flattens_manual_position(
    make_service: ServiceFactory,
) -> None:
    rig = await make_service(live=True, action=RemediationAction.FLATTEN)
    await rig.sim.place_order("ETHUSDT", "SELL", "0.050", "9000", ours(2, "ETHUSDT"))
    await rig.wait_for(
        lambda: rig.counter("grinder_reconcile_action_executed_total", action="cancel_all") >= 1
    )
    await rig.sim.call("POST", "/positions", {"symbol": "BTCUSDT", "quantity": "0.003"})
    await rig.wait_for(
        lambda: rig.counter("grinder_reconcile_action_executed_total", action="flatten") >= 1
    )
    state = await rig.state()
    assert state["orders"] == []
    amounts = {p["symbol"]: Decimal(p["positionAmt"]) for p in state["positions"]}
    assert amounts.get("BTCUSDT", Decimal(0)) == 0
    budget = json.loads((rig.tmp / "budget.json").read_text())
    assert budget["calls_used_day"] == 2


async def test_rollback_through_control_socket_blocks_the_next_write(
    make_service: ServiceFactory,
) -> None:
    rig = await make_service(live=True, action=RemediationAction.CANCEL_ALL)
    who = {"by": "alice@host1", "reason": "incident 42"}
    changed = await rig.control("POST", "/set", {"field": "action", "value": "none", **who})
    assert {k: changed[k] for k in ("field", "old", "new", "kind", "by", "reason")} == {
        "field": "action",
        "old": "cancel_all",
        "new": "none",
        "kind": "rollback",
        **who,
    }
    assert rig.counter("grinder_reconcile_action", action="none") == 1
    await rig.place_order(ours(3))
    await rig.wait_for(
        lambda: rig.counter("grinder_reconcile_action_blocked_total", reason="action_is_none") >= 1
    )
    # An escalation does not undo a standing rollback: it is refused, and says how to lift it.
    with pytest.raises(UsageError, match="lift it first: grinder control lift action-none"):
        await rig.control("POST", "/set", {"field": "action", "value": "cancel_all"})
    lifted = await rig.control("POST", "/lift", {"name": "action-none", **who})
    assert lifted["lifted"] == ["action"]
    assert lifted["in_force"]["action"]["value"] == "cancel_all"
    await rig.control("POST", "/arm", {"armed": False})
    blocked = rig.counter("grinder_reconcile_action_blocked_total", reason="not_armed")
    await rig.wait_for(
        lambda: rig.counter("grinder_reconcile_action_blocked_total", reason="not_armed") > blocked
    )
    await rig.control("POST", "/lift", {"name": "disarm"})
    await rig.control("POST", "/mainnet", {"allow": False})
    await rig.wait_for(
        lambda: rig.counter("grinder_reconcile_action_blocked_total", reason="env_var_missing") >= 1
    )
    state = await rig.state()
    assert state["counters"]["writeRequests"] == 0
    status = await rig.control("GET", "/status")
    assert status["allow_mainnet_trade"] is False
    assert status["operator"]["rollbacks"] == ["deny-mainnet"]
    assert status["settings"]["allow_mainnet_trade"]["source"] == "rollback"
    audit = [json.loads(x) for x in (rig.tmp / "audit.jsonl").read_text().splitlines()]
    changes = [r for r in audit if r["event_type"] == "CONTROL_CHANGE"]
    assert [c["field"] for c in changes] == [
        "action",
        "action",
        "armed",
        "armed",
        "ALLOW_MAINNET_TRADE",
    ]
    assert changes[0]["by"] == "alice@host1"
    assert changes[0]["reason"] == "incident 42"


async def test_dry_run_switched_on_at_run_time_turns_writes_into_plans_and_back(
    make_service: ServiceFactory,
) -> None:
    rig = await make_service(live=True, action=RemediationAction.CANCEL_ALL)
    changed = await rig.control("POST", "/set", {"field": "dry_run", "value": "true"})
    assert (changed["field"], changed["old"], changed["new"]) == ("dry_run", False, True)
    await rig.place_order(ours(5))
    await rig.wait_for(
        lambda: rig.counter("grinder_reconcile_action_planned_total", action="cancel_all") >= 1
    )
    assert (await rig.state())["counters"]["writeRequests"] == 0
    assert rig.counter("grinder_reconcile_action_executed_total", action="cancel_all") == 0
    with pytest.raises(UsageError, match="the rollback dry-run stands on dry_run"):
        await rig.control("POST", "/set", {"field": "dry_run", "value": "false"})
    await rig.control("POST", "/lift", {"name": "dry-run"})
    await rig.wait_for(
        lambda: rig.counter("grinder_reconcile_action_executed_total", action="cancel_all") >= 1
    )
    assert (await rig.state())["orders"] == []


async def test_order_vanishing_without_event_is_triaged_then_reported_missing(
    make_service: ServiceFactory,
) -> None:
    rig = await make_service(triage_miss_threshold=2)
    cid = ours(4)
    await rig.place_order(cid)
    # The bot knows this order: record it as expected.
    assert rig.running.expected.source.memory is not None
    rig.running.expected.source.memory.record_order(
        ExpectedOrder(
            client_order_id=cid,
            symbol="BTCUSDT",
            side=Side.BUY,
            qty=Decimal("0.002"),
            created_ts_ms=rig.service.clock(),
        )
    )
    await rig.sim.call("DELETE", "/orders", {"clientOrderId": cid})
    await rig.running.loop.snapshot()  # the periodic snapshot, now
    await rig.wait_for(
        lambda: (
            rig.counter("grinder_reconcile_mismatch_total", type="ORDER_MISSING_ON_EXCHANGE") >= 1
        )
    )
    assert rig.counter("grinder_reconcile_triage_total", outcome="not_found") >= 2


async def test_readyz_and_metrics_endpoint_serve_over_http(make_service: ServiceFactory) -> None:
    rig = await make_service()
    base = rig.running.metrics_url.removesuffix("/metrics")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/readyz") as resp:
            ready = await resp.json()
            assert resp.status == 200
            assert ready["first_snapshot"] is True
        async with session.get(f"{base}/metrics") as resp:
            text = await resp.text()
    assert 'grinder_reconcile_mismatch_total{type="ORDER_EXISTS_UNEXPECTED"} 0.0' in text
    for kind in MismatchType:  # before the first incident, at 0
        line = f'grinder_reconcile_detection_latency_seconds_count{{type="{kind.value}"}} 0.0'
        assert line in text
    assert "grinder_stream_connected 1.0" in text
    assert "grinder_exchange_request_weight_used_1m" in text


async def test_snapshot_age_is_real_once_started_and_budget_shows_the_file(
    tmp_path: Path,
) -> None:
    opts = options(tmp_path)
    store = FileBudgetStore(tmp_path / "budget.json")
    budget = BudgetTracker(config=opts.reconcile, store=store)
    budget.reserve(RunBudget(), Decimal(100), budget.clock())  # one call spent today
    service = ReconcileService(
        opts,
        credentials=credentials_for("sim"),
        budget=budget,
        audit=None,
        control_socket=tmp_path / "ctl" / "control.sock",
        env={},
    )
    sample = service.registry.get_sample_value
    assert sample("grinder_reconcile_last_snapshot_age_seconds") == math.inf
    assert sample("grinder_reconcile_budget_calls_remaining_day") == 99
    try:
        await service.start()  # takes the first snapshot; no run yet
        assert service.tally.runs == 0
        age = sample("grinder_reconcile_last_snapshot_age_seconds")
        assert age is not None
        assert 0 <= age < 60
    finally:
        await service.close()


async def test_snapshot_fetches_open_orders_only_for_active_symbols(
    make_service: ServiceFactory,
) -> None:
    rig = await make_service()
    # No stream event for it (emitEvents=False): only a snapshot can find it.
    await rig.sim.place_order(
        "ETHUSDT", "BUY", "0.050", "1000", ours(5, "ETHUSDT"), emitEvents=False
    )
    rest = rig.running.venue.rest
    before = rest.weight_spent
    await rig.running.loop.snapshot()
    # positionRisk (5) names ETHUSDT; openOrders + openAlgoOrders for it (1 + 1).
    assert rest.weight_spent - before == 7
    assert rig.service.observed.get_order(ours(5, "ETHUSDT")) is not None
    before = rest.weight_spent
    await rig.running.loop.snapshot(full=True)
    assert rest.weight_spent - before == 85
    # The pace follows the regular snapshot's cost (7 weight at 18/min: the 30 s floor),
    # not the rare all-symbols one's.
    assert rig.running.loop.snapshot_interval_s() == 30.0


async def test_manual_position_is_planned_for_flatten_in_dry_run(
    make_service: ServiceFactory,
) -> None:
    rig = await make_service(action=RemediationAction.FLATTEN)
    await rig.sim.call("POST", "/positions", {"symbol": "ETHUSDT", "quantity": "-0.100"})
    await rig.wait_for(
        lambda: rig.counter("grinder_reconcile_action_planned_total", action="flatten") >= 1
    )
    assert rig.counter("grinder_reconcile_mismatch_total", type="POSITION_NONZERO_UNEXPECTED") == 1
    state = await rig.state()
    assert state["counters"]["writeRequests"] == 0
    amounts = {p["symbol"]: Decimal(p["positionAmt"]) for p in state["positions"]}
    assert amounts["ETHUSDT"] == Decimal("-0.100")


async def test_fill_whose_event_is_lost_is_normal_progress_but_the_position_is_reported(
    make_service: ServiceFactory,
) -> None:
    rig = await make_service(triage_miss_threshold=2)
    cid = ours(7)
    memory = rig.running.expected.source.memory
    assert memory is not None
    memory.record_order(
        ExpectedOrder(
            client_order_id=cid,
            symbol="BTCUSDT",
            side=Side.BUY,
            qty=Decimal("0.002"),
            price=Decimal("20000"),
            created_ts_ms=rig.service.clock(),
        )
    )
    await rig.sim.call("POST", "/stream/suppress", {"clientOrderId": cid})
    await rig.place_order(cid)
    await rig.running.loop.snapshot()
    await rig.sim.call("POST", "/orders/fill", {"clientOrderId": cid})
    await rig.running.loop.snapshot()  # the order is gone from the open orders; no event said why
    await rig.wait_for(
        lambda: rig.counter("grinder_reconcile_triage_total", outcome="found_filled") >= 1
    )
    filled = rig.service.observed.get_order(cid)
    assert filled is not None
    assert filled.status is OrderStatus.FILLED
    assert rig.counter("grinder_reconcile_mismatch_total", type="ORDER_MISSING_ON_EXCHANGE") == 0
    assert rig.counter("grinder_reconcile_mismatch_total", type="ORDER_STATUS_DIVERGENCE") == 0
    # The bot never booked the fill, so the position it did not intend shows.
    await rig.wait_for(
        lambda: (
            rig.counter("grinder_reconcile_mismatch_total", type="POSITION_NONZERO_UNEXPECTED") >= 1
        )
    )


RECORDER = """
import sys
from decimal import Decimal
from grinder.state.recorder import ExpectedRecorder

with ExpectedRecorder(sys.argv[1]) as rec:
    rec.order_placed(sys.argv[2], "BTCUSDT", "BUY", Decimal("0.002"), Decimal("20000"))
"""


@pytest.mark.subprocess
async def test_orders_recorded_by_a_bot_in_another_process_are_not_unexpected(
    make_service: ServiceFactory,
    tmp_path: Path,
) -> None:
    db = tmp_path / "expected.db"
    rig = await make_service(expected_db=db, action=RemediationAction.CANCEL_ALL)
    known, orphan = ours(8), ours(9)
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", RECORDER, str(db), known],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for cid in (known, orphan):
        await rig.place_order(cid)
    await rig.wait_for(
        lambda: rig.counter("grinder_reconcile_action_planned_total", action="cancel_all") >= 1
    )
    runs = rig.service.tally.runs
    await rig.wait_for(lambda: rig.service.tally.runs >= runs + 2)
    report = rig.service.tally.last_report
    assert report is not None
    unexpected = [m.client_order_id for m in report.mismatches]
    assert unexpected == [orphan]


# --- gate E: remediation needs a bot that keeps the expected state ---------------------------


async def test_live_service_cancels_nothing_while_the_bot_is_silent_and_resumes_when_it_beats(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """Every gate open, an orphan order of ours on the exchange, and a bot whose heartbeat has
    gone stale: the orphan is detected and reported, but no cancel reaches the simulator; once
    the bot heartbeats again, the orphan is cancelled."""
    db = tmp_path / "expected.db"
    rig = await make_service(
        live=True,
        expected_db=db,
        action=RemediationAction.CANCEL_ALL,
        expected_heartbeat_max_age_s=1.0,
    )
    bot = ExpectedRecorder(db)  # the bot: records its own order, then goes quiet
    known, orphan = ours(20), ours(21)
    bot.order_placed(known, "BTCUSDT", "BUY", "0.002", "20000")
    await rig.place_order(known)
    await rig.wait_for(lambda: rig.counter(AGE) < 1.0)  # live
    await rig.wait_for(lambda: rig.counter(AGE) > 1.0, timeout_s=5)  # the bot went silent
    before = (await rig.state())["counters"]["writeRequests"]
    await rig.place_order(orphan)
    blocked = "grinder_reconcile_action_blocked_total"
    await rig.wait_for(lambda: rig.counter(blocked, reason="expected_state_stale") >= 3)
    # Detection and reporting go on; only remediation is held back.
    assert rig.counter("grinder_reconcile_mismatch_total", type="ORDER_EXISTS_UNEXPECTED") == 1
    assert rig.counter("grinder_reconcile_action_executed_total", action="cancel_all") == 0
    state = await rig.state()
    assert state["counters"]["writeRequests"] == before  # no cancel reached the exchange
    assert sorted(o["clientOrderId"] for o in state["orders"]) == [known, orphan]
    status = await rig.control("GET", "/status")
    assert status["expected"]["live"] is False
    assert status["expected"]["source"] == "sqlite"
    assert status["expected"]["heartbeat_age_s"] > 1.0
    assert "the bot stopped writing" in status["expected"]["hint"]

    bot.heartbeat()  # the bot is back
    await rig.wait_for(
        lambda: rig.counter("grinder_reconcile_action_executed_total", action="cancel_all") >= 1
    )
    state = await rig.state()
    assert [o["clientOrderId"] for o in state["orders"]] == [known]  # the bot's order stays
    assert state["counters"]["writeRequests"] == before + 1
    bot.close()
    audit = [json.loads(line) for line in (rig.tmp / "audit.jsonl").read_text().splitlines()]
    stale = [a for a in audit if a.get("reason") == "expected_state_stale"]
    assert stale
    assert {a["client_order_id"] for a in stale} == {orphan}


AGE = "grinder_reconcile_expected_heartbeat_age_seconds"


async def test_a_memory_store_no_bot_writes_blocks_remediation_from_the_start(
    make_service: ServiceFactory,
) -> None:
    """The service alone (no --expected-db, no Redis, no bot in its process): its in-memory
    expected state says "the bot expects nothing", which must not be acted on."""
    rig = await make_service(live=True, bot=False, action=RemediationAction.CANCEL_ALL)
    assert rig.counter(AGE) == math.inf
    await rig.place_order(ours(22))
    blocked = "grinder_reconcile_action_blocked_total"
    await rig.wait_for(lambda: rig.counter(blocked, reason="expected_state_stale") >= 2)
    state = await rig.state()
    assert state["counters"]["writeRequests"] == 0
    status = await rig.control("GET", "/status")
    assert status["expected"]["heartbeat_age_s"] is None
    assert status["expected"]["source"] == "memory"
    assert "--expected-db" in status["expected"]["hint"]


# --- a stop while the service starts ---------------------------------------------------------


async def test_a_stop_while_starting_closes_what_the_start_opened_and_nothing_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start waits out a 429 (60 s) on its first request; the stop ends that wait, the
    start is cut short (no running service), and the close closes what was opened (the
    expected-state file, the venue) without touching what never was (no control socket
    left behind, no step failing on a part that does not exist)."""
    from grinder.exchange.port import ExchangeError
    from grinder.exchange.simulator import SimulatorServer
    from grinder.service.shutdown import unless_stopped
    from grinder.service.venue import VenueConnection

    caplog.set_level(logging.INFO, logger="grinder")
    closed: list[str] = []
    real_close = VenueConnection.close

    async def close(venue: VenueConnection) -> None:  # the real close, counted
        closed.append(venue.name)
        await real_close(venue)

    monkeypatch.setattr(VenueConnection, "close", close)
    sim = SimulatorServer(port=0, symbols=["BTCUSDT"])
    await sim.start()
    try:
        async with SimControl(sim.base_url) as ctl:
            await ctl.call("POST", "/faults/rate-limit", {"count": 1, "retryAfter": 60})
        opts = replace(
            options(tmp_path),
            venue_url=sim.base_url,
            expected_db=tmp_path / "expected.db",
            create_expected_db=True,
        )
        socket_path = tmp_path / "ctl" / "control.sock"
        service = ReconcileService(
            opts,
            credentials=credentials_for("sim"),
            budget=BudgetTracker(config=opts.reconcile),
            audit=None,
            control_socket=socket_path,
            env={},
        )
        starting = asyncio.create_task(unless_stopped(service.start(), service.stop, "start"))
        await wait_until_async(lambda: "(Retry-After)" in caplog.text, "the start waiting")
        service.request_stop()
        try:  # the REST client's wait ends at the stop: the start is cut short, or refused
            running = await asyncio.wait_for(starting, 5)
        except ExchangeError:
            running = None
        finally:
            await service.close()
        assert running is None
        assert closed == [opts.venue]  # the venue the start connected, closed once
        assert not socket_path.exists()
        assert service.tally.runs == 0
        assert service.registry.get_sample_value("grinder_reconcile_ready") == 0
        assert service.registry.get_sample_value("grinder_reconcile_up") == 0
        assert "SERVICE_STOPPED" in caplog.text
        assert "SERVICE_STOP_STEP_FAILED" not in caplog.text
        assert "SERVICE_STOP_STEP_TIMEOUT" not in caplog.text
        async with SimControl(sim.base_url) as ctl:
            state = await ctl.state()
        assert state["counters"]["writeRequests"] == 0
    finally:
        await sim.stop()
