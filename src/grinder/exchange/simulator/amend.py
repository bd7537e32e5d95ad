"""Amending a resting LIMIT order (``PUT /fapi/v1/order``), as the venue's page describes it.

Both ``quantity`` and ``price`` are sent (or ``priceMatch`` instead of the price). A new
quantity or price that fails PRICE_FILTER / PERCENT_PRICE / LOT_SIZE (or MIN_NOTIONAL) is
refused and the order stays as it was; the same quantity and price is -5027; an order
amended 10,000 times is -5026. The amendment *cancels* the order when it was partially
filled and the new quantity is not above the executed one, or when it is GTX and the new
price would take. Otherwise the order keeps its id, gets ORDER_TRADE_UPDATE x AMENDMENT,
and, if the new price crosses the mark, trades at once as a taker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator import validation as V
from grinder.exchange.simulator.account import Account
from grinder.exchange.simulator.orders import Order
from grinder.exchange.simulator.params import Params

MAX_AMENDMENTS = 10_000
ONLY_LIMIT = (-5025, "Only limit order is supported.")


@dataclass(frozen=True, slots=True)
class Amendment:
    """The new quantity and price of one order."""

    side: str
    qty: Decimal
    price: Decimal
    price_match: str


def parse_amendment(params: Params, order: Order, mark_of: Callable[[str], Decimal]) -> Amendment:
    """The amendment's parameters, checked against the order's symbol filters."""
    side = params.required_text("side")
    if side not in V.SIDES:
        raise E.err(E.INVALID_SIDE)
    if side != order.side:
        raise E.invalid_value("side")
    qty = params.decimal("quantity", required=True)
    assert qty is not None
    match = params.enum("priceMatch", V.PRICE_MATCHES, default="NONE") or "NONE"
    price = params.decimal("price")
    spec = order.spec
    mark = mark_of(order.symbol)
    if match != "NONE":
        if price is not None:
            raise E.err(E.BAD_COMBO)
        price = V.matched_price(spec, side, match, mark)
    elif price is None:
        raise E.mandatory("price")
    V.check_qty(spec, qty, market=False)
    V.check_price(spec, price)
    V.check_percent_price(spec, side, price, mark)
    return Amendment(side, qty, price, match)


def amend(account: Account, order: Order, change: Amendment) -> Order:
    """Apply ``change`` to the open ``order`` (or cancel it, as the venue does)."""
    if not order.is_open:
        raise E.err(E.NO_SUCH_ORDER)
    if order.type != "LIMIT":
        raise E.err(ONLY_LIMIT)
    if order.amendments >= MAX_AMENDMENTS:
        raise E.err(E.MAX_MODIFY)
    if change.qty == order.qty and change.price == order.price:
        raise E.err(E.NO_NEED_MODIFY)
    closing = order.reduce_only or (order.side, order.position_side) in (
        ("SELL", "LONG"),
        ("BUY", "SHORT"),
    )
    if not closing:
        V.check_min_notional(order.spec, change.qty * change.price)
    mark = account.book.mark(order.symbol)
    takes = change.price >= mark if order.side == "BUY" else change.price <= mark
    if (order.executed_qty > 0 and change.qty <= order.executed_qty) or (
        takes and order.time_in_force == "GTX"
    ):
        account.cancel(order)
        return order
    order.qty = change.qty
    order.price = change.price
    order.price_match = change.price_match
    order.amendments += 1
    order.changed(account.now())
    account.emit_order(order, "AMENDMENT")
    if takes:
        liquidity = account.book.liquidity(order.symbol)
        want = order.remaining if liquidity is None else min(order.remaining, liquidity)
        account.fill(order, want, mark, maker=False)
    if order.is_open:
        order.query_json()
    return order
