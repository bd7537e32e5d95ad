"""Conditional orders: placement checks, trigger rules, and the event sequence of a trigger."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from grinder.exchange.simulator.algo import AlgoOrder, parse_algo_order
from grinder.exchange.simulator.clock import ManualClock
from grinder.exchange.simulator.config import SimConfig
from grinder.exchange.simulator.errors import ErrorReply
from grinder.exchange.simulator.exchange import Simulator
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.validation import parse_new_order

D = Decimal


def make_sim(**overrides: Any) -> Simulator:
    values: dict[str, Any] = {"walk_frozen": True, "symbols": ["BTCUSDT", "ETHUSDT"]}
    values.update(overrides)
    return Simulator(SimConfig(**values), ManualClock())


def algo(sim: Simulator, **values: Any) -> AlgoOrder:
    base: dict[str, Any] = {
        "algoType": "CONDITIONAL",
        "symbol": "ETHUSDT",
        "side": "BUY",
        "type": "STOP_MARKET",
        "quantity": "0.050",
        "triggerPrice": "3300.00",
    }
    base.update(values)
    params = Params((k, str(v)) for k, v in base.items() if v is not None)
    req = parse_algo_order(
        params, sim.specs, dual=sim.account.dual, mark_of=sim.book.mark, now_ms=sim.now_ms()
    )
    return sim.algos.place(req)


def market(sim: Simulator, side: str, qty: str, symbol: str = "ETHUSDT") -> None:
    params = Params([("symbol", symbol), ("side", side), ("type", "MARKET"), ("quantity", qty)])
    req = parse_new_order(params, sim.specs, dual=False, mark_of=sim.book.mark, now_ms=0)
    sim.account.place(req)


def set_mark(sim: Simulator, price: str, symbol: str = "ETHUSDT") -> None:
    sim.book.set_mark(symbol, D(price))
    sim.match(symbol)


def stream(sim: Simulator) -> list[tuple[str, str]]:
    out = []
    for e in sim.hub.recent:
        if e["e"] == "ALGO_UPDATE":
            out.append(("ALGO", e["o"]["X"]))
        elif e["e"] == "ORDER_TRADE_UPDATE":
            out.append(("ORDER", e["o"]["x"] + "/" + e["o"]["X"]))
    return out


def test_a_stop_market_triggers_with_binances_event_sequence() -> None:
    sim = make_sim()
    order = algo(sim, clientAlgoId="stop-1")
    assert order.status == "NEW"
    assert list(sim.account.open_orders()) == []  # conditional orders are not regular orders
    set_mark(sim, "3299.99")
    assert order.status == "NEW"
    set_mark(sim, "3300.50")
    assert stream(sim) == [
        ("ALGO", "NEW"),
        ("ALGO", "TRIGGERING"),
        ("ORDER", "NEW/NEW"),
        ("ORDER", "TRADE/FILLED"),
        ("ALGO", "TRIGGERED"),
        ("ALGO", "FINISHED"),
    ]
    assert order.status == "FINISHED"
    assert order.actual_qty == D("0.050")
    child = sim.account.find("ETHUSDT", order.actual_order_id, None)
    assert child is not None
    assert (child.client_order_id, child.algo_id, child.type) == ("stop-1", order.algo_id, "MARKET")
    updates = [e for e in sim.hub.recent if e["e"] == "ORDER_TRADE_UPDATE"]
    assert updates[0]["o"]["si"] == order.algo_id
    assert updates[0]["o"]["ss"] == -1
    assert updates[0]["o"]["st"] == "ALGO_CONDITION"
    algo_events = [e["o"] for e in sim.hub.recent if e["e"] == "ALGO_UPDATE"]
    assert algo_events[0]["ai"] == ""
    assert "ap" not in algo_events[0]
    assert algo_events[3]["ai"] == str(child.order_id)
    assert (algo_events[3]["aq"], algo_events[3]["act"]) == ("0.05", "MARKET")


def test_take_profit_limit_leaves_a_resting_child_and_finishes_when_it_fills() -> None:
    sim = make_sim()
    market(sim, "BUY", "0.100")
    order = algo(
        sim,
        side="SELL",
        type="TAKE_PROFIT",
        triggerPrice="3400.00",
        price="3410.00",
        timeInForce="GTC",
        reduceOnly="true",
    )
    set_mark(sim, "3400.00")
    assert order.status == "TRIGGERED"
    child = sim.account.find("ETHUSDT", order.actual_order_id, None)
    assert child is not None
    assert (child.is_open, child.type) == (True, "LIMIT")
    set_mark(sim, "3410.00")
    assert child.status == "FILLED"
    assert order.status == "FINISHED"


def test_would_immediately_trigger_is_refused() -> None:
    sim = make_sim()
    with pytest.raises(ErrorReply) as info:
        algo(sim, triggerPrice="3100.00")
    assert info.value.code == -2021
    with pytest.raises(ErrorReply) as info:
        algo(sim, side="SELL", type="TAKE_PROFIT_MARKET", triggerPrice="3100.00")
    assert info.value.code == -2021


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"algoType": "VP"}, -1130),
        ({"algoType": None}, -1102),
        ({"type": "LIMIT"}, -1116),
        ({"triggerPrice": None}, -1102),
        ({"type": "STOP", "price": None}, -1102),
        ({"price": "3300.00"}, -1106),
        ({"triggerPrice": "3300.001"}, -1111),
        ({"quantity": "0.001"}, -4164),
        ({"closePosition": "true"}, -1106),
        ({"type": "TRAILING_STOP_MARKET", "triggerPrice": None}, -1102),
        ({"type": "TRAILING_STOP_MARKET", "callbackRate": "20"}, -1130),
        ({"clientAlgoId": "bad id"}, -1100),
    ],
)
def test_algo_rejections(values: dict[str, Any], code: int) -> None:
    sim = make_sim()
    with pytest.raises(ErrorReply) as info:
        algo(sim, **values)
    assert info.value.code == code


def test_close_position_stop_closes_the_whole_position() -> None:
    sim = make_sim()
    market(sim, "BUY", "0.300")
    order = algo(sim, side="SELL", quantity=None, closePosition="true", triggerPrice="3100.00")
    set_mark(sim, "3099.00")
    assert order.status == "FINISHED"
    assert sim.account.position("ETHUSDT", "BOTH").amt == 0


def test_a_reduce_only_stop_with_nothing_to_reduce_is_rejected_at_trigger() -> None:
    sim = make_sim()
    order = algo(sim, side="SELL", triggerPrice="3100.00", reduceOnly="true")
    set_mark(sim, "3000.00")
    assert order.status == "REJECTED"
    kinds = [e["e"] for e in sim.hub.recent]
    assert "CONDITIONAL_ORDER_TRIGGER_REJECT" in kinds
    last = [e for e in sim.hub.recent if e["e"] == "ALGO_UPDATE"][-1]["o"]
    assert (last["X"], last["rm"]) == ("REJECTED", "Reduce Only reject")


def test_trailing_stop_follows_the_high_and_fires_on_the_callback() -> None:
    sim = make_sim()
    market(sim, "BUY", "0.100")
    order = algo(
        sim,
        side="SELL",
        type="TRAILING_STOP_MARKET",
        triggerPrice=None,
        callbackRate="1",
        reduceOnly="true",
    )
    sim.match("ETHUSDT")
    set_mark(sim, "3400.00")
    set_mark(sim, "3370.00")
    assert order.status == "NEW"
    set_mark(sim, "3365.00")
    assert order.status == "FINISHED"


def test_cancel_only_works_on_untriggered_orders() -> None:
    sim = make_sim()
    order = algo(sim)
    sim.algos.cancel(order)
    assert order.status == "CANCELED"
    assert list(sim.algos.open_orders()) == []
    with pytest.raises(ErrorReply) as info:
        sim.algos.cancel(order)
    assert info.value.code == -2011
    assert stream(sim)[-1] == ("ALGO", "CANCELED")


def test_client_algo_ids_are_unique_among_open_algo_orders() -> None:
    sim = make_sim()
    algo(sim, clientAlgoId="same")
    with pytest.raises(ErrorReply) as info:
        algo(sim, clientAlgoId="same")
    assert info.value.code == -4116


def test_max_algo_orders_per_symbol() -> None:
    sim = make_sim()
    for i in range(10):
        algo(sim, triggerPrice=f"{3300 + i}.00")
    with pytest.raises(ErrorReply) as info:
        algo(sim, triggerPrice="3400.00")
    assert info.value.code == -4045


def test_hedge_mode_algo_orders_need_a_position_side() -> None:
    sim = make_sim(dual_side_position=True)
    with pytest.raises(ErrorReply) as info:
        algo(sim)
    assert info.value.code == -4061
    assert algo(sim, positionSide="LONG").position_side == "LONG"
