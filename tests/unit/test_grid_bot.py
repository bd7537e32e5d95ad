"""The demo grid bot: level arithmetic, and "record, then send" against the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from grinder.bot.grid import (
    GridBot,
    GridSettings,
    Level,
    grid_levels,
    grid_spacing,
    next_level,
    round_to_tick,
)
from grinder.exchange.binance.credentials import Credentials
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.binance.rest import BinanceRestClient, Params
from grinder.exchange.simulator.client import SimControl
from grinder.exchange.simulator.config import SimConfig
from grinder.exchange.simulator.server import SimulatorServer
from grinder.reconcile.identity import is_ours, parse_client_order_id
from grinder.reconcile.types import ExpectedOrder, OrderStatus, PositionSide, Side
from grinder.state.expected import MemoryExpectedStore

D = Decimal


# --- levels ---------------------------------------------------------------------------------


def test_spacing_is_a_percentage_of_the_mark_rounded_to_the_tick() -> None:
    assert grid_spacing(D("65000.00"), D("0.10"), D("0.5")) == D("325.0")
    assert grid_spacing(D("3200.00"), D("0.01"), D("0.33")) == D("10.56")
    assert grid_spacing(D("1.00"), D("0.10"), D("0.5")) == D("0.10")  # at least one tick
    assert round_to_tick(D("65000.07"), D("0.10")) == D("65000.0")


def test_levels_alternate_buy_below_and_sell_above_nearest_first() -> None:
    levels = grid_levels(D("65000.0"), D("325.0"), 2)
    assert [(lv.index, lv.side, lv.price, lv.level_id) for lv in levels] == [
        (-1, Side.BUY, D("64675.0"), "D1"),
        (1, Side.SELL, D("65325.0"), "U1"),
        (-2, Side.BUY, D("64350.0"), "D2"),
        (2, Side.SELL, D("65650.0"), "U2"),
    ]


def test_a_fill_calls_for_the_opposite_side_one_level_further() -> None:
    buy = Level(-1, Side.BUY, D("64675.0"))
    sell = next_level(D("65000.0"), D("325.0"), buy)
    assert (sell.index, sell.side, sell.price, sell.level_id) == (0, Side.SELL, D("65000.0"), "U0")
    back = next_level(D("65000.0"), D("325.0"), sell)
    assert (back.index, back.side, back.price) == (-1, Side.BUY, D("64675.0"))


def test_a_level_at_or_below_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="priced"):
        grid_levels(D("100"), D("60"), 2)


# --- against the simulator ------------------------------------------------------------------


@dataclass
class Step:
    what: str
    cid: str
    on_exchange: bool


class SpyStore(MemoryExpectedStore):
    """Logs every write, and whether the exchange already knew the order at that moment."""

    def __init__(self, log: list[Step], knows: Callable[[str], bool]) -> None:
        super().__init__()
        self.log = log
        self.knows = knows

    def record_order(self, order: ExpectedOrder) -> None:
        self.log.append(Step("record", order.client_order_id, self.knows(order.client_order_id)))
        super().record_order(order)

    def mark_cancel_requested(self, client_order_id: str, now_ms: int) -> None:
        self.log.append(Step("cancel_requested", client_order_id, True))
        super().mark_cancel_requested(client_order_id, now_ms)


class SpyRest(BinanceRestClient):
    """Logs every order write before it leaves."""

    log: list[Step]

    async def request(self, method: str, path: str, params: Params = None, **kw: Any) -> Any:
        if path == "/fapi/v1/order" and method in ("POST", "DELETE"):
            items = dict(params.items() if isinstance(params, dict) else params or [])
            cid = str(items.get("newClientOrderId") or items.get("origClientOrderId"))
            self.log.append(Step(f"send {method}", cid, False))
        return await super().request(method, path, params, **kw)


@dataclass
class Rig:
    sim: SimulatorServer
    bot: GridBot
    store: SpyStore
    log: list[Step]
    ctl: SimControl


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    sim = SimulatorServer(port=0, config=SimConfig(symbols=["BTCUSDT"], walk_frozen=True))
    await sim.start()
    log: list[Step] = []

    def known(cid: str) -> bool:
        return any(o.client_order_id == cid for o in sim.exchange.account.orders.values())

    store = SpyStore(log, known)
    rest = SpyRest(sim.base_url, Credentials(sim.api_key, sim.api_secret))
    rest.log = log
    bot = GridBot(
        BinanceFuturesPort(rest), store, GridSettings(levels=2), ws_base_url=sim.ws_base_url
    )
    ctl = SimControl(sim.base_url)
    try:
        yield Rig(sim, bot, store, log, ctl)
    finally:
        await ctl.close()
        await bot.stop()
        await rest.close()
        await sim.stop()


def _assert_recorded_before_sent(log: list[Step], record: str, send: str) -> None:
    sends = [i for i, s in enumerate(log) if s.what == send]
    assert sends, log
    for i in sends:
        cid = log[i].cid
        recorded = [j for j, s in enumerate(log) if s.what == record and s.cid == cid]
        assert recorded, f"{cid} sent but never recorded"
        assert recorded[0] < i, f"{cid} sent before it was recorded"


async def _until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_each_order_is_recorded_before_it_is_sent(rig: Rig) -> None:
    await rig.bot.start()
    _assert_recorded_before_sent(rig.log, "record", "send POST")
    records = [s for s in rig.log if s.what == "record"]
    assert len(records) == 4
    assert not any(s.on_exchange for s in records), "the exchange knew an order before its record"
    for step in records:
        parsed = parse_client_order_id(step.cid)
        assert parsed is not None
        assert parsed.strategy_id == "d"
        assert is_ours(step.cid)
        expected = rig.store.get_order(step.cid)
        assert expected is not None
        assert expected.expected_open
    position = rig.store.get_position(("BTCUSDT", PositionSide.BOTH))
    assert position is not None
    assert position.qty == 0  # it intends to start flat
    assert {o.client_order_id for o in rig.sim.exchange.account.open_orders()} == {
        s.cid for s in records
    }


async def test_a_cancel_is_recorded_before_it_is_sent(rig: Rig) -> None:
    await rig.bot.start()
    await rig.bot.stop(cancel_orders=True)
    _assert_recorded_before_sent(rig.log, "cancel_requested", "send DELETE")
    assert list(rig.sim.exchange.account.open_orders()) == []
    assert all(not o.expected_open for o in rig.store.orders())


async def test_the_bot_books_its_own_fill_and_replaces_the_level(rig: Rig) -> None:
    bot = rig.bot
    await bot.start()
    buy = next(cid for cid, o in bot.orders.items() if o.level.index == -1)
    await rig.ctl.call(
        "POST", "/mark", {"symbol": "BTCUSDT", "price": str(bot.center - bot.spacing)}
    )
    await _until(lambda: bot.fills == 1 and len(bot.orders) == 5)
    await bot.idle()
    booked = rig.store.get_order(buy)
    assert booked is not None
    assert booked.status is OrderStatus.FILLED
    position = rig.store.get_position(("BTCUSDT", PositionSide.BOTH))
    assert position is not None
    assert position.qty == D("0.002")
    new = [cid for cid, o in bot.orders.items() if o.level.index == 0]
    assert len(new) == 1
    assert bot.orders[new[0]].level.side is Side.SELL
    _assert_recorded_before_sent(rig.log, "record", "send POST")


async def test_a_fill_the_bot_never_hears_of_stays_unbooked(rig: Rig) -> None:
    bot = rig.bot
    await bot.start()
    victim = next(cid for cid, o in bot.orders.items() if o.level.index == -2)
    await rig.ctl.call("POST", "/stream/suppress", {"clientOrderId": victim})
    await rig.ctl.call("POST", "/orders/fill", {"clientOrderId": victim})
    await asyncio.sleep(0.3)
    await bot.idle()
    assert bot.orders[victim].open
    assert bot.position == 0
    expected = rig.store.get_order(victim)
    assert expected is not None
    assert expected.expected_open


async def test_an_order_the_exchange_refuses_is_booked_rejected(rig: Rig) -> None:
    bot = rig.bot
    await bot.setup()
    cid = await bot.place(Level(-1, Side.BUY, bot.center - D("0.05")))  # off the 0.10 tick
    expected = rig.store.get_order(cid)
    assert expected is not None
    assert expected.status is OrderStatus.REJECTED
    assert not expected.expected_open
    assert list(rig.sim.exchange.account.open_orders()) == []
