"""The runbook-14 scenarios against the bundled simulator, through the real adapter.

Each scenario gets its own simulator (so they cannot disturb each other),
started in-process on an ephemeral loopback port. Drift is injected through
the simulator's control API as if placed by hand, the drift is left to age past
the grace periods (the three scenarios wait together, about five seconds),
then each scenario snapshots and reconciles over real HTTP. "Port calls" is the
number of order write requests (new order, cancel) the simulator received
during the run; in live mode the scenario also checks the simulator's account
afterwards.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from grinder.clock import Clock, wall_clock_ms
from grinder.exchange.binance.credentials import Credentials
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.binance.rest import BinanceRestClient
from grinder.exchange.simulator import SimConfig, SimulatorServer
from grinder.exchange.simulator.client import SimControl
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.identity import generate_client_order_id
from grinder.reporting.audit import AuditWriter
from grinder.smoke import (
    ORDER_QTY,
    POSITION_QTY,
    SCENARIOS,
    SYMBOL,
    Scenario,
    ScenarioResult,
    SmokeBudget,
    SmokeSettings,
    check,
    reconcile_once,
)

SIM_KEY, SIM_SECRET = "smoke-key", "smoke-secret"


async def _inject(ctl: SimControl, scenario: Scenario, now_ms: int) -> None:
    if scenario.inject_order:
        cid = generate_client_order_id(
            strategy_id="d", symbol=SYMBOL, level_id=1, ts_seconds=now_ms // 1000, seq=1
        )
        state = await ctl.state()
        mark = Decimal(str(state["markPrices"][SYMBOL]))
        price = (mark * Decimal("0.8")).quantize(Decimal("0.1"))
        await ctl.call(
            "POST",
            "/orders",
            {
                "symbol": SYMBOL,
                "side": "BUY",
                "type": "LIMIT",
                "quantity": str(ORDER_QTY * 10),
                "price": str(price),
                "timeInForce": "GTC",
                "clientOrderId": cid,
            },
        )
    if scenario.inject_position:
        await ctl.call("POST", "/positions", {"symbol": SYMBOL, "quantity": str(POSITION_QTY)})


async def _write_requests(ctl: SimControl) -> int:
    state = await ctl.state()
    return int(state["counters"]["writeRequests"])


async def run_sim_scenarios(
    settings: SmokeSettings,
    *,
    audit: AuditWriter | None,
    budget: SmokeBudget,
    clock: Clock = wall_clock_ms,
) -> list[ScenarioResult]:
    config = SimConfig(seed=14, walk_frozen=True)
    sims = [
        SimulatorServer(
            port=0, api_key=SIM_KEY, api_secret=SIM_SECRET, symbols=[SYMBOL], config=config
        )
        for _ in SCENARIOS
    ]
    try:
        for sim in sims:
            await sim.start()
        for sim, scenario in zip(sims, SCENARIOS, strict=True):
            async with SimControl(sim.base_url) as ctl:
                await _inject(ctl, scenario, clock())
        defaults = ReconcileConfig()
        await asyncio.sleep(max(defaults.order_grace_ms, defaults.position_grace_ms) / 1000 + 0.2)
        results = []
        for sim, scenario in zip(sims, SCENARIOS, strict=True):
            results.append(await _run_one(sim, scenario, settings, audit, budget, clock))
        return results
    finally:
        for sim in sims:
            await sim.stop()


async def _run_one(
    sim: SimulatorServer,
    scenario: Scenario,
    settings: SmokeSettings,
    audit: AuditWriter | None,
    budget: SmokeBudget,
    clock: Clock,
) -> ScenarioResult:
    async with (
        BinanceRestClient(sim.base_url, Credentials(SIM_KEY, SIM_SECRET)) as rest,
        SimControl(sim.base_url) as ctl,
    ):
        port = BinanceFuturesPort(rest)
        await rest.sync_time()
        before = await _write_requests(ctl)
        report = await reconcile_once(
            scenario, settings, port, audit=audit, budget=budget, clock=clock
        )
        writes = await _write_requests(ctl) - before
        orders = await port.fetch_open_orders()
        positions = await port.fetch_positions()
    result = ScenarioResult(scenario, report, port_calls=writes)
    check(
        result,
        settings,
        orders_left=sorted(o.client_order_id for o in orders),
        position_left=any(p.qty for p in positions),
    )
    return result
