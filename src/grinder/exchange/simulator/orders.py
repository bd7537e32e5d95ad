"""Regular orders: their state, and their JSON as the REST endpoints write it.

Two REST views exist, as on Binance: the *query* view (openOrders, order
query: has ``time``, no ``cumQty``) and the *write* view (new and cancel
responses: has ``cumQty``, no ``time``). The query view of an order is cached
as JSON text until the order changes, so an openOrders snapshot of a thousand
orders is a string join.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from grinder.exchange.simulator.number_text import ZERO, fixed
from grinder.exchange.simulator.symbols import SymbolSpec

OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
TRAILING = "TRAILING_STOP_MARKET"


@dataclass(slots=True, eq=False)
class Order:
    """One regular order (LIMIT or MARKET, or the child of a triggered algo order)."""

    order_id: int
    client_order_id: str
    spec: SymbolSpec
    side: str
    position_side: str
    type: str
    time_in_force: str
    qty: Decimal
    price: Decimal
    time_ms: int
    reduce_only: bool = False
    orig_type: str = ""
    stop_price: Decimal = ZERO
    close_position: bool = False
    working_type: str = "CONTRACT_PRICE"
    price_protect: bool = False
    price_match: str = "NONE"
    stp_mode: str = "EXPIRE_MAKER"
    good_till_date: int = 0
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    update_time_ms: int = 0
    algo_id: int = 0
    activate_price: Decimal | None = None
    price_rate: Decimal | None = None
    amendments: int = 0
    expiry_reason: int = 0
    """Why the exchange expired it (``er`` of ORDER_TRADE_UPDATE; 0: none)."""
    _query_json: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.orig_type:
            self.orig_type = self.type
        if not self.update_time_ms:
            self.update_time_ms = self.time_ms

    @property
    def symbol(self) -> str:
        return self.spec.symbol

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.executed_qty

    @property
    def avg_price(self) -> Decimal:
        if self.executed_qty == 0:
            return ZERO
        return self.cum_quote / self.executed_qty

    def changed(self, now_ms: int) -> None:
        """Record a change: new update time, and the cached JSON is stale."""
        self.update_time_ms = now_ms
        self._query_json = None

    def add_fill(self, qty: Decimal, price: Decimal, now_ms: int) -> None:
        self.executed_qty += qty
        self.cum_quote += qty * price
        self.status = "FILLED" if self.executed_qty >= self.qty else "PARTIALLY_FILLED"
        self.changed(now_ms)

    def end(self, status: str, now_ms: int) -> None:
        self.status = status
        self.changed(now_ms)

    # --- REST views -------------------------------------------------------------------------

    def _numbers(self) -> dict[str, str]:
        pp = self.spec.price_precision
        qp = self.spec.quantity_precision
        avg = self.avg_price
        return {
            "avgPrice": fixed(avg, max(pp, 5)),
            "cumQuote": fixed(self.cum_quote, min(pp + qp, 8)),
            "executedQty": fixed(self.executed_qty, qp),
            "origQty": fixed(self.qty, qp),
            "price": fixed(self.price, pp),
            "stopPrice": fixed(self.stop_price, pp),
        }

    def _middle(self, n: dict[str, str]) -> dict[str, Any]:
        """The run of fields both views write in the same order, ``price`` to ``symbol``."""
        return {
            "price": n["price"],
            "reduceOnly": self.reduce_only,
            "side": self.side,
            "positionSide": self.position_side,
            "status": self.status,
            "stopPrice": n["stopPrice"],
            "closePosition": self.close_position,
            "symbol": self.symbol,
        }

    def _trailing(self, out: dict[str, Any]) -> None:
        if self.orig_type == TRAILING:
            out["activatePrice"] = str(self.activate_price or ZERO)
            out["priceRate"] = str(self.price_rate or ZERO)

    def query_view(self) -> dict[str, Any]:
        """As ``GET /fapi/v1/openOrders`` and ``GET /fapi/v1/order`` write it."""
        n = self._numbers()
        out: dict[str, Any] = {
            "avgPrice": n["avgPrice"],
            "clientOrderId": self.client_order_id,
            "cumQuote": n["cumQuote"],
            "executedQty": n["executedQty"],
            "orderId": self.order_id,
            "origQty": n["origQty"],
            "origType": self.orig_type,
            **self._middle(n),
            "time": self.time_ms,
            "timeInForce": self.time_in_force,
            "type": self.type,
        }
        self._trailing(out)
        out.update(self._tail())
        return out

    def query_json(self) -> str:
        if self._query_json is None:
            self._query_json = json.dumps(self.query_view(), separators=(",", ":"))
        return self._query_json

    def write_view(self) -> dict[str, Any]:
        """As ``POST`` and ``DELETE /fapi/v1/order`` write it."""
        n = self._numbers()
        out: dict[str, Any] = {
            "clientOrderId": self.client_order_id,
            "cumQty": n["executedQty"],
            "cumQuote": n["cumQuote"],
            "executedQty": n["executedQty"],
            "orderId": self.order_id,
            "avgPrice": n["avgPrice"],
            "origQty": n["origQty"],
            **self._middle(n),
            "timeInForce": self.time_in_force,
            "type": self.type,
            "origType": self.orig_type,
        }
        self._trailing(out)
        out.update(self._tail())
        return out

    def _tail(self) -> dict[str, Any]:
        return {
            "updateTime": self.update_time_ms,
            "workingType": self.working_type,
            "priceProtect": self.price_protect,
            "priceMatch": self.price_match,
            "selfTradePreventionMode": self.stp_mode,
            "goodTillDate": self.good_till_date,
        }

    def dump(self) -> dict[str, Any]:
        """For the control API's state dump."""
        out = self.query_view()
        if self.algo_id:
            out["algoId"] = self.algo_id
        return out
