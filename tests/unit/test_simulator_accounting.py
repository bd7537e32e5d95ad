"""The simulator's books and timers, in process on a ``ManualClock``: the ledger (fills,
commissions, realized PnL, income), funding settlements, the countdown cancel, amendments,
candles and the account settings."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from grinder.exchange.simulator.amend import MAX_AMENDMENTS, amend, parse_amendment
from grinder.exchange.simulator.candles import bucket_close, bucket_open
from grinder.exchange.simulator.clock import ManualClock
from grinder.exchange.simulator.config import SimConfig
from grinder.exchange.simulator.errors import ErrorReply
from grinder.exchange.simulator.exchange import Simulator
from grinder.exchange.simulator.orders import Order
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.settings import BRACKETS, max_notional

D = Decimal
EIGHT_HOURS = 8 * 60 * 60 * 1000


def make_sim(**overrides: Any) -> Simulator:
    values: dict[str, Any] = {"walk_frozen": True, "symbols": ["BTCUSDT", "ETHUSDT"]}
    values.update(overrides)
    return Simulator(SimConfig(**values), ManualClock())


def clock(sim: Simulator) -> ManualClock:
    assert isinstance(sim.clock, ManualClock)
    return sim.clock


def place(sim: Simulator, **values: Any) -> Order:
    base: dict[str, Any] = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT"}
    base.update(values)
    if base["type"] == "LIMIT":
        base.setdefault("timeInForce", "GTC")
    params = Params((k, str(v)) for k, v in base.items() if v is not None)
    return sim.account.place(sim.order_request(params))[1]


def set_mark(sim: Simulator, symbol: str, price: str) -> None:
    sim.book.set_mark(symbol, D(price))
    sim.match(symbol)


def events(sim: Simulator, kind: str) -> list[dict[str, Any]]:
    return [e for e in sim.hub.recent if e["e"] == kind]


def order_events(sim: Simulator, exec_type: str) -> list[dict[str, Any]]:
    return [e["o"] for e in events(sim, "ORDER_TRADE_UPDATE") if e["o"]["x"] == exec_type]


def income_sum(sim: Simulator, kind: str) -> Decimal:
    return sum((i.amount for i in sim.account.ledger.incomes if i.income_type == kind), D(0))


# --- the ledger ------------------------------------------------------------------------------


def test_every_fill_is_a_trade_and_the_wallet_is_the_start_plus_all_income() -> None:
    sim = make_sim()
    place(sim, type="MARKET", quantity="0.010")  # taker at 65000
    place(sim, side="SELL", quantity="0.004", price="66000.0")
    set_mark(sim, "BTCUSDT", "66000.0")  # maker at 66000, realizes 4.00
    place(sim, side="SELL", type="MARKET", quantity="0.006")  # taker, realizes 6.00
    trades = sim.account.ledger.trades
    assert [(t.maker, t.qty) for t in trades] == [
        (False, D("0.010")),
        (True, D("0.004")),
        (False, D("0.006")),
    ]
    assert [t.commission for t in trades] == [
        D("0.32500000"),  # 650 * 0.0005
        D("0.05280000"),  # 264 * 0.0002
        D("0.19800000"),  # 396 * 0.0005
    ]
    assert [t.realized for t in trades] == [D(0), D("4.000"), D("6.000")]
    assert income_sum(sim, "COMMISSION") == -sum((t.commission for t in trades), D(0))
    assert income_sum(sim, "REALIZED_PNL") == D(10)
    assert sim.account.wallet == sim.account.ledger.total_income()
    assert sim.account.ledger.incomes[0].income_type == "TRANSFER"
    assert sim.account.ledger.incomes[0].amount == D(10000)
    realized_ids = [
        i.trade_id for i in sim.account.ledger.incomes if i.income_type == "REALIZED_PNL"
    ]
    assert realized_ids == [str(t.trade_id) for t in trades[1:]], "no REALIZED_PNL of 0"


def test_the_stream_reports_the_same_commissions_and_pnl_as_the_ledger() -> None:
    sim = make_sim()
    place(sim, type="MARKET", quantity="0.010")
    set_mark(sim, "BTCUSDT", "64000.0")
    place(sim, side="SELL", type="MARKET", quantity="0.010")
    fills = order_events(sim, "TRADE")
    assert [D(f["n"]) for f in fills] == [t.commission for t in sim.account.ledger.trades]
    assert [D(f["rp"]) for f in fills] == [t.realized for t in sim.account.ledger.trades]
    assert [f["t"] for f in fills] == [t.trade_id for t in sim.account.ledger.trades]


# --- funding -----------------------------------------------------------------------------------


def test_funding_settles_at_the_next_eight_hour_mark_and_not_before() -> None:
    sim = make_sim()  # the clock starts at 2026-01-01 00:00 UTC, itself a funding time
    start = clock(sim).now
    place(sim, type="MARKET", quantity="0.010")  # long 0.010 at 65000
    place(sim, symbol="ETHUSDT", side="SELL", type="MARKET", quantity="1.000")  # short 1 ETH
    wallet = sim.account.wallet
    clock(sim).advance(EIGHT_HOURS - 1)
    sim.heartbeat(walk=False)
    assert income_sum(sim, "FUNDING_FEE") == 0
    assert sim.funding.history == []
    clock(sim).advance(1)
    sim.heartbeat(walk=False)
    long_pays = D("-0.06500000")  # 0.010 * 65000 * 0.0001
    short_gets = D("0.32000000")  # 1 * 3200 * 0.0001
    fees = sorted(i.amount for i in sim.account.ledger.incomes if i.income_type == "FUNDING_FEE")
    assert fees == [long_pays, short_gets]
    assert sim.account.wallet == wallet + long_pays + short_gets
    assert {e.time_ms for e in sim.funding.history} == {start + EIGHT_HOURS}
    updates = [e["a"] for e in events(sim, "ACCOUNT_UPDATE") if e["a"]["m"] == "FUNDING_FEE"]
    assert sorted(D(u["B"][0]["bc"]) for u in updates) == [long_pays, short_gets]
    assert all(u["P"] == [] for u in updates)


def test_a_clock_jump_over_two_funding_times_settles_both() -> None:
    sim = make_sim()
    place(sim, type="MARKET", quantity="0.010")
    clock(sim).advance(2 * EIGHT_HOURS + 5)
    sim.heartbeat(walk=False)
    assert len([i for i in sim.account.ledger.incomes if i.income_type == "FUNDING_FEE"]) == 2
    assert sim.funding.rates("BTCUSDT", None, None, 10)[0]["fundingRate"] == "0.00010000"


def test_funding_off_settles_nothing() -> None:
    sim = make_sim(funding_interval_ms=0)
    place(sim, type="MARKET", quantity="0.010")
    clock(sim).advance(3 * EIGHT_HOURS)
    sim.heartbeat(walk=False)
    assert income_sum(sim, "FUNDING_FEE") == 0
    assert sim.funding.history == []


# --- the countdown cancel -----------------------------------------------------------------------


def test_a_countdown_cancels_the_symbols_open_orders_when_it_ends_and_nothing_else() -> None:
    sim = make_sim()
    first = place(sim, quantity="0.010", price="60000.0")
    second = place(sim, quantity="0.010", price="60001.0")
    other = place(sim, symbol="ETHUSDT", quantity="0.100", price="3000.00")
    algo = sim.algos.place(
        sim.algo_request(
            Params.of(
                algoType="CONDITIONAL",
                symbol="BTCUSDT",
                side="BUY",
                type="STOP_MARKET",
                quantity="0.010",
                triggerPrice="70000",
            )
        )
    )
    place(sim, type="MARKET", quantity="0.010")
    sim.countdowns.set("BTCUSDT", 5000, clock(sim).now)
    clock(sim).advance(4999)
    sim.heartbeat(walk=False)
    assert first.is_open
    assert second.is_open
    clock(sim).advance(1)
    sim.heartbeat(walk=False)
    assert (first.status, second.status) == ("CANCELED", "CANCELED")
    assert [o["c"] for o in order_events(sim, "CANCELED")] == [
        first.client_order_id,
        second.client_order_id,
    ]
    assert other.is_open, "another symbol's order was canceled"
    assert algo.is_open, "a conditional order was canceled"
    assert sim.account.position("BTCUSDT", "BOTH").amt == D("0.010"), "the position moved"
    assert sim.countdowns.timers == {}, "a timer fires once"
    assert [f.canceled for f in sim.countdowns.firings] == [2]


def test_a_countdown_call_replaces_the_timer_and_zero_stops_it() -> None:
    sim = make_sim()
    order = place(sim, quantity="0.010", price="60000.0")
    sim.countdowns.set("BTCUSDT", 1000, clock(sim).now)
    clock(sim).advance(900)
    sim.countdowns.set("BTCUSDT", 1000, clock(sim).now)  # the heartbeat of a live client
    clock(sim).advance(900)
    sim.heartbeat(walk=False)
    assert order.is_open
    assert sim.countdowns.set("BTCUSDT", 0, clock(sim).now) == {
        "symbol": "BTCUSDT",
        "countdownTime": "0",
    }
    clock(sim).advance(10_000)
    sim.heartbeat(walk=False)
    assert order.is_open
    assert sim.countdowns.firings == []


# --- amendments --------------------------------------------------------------------------------


def amend_to(sim: Simulator, order: Order, qty: str, price: str | None, **more: str) -> Order:
    params = Params.of(side=order.side, quantity=qty, price=price, **more)
    return amend(sim.account, order, parse_amendment(params, order, sim.book.mark))


def test_an_amendment_keeps_the_id_and_reports_amendment() -> None:
    sim = make_sim()
    order = place(sim, quantity="0.010", price="60000.0", newClientOrderId="am-1")
    amend_to(sim, order, "0.020", "60100.0")
    assert (order.qty, order.price, order.status) == (D("0.020"), D("60100.0"), "NEW")
    amended = order_events(sim, "AMENDMENT")
    assert [(o["i"], o["q"], o["p"], o["X"]) for o in amended] == [
        (order.order_id, "0.02", "60100.00", "NEW")
    ]
    assert sim.account.open_by_client[("BTCUSDT", "am-1")] is order


@pytest.mark.parametrize(
    ("qty", "price", "code"),
    [
        ("0.010", "60000.0", -5027),  # nothing changes
        ("0.0105", "60000.0", -1111),  # quantity precision
        ("0.010", "60000.05", -4014),  # tick size
        ("0.010", "80000.0", -4016),  # PERCENT_PRICE
        ("0.0001", "60000.0", -1111),
        ("0.001", "5000.0", -4164),  # MIN_NOTIONAL
    ],
)
def test_a_refused_amendment_leaves_the_order_as_it_was(qty: str, price: str, code: int) -> None:
    sim = make_sim()
    order = place(sim, quantity="0.010", price="60000.0")
    with pytest.raises(ErrorReply) as refused:
        amend_to(sim, order, qty, price)
    assert refused.value.code == code
    assert (order.qty, order.price, order.status) == (D("0.010"), D("60000.0"), "NEW")
    assert order_events(sim, "AMENDMENT") == []


def test_an_amendment_to_no_more_than_the_executed_quantity_cancels_the_order() -> None:
    sim = make_sim()
    order = place(sim, quantity="0.010", price="60000.0")
    sim.book.set_liquidity("BTCUSDT", D("0.004"))
    set_mark(sim, "BTCUSDT", "60000.0")
    assert order.executed_qty == D("0.004")
    amend_to(sim, order, "0.004", "59000.0")
    assert order.status == "CANCELED"


def test_a_gtx_amendment_that_would_take_cancels_the_order() -> None:
    sim = make_sim()
    order = place(sim, side="SELL", quantity="0.010", price="66000.0", timeInForce="GTX")
    amend_to(sim, order, "0.010", "64900.0")
    assert order.status == "CANCELED"
    assert order.executed_qty == 0


def test_an_amendment_across_the_mark_trades_as_a_taker_at_the_mark() -> None:
    sim = make_sim()
    order = place(sim, quantity="0.010", price="60000.0")
    amend_to(sim, order, "0.010", "65100.0")
    assert order.status == "FILLED"
    trade = sim.account.ledger.trades[-1]
    assert (trade.price, trade.maker) == (D("65000.00"), False)


def test_amendments_are_limited_and_price_match_replaces_the_price() -> None:
    sim = make_sim()
    order = place(sim, quantity="0.010", price="60000.0")
    with pytest.raises(ErrorReply) as both:
        amend_to(sim, order, "0.010", "60000.0", priceMatch="QUEUE")
    assert both.value.code == -1128
    amend_to(sim, order, "0.010", None, priceMatch="QUEUE")
    assert order.price == D("64999.90")
    order.amendments = MAX_AMENDMENTS
    with pytest.raises(ErrorReply) as many:
        amend_to(sim, order, "0.011", "60000.0")
    assert many.value.code == -5026


# --- candles -----------------------------------------------------------------------------------


def test_klines_record_the_marks_and_the_accounts_fills() -> None:
    sim = make_sim()
    start = clock(sim).now
    sim.heartbeat(walk=False)
    set_mark(sim, "BTCUSDT", "65100.0")
    set_mark(sim, "BTCUSDT", "64900.0")
    place(sim, type="MARKET", quantity="0.010")
    clock(sim).advance(60_000)
    set_mark(sim, "BTCUSDT", "65050.0")
    rows = sim.candles.klines("BTCUSDT", "1m", None, None, 10)
    assert [r[0] for r in rows] == [start, start + 60_000]
    first = rows[0]
    assert first[1:6] == ["65000.00", "65100.00", "64900.00", "64900.00", "0.010"]
    assert (first[6], first[8], first[9]) == (start + 59_999, 1, "0.010")
    five = sim.candles.klines("BTCUSDT", "5m", None, None, 10)
    assert len(five) == 1
    assert five[0][1:5] == ["65000.00", "65100.00", "64900.00", "65050.00"]
    assert sim.candles.klines("BTCUSDT", "1m", start + 60_000, None, 10)[0][0] == start + 60_000


# --- settings ----------------------------------------------------------------------------------


def test_leverage_is_bounded_by_the_brackets_and_the_open_position() -> None:
    sim = make_sim()
    settings = sim.account.settings
    assert settings.set_leverage("BTCUSDT", 125, D(0)) == BRACKETS[0].cap
    with pytest.raises(ErrorReply) as too_high:
        settings.set_leverage("BTCUSDT", 126, D(0))
    assert too_high.value.code == -4028
    with pytest.raises(ErrorReply) as too_big:
        settings.set_leverage("BTCUSDT", 125, D(BRACKETS[0].cap + 1))
    assert too_big.value.code == -2027
    assert settings.leverage_of("BTCUSDT") == 125
    assert max_notional(20) == 100_000_000
    cum = [b.cum for b in BRACKETS]
    assert cum[:3] == [D(0), D(50), D(950)]  # floor * (ratio - previous ratio), accumulated


def test_weeks_open_on_monday_and_months_on_the_first() -> None:
    thursday_noon = 1_767_225_600_000 + 12 * 3_600_000  # 2026-01-01 was a Thursday
    monday = 1_767_225_600_000 - 3 * 86_400_000  # 2025-12-29
    assert bucket_open("1w", thursday_noon) == monday
    assert bucket_open("1M", thursday_noon) == 1_767_225_600_000
    assert bucket_close("1M", 1_767_225_600_000) == 1_769_904_000_000 - 1  # 2026-02-01
    assert bucket_open("4h", thursday_noon) == thursday_noon
    assert bucket_close("1d", 1_767_225_600_000) == 1_767_225_600_000 + 86_400_000 - 1


def test_margin_type_refuses_a_position_and_multi_assets_an_isolated_symbol() -> None:
    sim = make_sim()
    settings = sim.account.settings
    with pytest.raises(ErrorReply) as position:
        settings.set_margin_type("BTCUSDT", "ISOLATED", orders=False, position=True)
    assert position.value.code == -4048
    settings.set_margin_type("BTCUSDT", "ISOLATED", orders=False, position=False)
    with pytest.raises(ErrorReply) as isolated:
        settings.set_multi_assets(True)
    assert isolated.value.code == -4167
    assert sim.account.settings.symbol_config("BTCUSDT")["marginType"] == "ISOLATED"
