"""New-order parameters: every stateless rejection with Binance's code."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from grinder.exchange.simulator.errors import ErrorReply
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.symbols import resolve_symbols
from grinder.exchange.simulator.validation import OrderRequest, parse_new_order

SPECS = resolve_symbols(None)
MARKS = {name: spec.initial_mark for name, spec in SPECS.items()}
NOW = 1_767_225_600_000


def parse(dual: bool = False, **values: Any) -> OrderRequest:
    base: dict[str, Any] = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.010",
        "price": "64000.0",
    }
    base.update(values)
    params = Params((k, str(v)) for k, v in base.items() if v is not None)
    return parse_new_order(params, SPECS, dual=dual, mark_of=MARKS.__getitem__, now_ms=NOW)


def code_of(dual: bool = False, **values: Any) -> int:
    with pytest.raises(ErrorReply) as info:
        parse(dual, **values)
    return info.value.code


def test_a_valid_limit_order_parses() -> None:
    req = parse()
    assert (req.side, req.type, req.qty, req.price, req.position_side) == (
        "BUY",
        "LIMIT",
        Decimal("0.010"),
        Decimal("64000.0"),
        "BOTH",
    )
    assert req.resp_type == "ACK"
    assert req.client_order_id is None


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"symbol": None}, -1102),
        ({"side": None}, -1102),
        ({"type": None}, -1102),
        ({"quantity": None}, -1102),
        ({"price": None}, -1102),
        ({"timeInForce": None}, -1102),
        ({"symbol": "NOPEUSDT"}, -1121),
        ({"side": "HOLD"}, -1117),
        ({"type": "ICEBERG"}, -1116),
        ({"type": "STOP_MARKET"}, -4120),
        ({"type": "TAKE_PROFIT"}, -4120),
        ({"timeInForce": "DAY"}, -1115),
        ({"quantity": "abc"}, -1100),
        ({"quantity": "-1"}, -1100),
        ({"quantity": "0"}, -4003),
        ({"quantity": "0.0001"}, -1111),
        ({"quantity": "2000"}, -4005),
        ({"price": "0"}, -4001),
        ({"price": "64000.123"}, -1111),
        ({"price": "64000.05"}, -4014),
        ({"price": "401.0"}, -4013),
        ({"price": "1246396.70"}, -4002),
        ({"price": "75000.0"}, -4016),
        ({"side": "SELL", "price": "30000.0"}, -4024),
        ({"quantity": "0.001", "price": "6400.0", "side": "SELL"}, -4024),
        ({"quantity": "0.001", "price": "9000.0"}, -4164),
        ({"newClientOrderId": "has space"}, -1100),
        ({"newClientOrderId": "x" * 37}, -4015),
        ({"newOrderRespType": "FULL"}, -1130),
        ({"reduceOnly": "maybe"}, -1130),
        ({"positionSide": "LONG"}, -4061),
        ({"positionSide": "UP"}, -1130),
        ({"closePosition": "true"}, -1106),
        ({"timeInForce": "GTD"}, -1102),
        ({"timeInForce": "GTD", "goodTillDate": NOW + 1000}, -1130),
        ({"priceMatch": "OPPONENT"}, -1128),
    ],
)
def test_rejections_carry_binance_codes(values: dict[str, Any], code: int) -> None:
    assert code_of(**values) == code


def test_quantity_step_is_enforced_on_a_symbol_with_coarse_steps() -> None:
    assert code_of(symbol="XRPUSDT", price="0.6000", quantity="10.25") == -1111
    assert code_of(symbol="DOTUSDT", price="6.000", quantity="0") == -4003


def test_step_size_that_is_not_a_power_of_ten_gives_4023() -> None:
    from dataclasses import replace

    odd = replace(SPECS["ETHUSDT"], step_size=Decimal("0.002"), min_qty=Decimal("0.002"))
    params = Params(
        [
            ("symbol", "ETHUSDT"),
            ("side", "BUY"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", "0.005"),
            ("price", "3200.00"),
        ]
    )
    with pytest.raises(ErrorReply) as info:
        parse_new_order(params, {"ETHUSDT": odd}, dual=False, mark_of=MARKS.__getitem__, now_ms=NOW)
    assert info.value.code == -4023


def test_min_quantity_gives_4004() -> None:
    from dataclasses import replace

    spec = replace(SPECS["SOLUSDT"], min_qty=Decimal("5"))
    params = Params(
        [
            ("symbol", "SOLUSDT"),
            ("side", "BUY"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", "1"),
            ("price", "150.0000"),
        ]
    )
    with pytest.raises(ErrorReply) as info:
        parse_new_order(
            params, {"SOLUSDT": spec}, dual=False, mark_of=MARKS.__getitem__, now_ms=NOW
        )
    assert info.value.code == -4004


def test_market_orders_refuse_a_price_and_use_the_market_lot_size() -> None:
    assert code_of(type="MARKET", price="64000.0", timeInForce=None) == -1106
    req = parse(type="MARKET", price=None, timeInForce=None, quantity="0.5")
    assert req.price == 0
    assert code_of(type="MARKET", price=None, quantity="1500") == -4005


def test_min_notional_message_is_binances() -> None:
    with pytest.raises(ErrorReply) as info:
        parse(quantity="0.001", price="9000.0")
    assert info.value.msg == (
        "Order's notional must be no smaller than 10.0 (unless you choose reduce only)"
    )


def test_reduce_only_orders_are_exempt_from_min_notional() -> None:
    req = parse(quantity="0.001", price="64000.0", reduceOnly="true")
    assert req.reduce_only


def test_hedge_mode_requires_a_position_side_and_forbids_reduce_only() -> None:
    assert code_of(dual=True) == -4061
    assert code_of(dual=True, positionSide="BOTH") == -4061
    assert code_of(dual=True, positionSide="LONG", reduceOnly="false") == -1106
    req = parse(dual=True, positionSide="SHORT", side="BUY", quantity="0.001")
    assert req.closing  # BUY on SHORT closes, so min notional does not apply


def test_mandatory_parameter_message_names_the_parameter() -> None:
    with pytest.raises(ErrorReply) as info:
        parse(quantity=None)
    assert info.value.msg == (
        "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."
    )


def test_parameter_names_are_case_insensitive() -> None:
    params = Params(
        [("SYMBOL", "BTCUSDT"), ("Side", "SELL"), ("type", "MARKET"), ("QUANTITY", "1")]
    )
    req = parse_new_order(params, SPECS, dual=False, mark_of=MARKS.__getitem__, now_ms=NOW)
    assert (req.spec.symbol, req.side, req.type) == ("BTCUSDT", "SELL", "MARKET")


def test_price_match_derives_the_price_from_the_mark() -> None:
    req = parse(price=None, priceMatch="QUEUE")
    assert req.price == MARKS["BTCUSDT"] - SPECS["BTCUSDT"].tick_size


def test_gtd_keeps_second_precision() -> None:
    req = parse(timeInForce="GTD", goodTillDate=NOW + 3_600_123)
    assert req.good_till_date == NOW + 3_600_000
