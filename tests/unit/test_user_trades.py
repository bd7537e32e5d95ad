"""userTrades: the parser on the recorded corpus and bad rows; whether trades explain a
position difference (pure); the Binance port against the simulator's real endpoint."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from grinder.exchange.binance.parsing.trades import parse_user_trades
from grinder.exchange.binance.parsing.wire import WireFormatError
from grinder.exchange.fake import FakePort
from grinder.reconcile.trades import AccountTrade, account_for
from grinder.reconcile.types import PositionSide, Side

CORPUS = Path(__file__).resolve().parents[3] / "shared/exchange-corpus/binance-usdm"


def trade(tid: int, side: Side, qty: str, t: int, order: int = 1) -> AccountTrade:
    return AccountTrade(
        symbol="BTCUSDT",
        trade_id=tid,
        order_id=order,
        side=side,
        price=Decimal("100"),
        qty=Decimal(qty),
        commission=Decimal("0.01"),
        commission_asset="USDT",
        time_ms=t,
    )


def test_the_recorded_response_parses_whole() -> None:
    path = CORPUS / "ccxt_fapi_v1_userTrades.json"
    if not path.exists():
        pytest.skip(f"the exchange corpus is not beside the checkout: {path}")
    (t,) = parse_user_trades(json.loads(path.read_text()))
    assert (t.symbol, t.trade_id, t.order_id, t.side) == (
        "BTCUSDT",
        272536245,
        3524852987,
        Side.BUY,
    )
    assert (t.price, t.qty, t.commission) == (
        Decimal("36567.10"),
        Decimal("0.010"),
        Decimal("0.14626840"),
    )
    assert (t.commission_asset, t.time_ms, t.position_side) == (
        "USDT",
        1699972836419,
        PositionSide.BOTH,
    )
    assert t.signed_qty == Decimal("0.010")


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"symbol": "BTCUSDT"}, "expected a JSON array"),
        ([{"symbol": "BTCUSDT", "id": 1, "orderId": 2, "side": "HOLD"}], "[0].side"),
        (
            [{"symbol": "X", "id": 1, "orderId": 2, "side": "BUY", "price": "1", "qty": "NaN"}],
            "[0].qty",
        ),
        (["not an object"], "expected a JSON object"),
    ],
)
def test_a_malformed_response_is_one_error_naming_the_row(doc: object, where: str) -> None:
    with pytest.raises(WireFormatError) as exc:
        parse_user_trades(doc)
    assert where in str(exc.value)
    assert "\n" not in str(exc.value)


def test_the_newest_trades_that_add_up_to_the_difference_explain_it() -> None:
    old = trade(1, Side.BUY, "0.5", 1_000)
    manual = [trade(2, Side.BUY, "0.03", 2_000), trade(3, Side.BUY, "0.02", 3_000)]
    v = account_for([manual[1], old, manual[0]], Decimal("0.05"))
    assert v.explained
    assert v.trades == tuple(manual)
    assert v.remainder == 0
    assert "explain the difference 0.05 fully" in v.summary()
    facts = dict(v.facts())
    assert facts["explained"] == "yes"
    assert facts["trade 2"] == "BUY 0.03 @ 100 fee 0.01 USDT time 2000 order 1"


def test_trades_that_fall_short_say_by_how_much() -> None:
    v = account_for([trade(1, Side.BUY, "0.03", 1)], Decimal("0.05"))
    assert not v.explained
    assert v.remainder == Decimal("0.02")
    assert "0.02 unexplained" in v.summary()


def test_a_short_difference_is_explained_by_sells_and_other_sides_do_not_count() -> None:
    hedge = AccountTrade(
        "BTCUSDT",
        9,
        9,
        Side.SELL,
        Decimal(1),
        Decimal("0.05"),
        Decimal(0),
        "USDT",
        5,
        PositionSide.SHORT,
    )
    v = account_for([trade(1, Side.SELL, "0.05", 1), hedge], Decimal("-0.05"))
    assert v.explained
    assert [t.trade_id for t in v.trades] == [1]
    assert not account_for([], Decimal("0.01")).explained
    assert not account_for([trade(1, Side.BUY, "0", 1)], Decimal(0)).explained


async def test_the_fake_port_serves_the_window_oldest_first() -> None:
    port = FakePort(
        trades=[
            trade(2, Side.BUY, "1", 20),
            trade(1, Side.BUY, "1", 10),
            trade(3, Side.BUY, "1", 99),
        ]
    )
    got = await port.fetch_user_trades("BTCUSDT", start_ms=0, end_ms=50)
    assert [t.trade_id for t in got] == [1, 2]
