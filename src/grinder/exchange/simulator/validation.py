"""New-order requests: parsed and checked against the symbol's filters and the position mode.

Checks that need account state (reduce-only against the position, duplicate
client ids, open-order limits) are the account's; everything a request can be
judged on by itself is here, in roughly the order the venue applies it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator.number_text import decimals_of, fixed, plain
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.symbols import SymbolSpec

SIDES = ("BUY", "SELL")
POSITION_SIDES = ("BOTH", "LONG", "SHORT")
ALGO_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
REGULAR_TYPES = ("LIMIT", "MARKET")
TIFS = ("GTC", "IOC", "FOK", "GTX", "GTD")
RESP_TYPES = ("ACK", "RESULT")
STP_MODES = ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH")
WORKING_TYPES = ("MARK_PRICE", "CONTRACT_PRICE")
PRICE_MATCHES = (
    "NONE",
    "OPPONENT",
    "OPPONENT_5",
    "OPPONENT_10",
    "OPPONENT_20",
    "QUEUE",
    "QUEUE_5",
    "QUEUE_10",
    "QUEUE_20",
)
GTD_MIN_AHEAD_MS = 600_000
GTD_MAX = 253_402_300_799_000


@dataclass(slots=True)
class OrderRequest:
    """A new regular order that passed every stateless check."""

    spec: SymbolSpec
    side: str
    position_side: str
    type: str
    time_in_force: str
    qty: Decimal
    price: Decimal
    reduce_only: bool
    client_order_id: str | None
    resp_type: str
    stp_mode: str
    price_match: str
    good_till_date: int
    working_type: str
    price_protect: bool

    @property
    def closing(self) -> bool:
        """Reduces exposure: reduce-only, or a hedge-mode close (SELL LONG / BUY SHORT)."""
        if self.reduce_only:
            return True
        return (self.side, self.position_side) in (("SELL", "LONG"), ("BUY", "SHORT"))


def lookup_symbol(specs: Mapping[str, SymbolSpec], symbol: str) -> SymbolSpec:
    spec = specs.get(symbol)
    if spec is None:
        raise E.err(E.BAD_SYMBOL)
    return spec


def position_side(params: Params, dual: bool) -> str:
    """``positionSide`` as the account's mode allows it (-4061 when it does not)."""
    value = params.enum("positionSide", POSITION_SIDES)
    if dual:
        if value not in ("LONG", "SHORT"):
            raise E.err(E.POSITION_SIDE_MISMATCH)
        return value
    if value not in (None, "BOTH"):
        raise E.err(E.POSITION_SIDE_MISMATCH)
    return "BOTH"


def reduce_only(params: Params, dual: bool) -> bool:
    if dual:
        if params.present("reduceOnly"):
            raise E.not_required("reduceOnly")
        return False
    return params.boolean("reduceOnly")


def check_qty(spec: SymbolSpec, qty: Decimal, *, market: bool) -> None:
    if qty <= 0:
        raise E.err(E.QTY_LE_ZERO)
    if decimals_of(qty.normalize()) > spec.quantity_precision:
        raise E.err(E.BAD_PRECISION)
    step = spec.market_step_size if market else spec.step_size
    if qty % step != 0:
        raise E.err(E.QTY_STEP)
    low = spec.market_min_qty if market else spec.min_qty
    high = spec.market_max_qty if market else spec.max_qty
    if qty < low:
        raise E.err(E.QTY_LT_MIN)
    if qty > high:
        raise E.err(E.QTY_GT_MAX)


def check_price(spec: SymbolSpec, price: Decimal) -> None:
    if price <= 0:
        raise E.err(E.PRICE_LE_ZERO)
    if decimals_of(price.normalize()) > spec.price_precision:
        raise E.err(E.BAD_PRECISION)
    if price % spec.tick_size != 0:
        raise E.err(E.PRICE_TICK)
    if price < spec.min_price:
        raise E.err(E.PRICE_LT_MIN)
    if price > spec.max_price:
        raise E.err(E.PRICE_GT_MAX)


def check_percent_price(spec: SymbolSpec, side: str, price: Decimal, mark: Decimal) -> None:
    if side == "BUY":
        ceiling = mark * spec.multiplier_up
        if price > ceiling:
            raise E.limit_price_high(fixed(ceiling, spec.price_precision))
    else:
        floor = mark * spec.multiplier_down
        if price < floor:
            raise E.limit_price_low(fixed(floor, spec.price_precision))


def check_min_notional(spec: SymbolSpec, notional: Decimal) -> None:
    if notional < spec.min_notional:
        text = plain(spec.min_notional)
        if "." not in text:
            text += ".0"
        raise E.min_notional(text)


def good_till_date(params: Params, tif: str, now_ms: int) -> int:
    if tif != "GTD":
        if params.sent("goodTillDate"):
            raise E.not_required("goodTillDate")
        return 0
    gtd = params.long("goodTillDate", required=True)
    assert gtd is not None
    if gtd <= now_ms + GTD_MIN_AHEAD_MS or gtd >= GTD_MAX:
        raise E.invalid_value("goodTillDate")
    return gtd // 1000 * 1000


def matched_price(spec: SymbolSpec, side: str, match: str, mark: Decimal) -> Decimal:
    if match.startswith("OPPONENT"):
        return mark
    return mark - spec.tick_size if side == "BUY" else mark + spec.tick_size


def parse_new_order(
    params: Params,
    specs: Mapping[str, SymbolSpec],
    *,
    dual: bool,
    mark_of: Callable[[str], Decimal],
    now_ms: int,
) -> OrderRequest:
    """``POST /fapi/v1/order`` parameters, checked; raises ``ErrorReply``."""
    symbol = params.required_text("symbol")
    side_text = params.required_text("side")
    type_text = params.required_text("type")
    spec = lookup_symbol(specs, symbol)
    if side_text not in SIDES:
        raise E.err(E.INVALID_SIDE)
    if type_text in ALGO_TYPES:
        raise E.err(E.USE_ALGO_ENDPOINT)
    if type_text not in REGULAR_TYPES:
        raise E.err(E.INVALID_ORDER_TYPE)
    market = type_text == "MARKET"
    pos_side = position_side(params, dual)
    is_reduce_only = reduce_only(params, dual)
    if params.present("closePosition"):
        raise E.not_required("closePosition")
    qty = params.decimal("quantity", required=True)
    assert qty is not None
    match = params.enum("priceMatch", PRICE_MATCHES, default="NONE") or "NONE"
    price = params.decimal("price")
    tif = "GTC"
    if market:
        if price is not None:
            raise E.not_required("price")
        if match != "NONE":
            raise E.not_required("priceMatch")
        tif = params.enum("timeInForce", TIFS, E.err(E.INVALID_TIF), default="GTC") or "GTC"
    else:
        if match != "NONE":
            if price is not None:
                raise E.err(E.BAD_COMBO)
            price = matched_price(spec, side_text, match, mark_of(symbol))
        elif price is None:
            raise E.mandatory("price")
        tif_value = params.enum("timeInForce", TIFS, E.err(E.INVALID_TIF), required=True)
        assert tif_value is not None
        tif = tif_value
    gtd = good_till_date(params, tif, now_ms)
    client_id = params.client_id("newClientOrderId")
    resp_type = params.enum("newOrderRespType", RESP_TYPES, default="ACK") or "ACK"
    stp = params.enum("selfTradePreventionMode", STP_MODES, default="EXPIRE_MAKER") or "NONE"
    working = params.enum("workingType", WORKING_TYPES, default="CONTRACT_PRICE")
    protect = params.boolean("priceProtect")
    check_qty(spec, qty, market=market)
    mark = mark_of(symbol)
    if market:
        notional = qty * mark
        price = Decimal(0)
    else:
        assert price is not None
        check_price(spec, price)
        check_percent_price(spec, side_text, price, mark)
        notional = qty * price
    request = OrderRequest(
        spec=spec,
        side=side_text,
        position_side=pos_side,
        type=type_text,
        time_in_force=tif,
        qty=qty,
        price=price,
        reduce_only=is_reduce_only,
        client_order_id=client_id,
        resp_type=resp_type,
        stp_mode=stp,
        price_match=match,
        good_till_date=gtd,
        working_type=working or "CONTRACT_PRICE",
        price_protect=protect,
    )
    if not request.closing:
        check_min_notional(spec, notional)
    return request
