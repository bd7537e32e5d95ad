"""Matching, fills and positions: resting LIMITs, partial fills, MARKET, IOC/FOK/GTX,
reduce-only, hedge mode, the wallet, and the events each change emits."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from grinder.exchange.simulator.clock import ManualClock
from grinder.exchange.simulator.config import SimConfig
from grinder.exchange.simulator.errors import ErrorReply
from grinder.exchange.simulator.exchange import Simulator
from grinder.exchange.simulator.orders import Order
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.validation import parse_new_order

D = Decimal


def make_sim(**overrides: Any) -> Simulator:
    values: dict[str, Any] = {"walk_frozen": True, "symbols": ["BTCUSDT", "ETHUSDT", "SOLUSDT"]}
    values.update(overrides)
    config = SimConfig(**values)
    return Simulator(config, ManualClock())


def place(sim: Simulator, **values: Any) -> Order:
    base: dict[str, Any] = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT"}
    base.update(values)
    if base["type"] == "LIMIT":
        base.setdefault("timeInForce", "GTC")
    params = Params((k, str(v)) for k, v in base.items() if v is not None)
    req = parse_new_order(
        params, sim.specs, dual=sim.account.dual, mark_of=sim.book.mark, now_ms=sim.now_ms()
    )
    return sim.account.place(req)[1]


def events(sim: Simulator, kind: str | None = None) -> list[dict[str, Any]]:
    return [e for e in sim.hub.recent if kind is None or e["e"] == kind]


def order_updates(sim: Simulator) -> list[tuple[str, str]]:
    return [(e["o"]["x"], e["o"]["X"]) for e in events(sim, "ORDER_TRADE_UPDATE")]


def set_mark(sim: Simulator, symbol: str, price: str) -> None:
    sim.book.set_mark(symbol, D(price))
    sim.match(symbol)


def position_amt(sim: Simulator, symbol: str = "BTCUSDT", side: str = "BOTH") -> Decimal:
    return sim.account.position(symbol, side).amt


def test_a_limit_buy_below_the_mark_rests_and_fills_when_the_mark_crosses() -> None:
    sim = make_sim()
    order = place(sim, quantity="0.010", price="64000.0")
    assert order.status == "NEW"
    assert order_updates(sim) == [("NEW", "NEW")]
    set_mark(sim, "BTCUSDT", "64000.10")
    assert order.status == "NEW"
    set_mark(sim, "BTCUSDT", "63990.00")
    assert order.status == "FILLED"
    assert order.avg_price == D("64000.0")  # a maker trades at its own price
    assert position_amt(sim) == D("0.010")
    assert order_updates(sim)[-1] == ("TRADE", "FILLED")
    trade = events(sim, "ORDER_TRADE_UPDATE")[-1]["o"]
    assert trade["m"] is True
    assert trade["L"] == "64000"
    assert trade["n"] == "0.128"  # 640 * 0.0002 maker fee


def test_a_marketable_limit_order_takes_at_the_mark() -> None:
    sim = make_sim()
    order = place(sim, quantity="0.010", price="66000.0")
    assert order.status == "FILLED"
    assert order.avg_price == D("65000.00")
    assert events(sim, "ORDER_TRADE_UPDATE")[-1]["o"]["m"] is False


def test_liquidity_caps_each_pass_so_orders_fill_partially() -> None:
    sim = make_sim()
    sim.book.set_liquidity("BTCUSDT", D("0.004"))
    order = place(sim, quantity="0.010", price="64000.0")
    set_mark(sim, "BTCUSDT", "63900.0")
    assert (order.status, order.executed_qty) == ("PARTIALLY_FILLED", D("0.004"))
    sim.heartbeat(walk=False)
    assert (order.status, order.executed_qty) == ("PARTIALLY_FILLED", D("0.008"))
    sim.heartbeat(walk=False)
    assert (order.status, order.executed_qty) == ("FILLED", D("0.010"))
    assert order_updates(sim) == [
        ("NEW", "NEW"),
        ("TRADE", "PARTIALLY_FILLED"),
        ("TRADE", "PARTIALLY_FILLED"),
        ("TRADE", "FILLED"),
    ]
    zs = [e["o"]["z"] for e in events(sim, "ORDER_TRADE_UPDATE")]
    assert zs == ["0", "0.004", "0.008", "0.01"]


def test_market_orders_fill_at_once_and_report_new_then_trade() -> None:
    sim = make_sim()
    order = place(sim, type="MARKET", side="SELL", quantity="0.5")
    assert order.status == "FILLED"
    assert position_amt(sim) == D("-0.5")
    assert order_updates(sim) == [("NEW", "NEW"), ("TRADE", "FILLED")]
    kinds = [e["e"] for e in events(sim)]
    assert kinds == ["ORDER_TRADE_UPDATE", "TRADE_LITE", "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"]
    update = events(sim, "ACCOUNT_UPDATE")[0]["a"]
    assert update["m"] == "ORDER"
    assert update["P"][0]["pa"] == "-0.5"


def test_the_ack_response_is_the_order_before_matching() -> None:
    sim = make_sim()
    params = Params(
        [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.002")]
    )
    req = parse_new_order(params, sim.specs, dual=False, mark_of=sim.book.mark, now_ms=0)
    ack, order = sim.account.place(req)
    assert (ack["status"], ack["executedQty"]) == ("NEW", "0.000")
    assert order.status == "FILLED"


def test_ioc_remainder_expires_and_fok_that_cannot_fill_is_rejected() -> None:
    sim = make_sim()
    sim.book.set_liquidity("BTCUSDT", D("0.003"))
    ioc = place(sim, quantity="0.010", price="66000.0", timeInForce="IOC")
    assert (ioc.status, ioc.executed_qty) == ("EXPIRED", D("0.003"))
    assert order_updates(sim)[-1] == ("EXPIRED", "EXPIRED")
    with pytest.raises(ErrorReply) as info:
        place(sim, quantity="0.010", price="66000.0", timeInForce="FOK")
    assert info.value.code == -5021
    with pytest.raises(ErrorReply) as info:
        place(sim, quantity="0.010", price="64000.0", timeInForce="FOK")
    assert info.value.code == -5021


def test_post_only_that_would_take_is_rejected() -> None:
    sim = make_sim()
    with pytest.raises(ErrorReply) as info:
        place(sim, quantity="0.010", price="66000.0", timeInForce="GTX")
    assert info.value.code == -5022
    assert place(sim, quantity="0.010", price="64000.0", timeInForce="GTX").status == "NEW"


def test_positions_average_entry_realize_pnl_and_flip() -> None:
    sim = make_sim(maker_fee=D(0), taker_fee=D(0))
    place(sim, type="MARKET", quantity="1")
    set_mark(sim, "BTCUSDT", "66000.00")
    place(sim, type="MARKET", quantity="1")
    pos = sim.account.position("BTCUSDT", "BOTH")
    assert (pos.amt, pos.entry) == (D("2"), D("65500"))
    assert pos.unrealized(D("66000")) == D("1000")
    place(sim, type="MARKET", side="SELL", quantity="3")
    assert (pos.amt, pos.entry) == (D("-1"), D("66000.00"))
    assert pos.realized == D("1000")
    assert sim.account.wallet == D("11000")
    place(sim, type="MARKET", quantity="1")
    assert (pos.amt, pos.entry) == (D("0"), D("0"))


def test_fees_come_out_of_the_wallet() -> None:
    sim = make_sim()
    place(sim, type="MARKET", quantity="0.100")  # 6500 notional * 0.0005
    assert sim.account.wallet == D("10000") - D("3.25")


def test_reduce_only_is_rejected_without_a_position_to_reduce() -> None:
    sim = make_sim()
    with pytest.raises(ErrorReply) as info:
        place(sim, type="MARKET", side="SELL", quantity="0.010", reduceOnly="true")
    assert (info.value.code, info.value.msg) == (-2022, "ReduceOnly Order is rejected.")
    place(sim, type="MARKET", side="BUY", quantity="0.010")
    with pytest.raises(ErrorReply):
        place(sim, type="MARKET", side="BUY", quantity="0.010", reduceOnly="true")


def test_reduce_only_never_trades_past_flat() -> None:
    sim = make_sim()
    place(sim, type="MARKET", side="BUY", quantity="0.010")
    order = place(sim, type="MARKET", side="SELL", quantity="0.050", reduceOnly="true")
    assert (order.status, order.executed_qty) == ("EXPIRED", D("0.010"))
    assert position_amt(sim) == 0


def test_resting_reduce_only_orders_expire_when_the_position_closes() -> None:
    sim = make_sim()
    place(sim, type="MARKET", side="BUY", quantity="0.010")
    take_profit = place(sim, side="SELL", quantity="0.010", price="70000.0", reduceOnly="true")
    place(sim, type="MARKET", side="SELL", quantity="0.010")
    assert take_profit.status == "EXPIRED"
    assert ("EXPIRED", "EXPIRED") in order_updates(sim)


def test_duplicate_client_ids_are_refused_among_open_orders_only() -> None:
    sim = make_sim()
    place(sim, quantity="0.010", price="64000.0", newClientOrderId="dup")
    with pytest.raises(ErrorReply) as info:
        place(sim, quantity="0.010", price="64000.0", newClientOrderId="dup")
    assert info.value.code == -4116
    order = sim.account.find("BTCUSDT", None, "dup")
    assert order is not None
    sim.account.cancel(order)
    assert place(sim, quantity="0.010", price="64000.0", newClientOrderId="dup").is_open


def test_generated_client_ids_look_like_binances() -> None:
    sim = make_sim()
    order = place(sim, quantity="0.010", price="64000.0")
    assert len(order.client_order_id) == 22
    assert order.client_order_id.isalnum()


def test_order_ids_are_sequential_and_above_2_pow_53() -> None:
    sim = make_sim()
    a = place(sim, quantity="0.010", price="64000.0")
    b = place(sim, quantity="0.010", price="64000.0")
    assert a.order_id > 2**53
    assert b.order_id == a.order_id + 1


def test_hedge_mode_keeps_long_and_short_apart() -> None:
    sim = make_sim(dual_side_position=True)
    place(sim, type="MARKET", side="BUY", positionSide="LONG", quantity="0.020")
    place(sim, type="MARKET", side="SELL", positionSide="SHORT", quantity="0.010")
    assert position_amt(sim, side="LONG") == D("0.020")
    assert position_amt(sim, side="SHORT") == D("-0.010")
    place(sim, type="MARKET", side="SELL", positionSide="LONG", quantity="0.005")
    assert position_amt(sim, side="LONG") == D("0.015")
    with pytest.raises(ErrorReply) as info:
        place(sim, type="MARKET", side="BUY", positionSide="SHORT", quantity="0.020")
    assert info.value.code == -2022
    rows = events(sim, "ACCOUNT_UPDATE")[-1]["a"]["P"]
    assert [(r["ps"], r["pa"]) for r in rows] == [("LONG", "0.015")]


def test_hedge_close_orders_cannot_together_exceed_the_position() -> None:
    sim = make_sim(dual_side_position=True)
    place(sim, type="MARKET", side="BUY", positionSide="LONG", quantity="0.020")
    place(sim, side="SELL", positionSide="LONG", quantity="0.015", price="70000.0")
    with pytest.raises(ErrorReply) as info:
        place(sim, side="SELL", positionSide="LONG", quantity="0.010", price="70000.0")
    assert info.value.code == -2022


def test_position_mode_changes_are_refused_as_binance_refuses_them() -> None:
    sim = make_sim()
    with pytest.raises(ErrorReply) as info:
        sim.account.change_mode(False)
    assert info.value.code == -4059
    order = place(sim, quantity="0.010", price="64000.0")
    with pytest.raises(ErrorReply) as info:
        sim.account.change_mode(True)
    assert info.value.code == -4067
    sim.account.cancel(order)
    place(sim, type="MARKET", quantity="0.010")
    with pytest.raises(ErrorReply) as info:
        sim.account.change_mode(True)
    assert info.value.code == -4068
    sim.account.change_mode(True, force=True)
    assert sim.account.dual


def test_gtd_orders_expire_at_their_good_till_date() -> None:
    sim = make_sim()
    clock = sim.clock
    assert isinstance(clock, ManualClock)
    gtd = clock.now_ms() + 700_000
    order = place(sim, quantity="0.010", price="64000.0", timeInForce="GTD", goodTillDate=gtd)
    clock.advance(699_000)
    sim.heartbeat(walk=False)
    assert order.is_open
    clock.advance(2_000)
    sim.heartbeat(walk=False)
    assert order.status == "EXPIRED"


def test_vanished_orders_leave_no_event_and_no_trace() -> None:
    sim = make_sim()
    order = place(sim, quantity="0.010", price="64000.0", newClientOrderId="ghost")
    before = len(sim.hub.recent)
    sim.account.vanish(order)
    assert len(sim.hub.recent) == before
    assert sim.account.find("BTCUSDT", order.order_id, None) is None
    assert sim.account.find("BTCUSDT", None, "ghost") is None
    assert list(sim.account.open_orders()) == []


def test_silent_orders_emit_nothing_even_when_they_fill() -> None:
    sim = make_sim()
    params = Params(
        [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.002")]
    )
    req = parse_new_order(params, sim.specs, dual=False, mark_of=sim.book.mark, now_ms=0)
    sim.account.place(req, emit_events=False)
    assert events(sim) == []
    assert position_amt(sim) == D("0.002")


def test_ended_orders_remain_queryable_until_the_history_limit() -> None:
    sim = make_sim(history_limit=2)
    orders = [place(sim, type="MARKET", quantity="0.002") for _ in range(3)]
    assert sim.account.find("BTCUSDT", orders[0].order_id, None) is None
    assert sim.account.find("BTCUSDT", orders[2].order_id, None) is orders[2]
    assert sim.account.find("ETHUSDT", orders[2].order_id, None) is None


def test_bid_and_ask_notionals_ride_on_order_updates() -> None:
    sim = make_sim()
    place(sim, quantity="0.010", price="64000.0")
    place(sim, side="SELL", quantity="0.020", price="66000.0")
    last = events(sim, "ORDER_TRADE_UPDATE")[-1]["o"]
    assert (last["b"], last["a"]) == ("640.00000", "1320.00000")


def test_a_thousand_orders_snapshot_from_cached_json() -> None:
    sim = make_sim(symbols=None)
    symbols = list(sim.specs)
    for i in range(1000):
        symbol = symbols[i % len(symbols)]
        spec = sim.specs[symbol]
        price = spec.initial_mark * D("0.95")
        price = (price / spec.tick_size).to_integral_value() * spec.tick_size
        qty = max(
            spec.min_qty, (D(20) / price / spec.step_size).to_integral_value() * spec.step_size
        )
        place(sim, symbol=symbol, quantity=qty, price=price)
    assert sim.account.open_count() == 1000
    parts = [o.query_json() for o in sim.account.open_orders()]
    assert all(o._query_json is not None for o in sim.account.open_orders())
    assert len(parts) == 1000
