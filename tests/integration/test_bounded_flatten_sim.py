"""Flattens that cannot surprise, against the simulator over real HTTP with a thin book.

* A bounded flatten (``flatten_max_slippage_bps``) is a reduce-only IOC LIMIT: its worst
  fill stays within the bound of the mark; what the book has no more of within it is
  left, never chased. The figures (fills, worst price, the bound) are printed.
* An unbounded flatten on the same book walks it (the contrast the bound exists for).
* Self-trade prevention: a flatten meeting a resting order of the bot's (same account)
  expires itself (``EXPIRE_TAKER``); the bot's order stays open.
* The unfilled rest is flattened again from the position read now, within the action's
  request bound (3), never past zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from grinder.budget.tracker import BudgetTracker
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.simulator import SimulatorServer
from grinder.exchange.simulator.client import SimControl
from grinder.reconcile.actions import ActionResult
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.labels import ResultStatus
from grinder.reconcile.routing import ActionKind, Routed
from grinder.reconcile.types import Mismatch, MismatchType, PositionSide
from grinder.remediation.executor import RemediationExecutor
from tests.support.simulator_in_process import frozen_simulator, signed_rest, sim_control

KEY, SECRET = "flat-key", "flat-secret"
SYMBOL = "BTCUSDT"
MARK = Decimal("65000.00")  # the simulator's BTCUSDT start (tick 0.10)


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    async with frozen_simulator(KEY, SECRET, seed=3, symbols=(SYMBOL,)) as server:
        yield server


@pytest.fixture
async def ctl(sim: SimulatorServer) -> AsyncIterator[SimControl]:
    async with sim_control(sim) as control:
        yield control


@pytest.fixture
async def port(sim: SimulatorServer) -> AsyncIterator[BinanceFuturesPort]:
    async with signed_rest(sim, KEY, SECRET) as client:
        yield BinanceFuturesPort(client)


def executor(port: BinanceFuturesPort, bps: Decimal | None) -> RemediationExecutor:
    config = ReconcileConfig(
        action=RemediationAction.FLATTEN,
        dry_run=False,
        allow_active_remediation=True,
        symbol_whitelist=[SYMBOL],
        cooldown_seconds=0,
        max_flatten_notional_usdt=Decimal("100000"),
        max_notional_per_run=Decimal("100000"),
        max_notional_per_day=Decimal("100000"),
        flatten_max_slippage_bps=bps,
    )

    async def no_wait(_seconds: float) -> None:
        await asyncio.sleep(0)

    return RemediationExecutor(
        config=config,
        port=port,
        armed=True,
        budget=BudgetTracker(config=config),
        env={"ALLOW_MAINNET_TRADE": "1"},
        expected_heartbeat_age=lambda: 0.0,
        sleep=no_wait,
    )


async def flatten(ex: RemediationExecutor) -> ActionResult:
    m = Mismatch(
        type=MismatchType.POSITION_NONZERO_UNEXPECTED,
        symbol=SYMBOL,
        position_side=PositionSide.BOTH,
    )
    ctx = ex.begin_run()
    return await ex.execute(Routed(m, ActionKind.FLATTEN, 30), ctx)


async def setup_book(ctl: SimControl, long_qty: str, levels: int, level_qty: str) -> None:
    await ctl.call("POST", "/positions", {"symbol": SYMBOL, "quantity": long_qty, "via": "set"})
    await ctl.call(
        "POST",
        "/depth",
        {"symbol": SYMBOL, "levels": levels, "quantity": level_qty, "spacingTicks": 20},
    )


def position(sim: SimulatorServer) -> Decimal:
    return sim.exchange.account.position(SYMBOL, "BOTH").amt


def sell_fills(sim: SimulatorServer) -> list[Any]:
    """Every fill of a remediation (SELL) order, as the venue booked it."""
    return [t for t in sim.exchange.account.ledger.trades if t.side == "SELL"]


async def sells(sim: SimulatorServer) -> list[dict[str, Any]]:
    """Every remediation order the venue received, with its fills (the simulator's own)."""
    orders = [o for o in sim.exchange.account.orders.values() if o.side == "SELL"]
    return [
        {
            "cid": o.client_order_id,
            "type": o.type,
            "price": o.price,
            "status": o.status,
            "executed": o.executed_qty,
            "avg": o.avg_price,
        }
        for o in orders
    ]


async def test_a_bounded_flatten_never_fills_past_its_bound(
    sim: SimulatorServer,
    ctl: SimControl,
    port: BinanceFuturesPort,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Levels every 2.0 (20 ticks) from the mark down, 0.010 each. 5 bps of 65000 is 32.5:
    # 17 levels (65000 .. 64968) are within the bound. The simulator's levels are there
    # again at each request (a book that refills): three requests fill 3 x 0.170.
    await setup_book(ctl, "1.000", levels=100, level_qty="0.010")
    bps = Decimal("5")
    bound = MARK * (1 - bps / 10_000)
    result = await flatten(executor(port, bps))
    prices = [t.price for t in sell_fills(sim)]
    filled = sum((t.qty for t in sell_fills(sim)), Decimal(0))
    assert result.status is ResultStatus.EXECUTED
    assert min(prices) >= bound
    assert min(prices) == Decimal("64968.00")
    assert len(result.attempts) == 3  # the action's request bound
    assert filled == Decimal("0.510")
    assert result.qty == filled
    assert "the rest expired" in (result.error or "")
    assert position(sim) == Decimal("1.000") - filled  # the rest is left to the next run
    orders = await sells(sim)
    assert [o["type"] for o in orders] == ["LIMIT"] * 3
    assert all(o["price"] == Decimal("64967.50") for o in orders)  # the bound, on the tick
    with capsys.disabled():
        print(
            f"\nBounded flatten: bound={bps} bps (limit {orders[0]['price']}, mark {MARK}) "
            f"fills={len(prices)} filled={filled} of 1.000 worst={min(prices)} "
            f"best={max(prices)} requests={len(result.attempts)}"
        )


async def test_an_unbounded_flatten_walks_the_thin_book(
    sim: SimulatorServer,
    ctl: SimControl,
    port: BinanceFuturesPort,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await setup_book(ctl, "0.500", levels=100, level_qty="0.010")
    result = await flatten(executor(port, None))
    prices = [t.price for t in sell_fills(sim)]
    assert result.status is ResultStatus.EXECUTED
    assert position(sim) == 0
    assert min(prices) == MARK - Decimal("98")  # 50 levels deep
    with capsys.disabled():
        print(f"\nUnbounded flatten: fills={len(prices)} worst={min(prices)} (mark {MARK})")


async def test_the_rest_of_a_thin_book_is_flattened_again_within_three_requests(
    sim: SimulatorServer, ctl: SimControl, port: BinanceFuturesPort
) -> None:
    # Two levels of 0.010: each MARKET request fills 0.020 and its rest expires; the levels
    # are there again for the next request, read from the position left each time.
    await setup_book(ctl, "0.100", levels=2, level_qty="0.010")
    result = await flatten(executor(port, None))
    assert result.status is ResultStatus.EXECUTED
    assert len(result.attempts) == 3
    assert result.qty == Decimal("0.060")
    assert position(sim) == Decimal("0.040")
    assert len(await sells(sim)) == 3
    assert all(o["executed"] == Decimal("0.020") for o in await sells(sim))


async def test_a_flatten_meeting_the_bots_resting_order_expires_itself(
    sim: SimulatorServer, ctl: SimControl, port: BinanceFuturesPort
) -> None:
    await setup_book(ctl, "0.050", levels=10, level_qty="0.010")
    # The bot's resting bid sits between the first and the second level.
    await ctl.place_order(SYMBOL, "BUY", "0.010", "64999.00", "bot-bid-1")
    result = await flatten(executor(port, None))
    account = sim.exchange.account
    bot = next(o for o in account.orders.values() if o.client_order_id == "bot-bid-1")
    assert bot.status == "NEW"  # never expired by the remediation order
    assert bot.executed_qty == 0
    ours = await sells(sim)
    assert ours[0]["status"] == "EXPIRED_IN_MATCH"
    assert result.status is ResultStatus.EXECUTED
    assert result.qty == Decimal("0.010")
    assert "self-trade prevention" in (result.error or "")
    assert len(ours) == 1  # not sent again into the same resting order
