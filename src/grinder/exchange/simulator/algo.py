"""Conditional (algo) orders: their state, request parsing and REST views.

Since December 2025 Binance keeps STOP / TAKE_PROFIT / TRAILING_STOP orders in
a separate algo service: placed with ``POST /fapi/v1/algoOrder`` and
``algoType=CONDITIONAL``, listed by ``GET /fapi/v1/openAlgoOrders`` (never by
``openOrders``), reported by ``ALGO_UPDATE``. Views follow the docs examples
(``orderType``, ``actualOrderId`` as a string, ``icebergQuantity`` null).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator import validation as V
from grinder.exchange.simulator.number_text import ZERO, fixed
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.symbols import SymbolSpec

ALGO_OPEN_STATUSES = frozenset({"NEW"})
STOPS = ("STOP", "STOP_MARKET")
TAKE_PROFITS = ("TAKE_PROFIT", "TAKE_PROFIT_MARKET")
TRAILING = "TRAILING_STOP_MARKET"
MARKET_KINDS = ("STOP_MARKET", "TAKE_PROFIT_MARKET", TRAILING)


@dataclass(slots=True, eq=False)
class AlgoOrder:
    algo_id: int
    client_algo_id: str
    spec: SymbolSpec
    side: str
    position_side: str
    type: str
    time_in_force: str
    qty: Decimal
    price: Decimal
    trigger_price: Decimal
    create_time_ms: int
    reduce_only: bool = False
    close_position: bool = False
    working_type: str = "CONTRACT_PRICE"
    price_match: str = "NONE"
    price_protect: bool = False
    stp_mode: str = "EXPIRE_MAKER"
    good_till_date: int = 0
    activate_price: Decimal | None = None
    callback_rate: Decimal | None = None
    status: str = "NEW"
    update_time_ms: int = 0
    trigger_time_ms: int = 0
    actual_order_id: int = 0
    actual_type: str = ""
    actual_qty: Decimal = ZERO
    actual_avg_price: Decimal = ZERO
    reject_reason: str = ""
    extreme: Decimal | None = None
    child_ended: bool = False
    silent: bool = False

    def __post_init__(self) -> None:
        if not self.update_time_ms:
            self.update_time_ms = self.create_time_ms

    @property
    def symbol(self) -> str:
        return self.spec.symbol

    @property
    def is_open(self) -> bool:
        return self.status in ALGO_OPEN_STATUSES

    @property
    def child_type(self) -> str:
        return "MARKET" if self.type in MARKET_KINDS else "LIMIT"

    def should_trigger(self, price: Decimal) -> bool:
        """Whether ``price`` fires this order (trailing stops track their extreme)."""
        if self.type == TRAILING:
            return self._trailing(price)
        buy = self.side == "BUY"
        if self.type in STOPS:
            return price >= self.trigger_price if buy else price <= self.trigger_price
        return price <= self.trigger_price if buy else price >= self.trigger_price

    def _trailing(self, price: Decimal) -> bool:
        rate = (self.callback_rate or ZERO) / 100
        buy = self.side == "BUY"
        if self.extreme is None:
            start = self.activate_price
            if start is not None and (price > start if buy else price < start):
                return False
            self.extreme = price
        self.extreme = min(self.extreme, price) if buy else max(self.extreme, price)
        level = self.extreme * (1 + rate) if buy else self.extreme * (1 - rate)
        self.trigger_price = level.quantize(self.spec.tick_size)
        return price >= level if buy else price <= level

    # --- views ------------------------------------------------------------------------------

    def _head(self) -> dict[str, Any]:
        return {
            "algoId": self.algo_id,
            "clientAlgoId": self.client_algo_id,
            "algoType": "CONDITIONAL",
            "orderType": self.type,
            "symbol": self.symbol,
            "side": self.side,
            "positionSide": self.position_side,
            "timeInForce": self.time_in_force,
            "quantity": fixed(self.qty, self.spec.quantity_precision),
            "algoStatus": self.status,
        }

    def _tail(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "selfTradePreventionMode": self.stp_mode,
            "workingType": self.working_type,
            "priceMatch": self.price_match,
            "closePosition": self.close_position,
            "priceProtect": self.price_protect,
            "reduceOnly": self.reduce_only,
        }
        if self.type == TRAILING:
            out["activatePrice"] = str(self.activate_price or ZERO)
            out["callbackRate"] = str(self.callback_rate or ZERO)
        out.update(
            {
                "createTime": self.create_time_ms,
                "updateTime": self.update_time_ms,
                "triggerTime": self.trigger_time_ms,
                "goodTillDate": self.good_till_date,
            }
        )
        return out

    def new_view(self) -> dict[str, Any]:
        """As ``POST /fapi/v1/algoOrder`` answers."""
        pp = self.spec.price_precision
        out = self._head()
        out["triggerPrice"] = fixed(self.trigger_price, pp)
        out["price"] = fixed(self.price, pp)
        out["icebergQuantity"] = None
        out.update(self._tail())
        return out

    def query_view(self) -> dict[str, Any]:
        """As ``GET /fapi/v1/algoOrder`` and ``GET /fapi/v1/openAlgoOrders`` write it."""
        pp = self.spec.price_precision
        out = self._head()
        out["actualOrderId"] = str(self.actual_order_id) if self.actual_order_id else ""
        out["actualPrice"] = fixed(self.actual_avg_price, max(pp, 5))
        out["triggerPrice"] = fixed(self.trigger_price, pp)
        out["price"] = fixed(self.price, pp)
        out["icebergQuantity"] = None
        zero = fixed(ZERO, pp)
        out["tpTriggerPrice"] = zero
        out["tpPrice"] = zero
        out["slTriggerPrice"] = zero
        out["slPrice"] = zero
        out["tpOrderType"] = ""
        out.update(self._tail())
        return out


@dataclass(slots=True)
class AlgoRequest:
    spec: SymbolSpec
    side: str
    position_side: str
    type: str
    time_in_force: str
    qty: Decimal
    price: Decimal
    trigger_price: Decimal
    reduce_only: bool
    close_position: bool
    client_algo_id: str | None
    working_type: str
    price_match: str
    price_protect: bool
    stp_mode: str
    good_till_date: int
    activate_price: Decimal | None
    callback_rate: Decimal | None


def parse_algo_order(
    params: Params,
    specs: Mapping[str, SymbolSpec],
    *,
    dual: bool,
    mark_of: Callable[[str], Decimal],
    now_ms: int,
) -> AlgoRequest:
    """``POST /fapi/v1/algoOrder`` parameters, checked; raises ``ErrorReply``."""
    algo_type = params.required_text("algoType")
    symbol = params.required_text("symbol")
    side = params.required_text("side")
    kind = params.required_text("type")
    if algo_type != "CONDITIONAL":
        raise E.invalid_value("algoType")
    spec = V.lookup_symbol(specs, symbol)
    if side not in V.SIDES:
        raise E.err(E.INVALID_SIDE)
    if kind not in V.ALGO_TYPES:
        raise E.err(E.INVALID_ORDER_TYPE)
    pos_side = V.position_side(params, dual)
    close_position = params.boolean("closePosition")
    if close_position:
        if kind not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise E.err(E.BAD_COMBO)
        if params.present("quantity"):
            raise E.not_required("quantity")
        if params.present("reduceOnly"):
            raise E.not_required("reduceOnly")
        reduce_only = False
        qty = ZERO
    else:
        reduce_only = V.reduce_only(params, dual)
        qty_value = params.decimal("quantity", required=True)
        assert qty_value is not None
        qty = qty_value
    price = params.decimal("price")
    market = kind in MARKET_KINDS
    if market and price is not None:
        raise E.not_required("price")
    if not market and price is None:
        raise E.mandatory("price")
    activate: Decimal | None = None
    rate: Decimal | None = None
    trigger = params.decimal("triggerPrice")
    if kind == TRAILING:
        rate = params.decimal("callbackRate", required=True)
        assert rate is not None
        if not Decimal("0.1") <= rate <= Decimal(10):
            raise E.invalid_value("callbackRate")
        activate = params.decimal("activatePrice")
        if activate is not None:
            V.check_price(spec, activate)
        trigger = ZERO
    elif trigger is None:
        raise E.mandatory("triggerPrice")
    tif = params.enum("timeInForce", V.TIFS, E.err(E.INVALID_TIF), default="GTC") or "GTC"
    gtd = V.good_till_date(params, tif, now_ms)
    client_id = params.client_id("clientAlgoId")
    params.enum("newOrderRespType", V.RESP_TYPES)
    working = params.enum("workingType", V.WORKING_TYPES, default="CONTRACT_PRICE")
    match = params.enum("priceMatch", V.PRICE_MATCHES, default="NONE") or "NONE"
    stp = params.enum("selfTradePreventionMode", V.STP_MODES, default="EXPIRE_MAKER")
    protect = params.boolean("priceProtect")
    if not close_position:
        V.check_qty(spec, qty, market=market)
    if trigger:
        V.check_price(spec, trigger)
    if price is not None:
        V.check_price(spec, price)
    request = AlgoRequest(
        spec=spec,
        side=side,
        position_side=pos_side,
        type=kind,
        time_in_force=tif,
        qty=qty,
        price=price or ZERO,
        trigger_price=trigger or ZERO,
        reduce_only=reduce_only,
        close_position=close_position,
        client_algo_id=client_id,
        working_type=working or "CONTRACT_PRICE",
        price_match=match,
        price_protect=protect,
        stp_mode=stp or "EXPIRE_MAKER",
        good_till_date=gtd,
        activate_price=activate,
        callback_rate=rate,
    )
    closing = (
        reduce_only or close_position or (side, pos_side) in (("SELL", "LONG"), ("BUY", "SHORT"))
    )
    if not closing:
        reference = request.price or request.trigger_price or mark_of(symbol)
        V.check_min_notional(spec, qty * reference)
    return request
