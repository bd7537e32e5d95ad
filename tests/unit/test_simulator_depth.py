"""The simulator's thin book: takers walk its levels, and self-trade prevention meets the
account's own resting orders (the taker's ``selfTradePreventionMode`` decides)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from grinder.exchange.simulator.clock import ManualClock
from grinder.exchange.simulator.config import SimConfig
from grinder.exchange.simulator.depth import Depth
from grinder.exchange.simulator.errors import ErrorReply
from grinder.exchange.simulator.exchange import Simulator
from grinder.exchange.simulator.orders import Order
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.validation import parse_new_order

D = Decimal
MARK = D("65000.00")  # BTCUSDT's starting mark; tick 0.10


def make_sim(levels: int = 3, qty: str = "0.010", spacing: int = 10) -> Simulator:
    sim = Simulator(SimConfig(walk_frozen=True, symbols=["BTCUSDT"]), ManualClock())
    sim.book.set_depth("BTCUSDT", Depth(levels, D(qty), spacing))
    return sim


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


def last_update(sim: Simulator, cid: str) -> dict[str, Any]:
    updates = [
        e["o"] for e in sim.hub.recent if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["c"] == cid
    ]
    return updates[-1]


def fills(sim: Simulator, cid: str) -> list[Decimal]:
    return [
        D(e["o"]["L"])
        for e in sim.hub.recent
        if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["c"] == cid and e["o"]["x"] == "TRADE"
    ]


def test_a_market_order_walks_the_levels_and_its_rest_expires() -> None:
    sim = make_sim()
    order = place(sim, type="MARKET", side="SELL", quantity="0.050", newClientOrderId="m1")
    assert fills(sim, "m1") == [MARK, MARK - 1, MARK - 2]  # 10 ticks of 0.10 apart
    assert order.executed_qty == D("0.030")
    assert order.status == "EXPIRED"
    assert last_update(sim, "m1")["er"] == "9"


def test_an_ioc_limit_stops_at_its_price() -> None:
    sim = make_sim()
    order = place(
        sim,
        side="SELL",
        quantity="0.050",
        price=str(MARK - 1),
        timeInForce="IOC",
        newClientOrderId="i1",
    )
    assert fills(sim, "i1") == [MARK, MARK - 1]
    assert order.status == "EXPIRED"
    assert last_update(sim, "i1")["er"] == "2"


def test_a_gtc_limit_rests_with_what_the_levels_did_not_fill() -> None:
    sim = make_sim()
    order = place(sim, side="BUY", quantity="0.050", price=str(MARK + 1), newClientOrderId="g1")
    assert order.executed_qty == D("0.020")
    assert order.status == "PARTIALLY_FILLED"


def test_fok_is_refused_when_the_levels_within_its_price_are_too_thin() -> None:
    sim = make_sim()
    with pytest.raises(ErrorReply):
        place(sim, side="BUY", quantity="0.050", price=str(MARK + 2), timeInForce="FOK")
    order = place(sim, side="BUY", quantity="0.030", price=str(MARK + 2), timeInForce="FOK")
    assert order.status == "FILLED"


@pytest.mark.parametrize(
    ("mode", "taker_status", "maker_status", "taker_filled"),
    [
        ("EXPIRE_TAKER", "EXPIRED_IN_MATCH", "NEW", "0.010"),
        ("EXPIRE_MAKER", "EXPIRED", "EXPIRED_IN_MATCH", "0.030"),
        ("EXPIRE_BOTH", "EXPIRED_IN_MATCH", "EXPIRED_IN_MATCH", "0.010"),
    ],
)
def test_self_trade_prevention_follows_the_takers_mode(
    mode: str, taker_status: str, maker_status: str, taker_filled: str
) -> None:
    sim = make_sim()
    # The account's own resting bid sits between the first and the second level.
    own = place(sim, side="BUY", quantity="0.010", price=str(MARK - D("0.5")))
    taker = place(
        sim,
        type="MARKET",
        side="SELL",
        quantity="0.050",
        selfTradePreventionMode=mode,
        newClientOrderId="t1",
    )
    assert taker.status == taker_status
    assert own.status == maker_status
    assert taker.executed_qty == D(taker_filled)
    assert own.executed_qty == 0  # never traded with itself
    if taker_status == "EXPIRED_IN_MATCH":
        assert last_update(sim, "t1")["er"] == "1"
    if maker_status == "EXPIRED_IN_MATCH":
        assert last_update(sim, own.client_order_id)["er"] == "1"


def test_an_ioc_taker_stopped_by_self_trade_prevention_says_so() -> None:
    sim = make_sim()
    place(sim, side="BUY", quantity="0.010", price=str(MARK - D("0.5")))
    place(
        sim,
        side="SELL",
        quantity="0.050",
        price=str(MARK - 2),
        timeInForce="IOC",
        selfTradePreventionMode="EXPIRE_TAKER",
        newClientOrderId="t2",
    )
    assert last_update(sim, "t2")["X"] == "EXPIRED_IN_MATCH"
    assert last_update(sim, "t2")["er"] == "3"


def test_without_depth_a_taker_trades_at_the_mark_as_before() -> None:
    sim = make_sim()
    sim.book.set_depth("BTCUSDT", None)
    order = place(sim, type="MARKET", side="SELL", quantity="0.050", newClientOrderId="n1")
    assert fills(sim, "n1") == [MARK]
    assert order.status == "FILLED"


@pytest.mark.parametrize(
    ("levels", "qty", "spacing"), [(0, "1", 1), (1, "0", 1), (1, "1", 0), (1001, "1", 1)]
)
def test_a_bad_depth_is_refused(levels: int, qty: str, spacing: int) -> None:
    with pytest.raises(ValueError, match=r"levels must|quantity must|spacingTicks must"):
        Depth(levels, D(qty), spacing)
