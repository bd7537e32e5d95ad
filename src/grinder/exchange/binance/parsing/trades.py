"""``GET /fapi/v1/userTrades`` → ``AccountTrade`` (the wire's checks: ``wire.py``)."""

from __future__ import annotations

from typing import Any

from grinder.exchange.binance.parsing.wire import (
    WireFormatError,
    _decimal_or_zero,
    _expect_list,
    _expect_object,
    _opt_str,
    _position_side,
    _req_decimal,
    _req_int,
    _req_str,
    _side,
)
from grinder.reconcile.trades import AccountTrade

KIND = "userTrades"


def parse_user_trade(row: Any) -> AccountTrade:
    obj = _expect_object(row, KIND)
    return AccountTrade(
        symbol=_req_str(obj, "symbol", KIND, ""),
        trade_id=_req_int(obj, "id", KIND, ""),
        order_id=_req_int(obj, "orderId", KIND, ""),
        side=_side(obj, "side", KIND, ""),
        price=_req_decimal(obj, "price", KIND, ""),
        qty=_req_decimal(obj, "qty", KIND, ""),
        commission=_decimal_or_zero(obj, "commission", KIND, ""),
        commission_asset=_opt_str(obj, "commissionAsset", KIND, "") or "",
        time_ms=_req_int(obj, "time", KIND, ""),
        position_side=_position_side(obj, "positionSide", KIND, ""),
        realized_pnl=_decimal_or_zero(obj, "realizedPnl", KIND, ""),
    )


def parse_user_trades(doc: Any) -> list[AccountTrade]:
    """A JSON array of the account's trades of one symbol; an error names the row."""
    out: list[AccountTrade] = []
    for index, row in enumerate(_expect_list(doc, KIND)):
        try:
            out.append(parse_user_trade(row))
        except WireFormatError as exc:
            raise exc.with_prefix(f"[{index}].") from None
    return out
