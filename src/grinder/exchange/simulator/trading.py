"""Trading endpoints beyond one order: amendments, batches and the countdown cancel.

``POST /fapi/v1/batchOrders`` (at most 5 orders) and ``PUT /fapi/v1/batchOrders`` (at
most 5 amendments) answer HTTP 200 with one element per request element, in order: the
order, or ``{"code", "msg"}`` for the element the venue refused -- a refused element does
not stop the others. ``DELETE /fapi/v1/batchOrders`` takes ``orderIdList`` or
``origClientOrderIdList`` (at most 10, not both) and answers the same way (-2011 for an
order it cannot cancel). Elements are JSON objects whose values may be strings, numbers or
booleans; each is checked exactly as the single-order endpoint checks its parameters.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from grinder.exchange.simulator import auth
from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator.amend import amend, parse_amendment
from grinder.exchange.simulator.endpoint import Endpoint
from grinder.exchange.simulator.orders import Order
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.validation import lookup_symbol

if TYPE_CHECKING:
    from grinder.exchange.simulator.exchange import Simulator

MAX_BATCH_ORDERS = 5
MAX_BATCH_CANCELS = 10


def _json_list(params: Params, name: str, limit: int) -> list[Any]:
    text = params.required_text(name)
    try:
        items = json.loads(text)
    except ValueError:
        raise E.invalid_value(name) from None
    if not isinstance(items, list) or not items or len(items) > limit:
        raise E.invalid_value(name)
    return items


def _element(item: Any, name: str) -> Params:
    """One batch element as the parameters of a single request."""
    if not isinstance(item, dict):
        raise E.invalid_value(name)
    pairs = []
    for key, value in item.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            continue
        else:
            text = str(value)
        pairs.append((str(key), text))
    return Params(pairs)


def _each(items: list[Any], name: str, handle: Any) -> list[Any]:
    out: list[Any] = []
    for item in items:
        try:
            out.append(handle(_element(item, name)))
        except E.ErrorReply as exc:
            out.append(exc.body())
    return out


def _find_open(sim: Simulator, params: Params, missing: tuple[int, str]) -> Order:
    symbol = params.required_text("symbol")
    lookup_symbol(sim.specs, symbol)
    order_id = params.long("orderId")
    client_id = params.text("origClientOrderId")
    if order_id is None and client_id is None:
        raise E.either_mandatory("orderId", "origClientOrderId")
    order = sim.account.find(symbol, order_id, client_id)
    if order is None:
        raise E.err(missing)
    return order


def modify_order(sim: Simulator, params: Params) -> Any:
    order = _find_open(sim, params, E.NO_SUCH_ORDER)
    change = parse_amendment(params, order, sim.book.mark)
    return amend(sim.account, order, change).write_view()


def _place(sim: Simulator, params: Params) -> Any:
    request = sim.order_request(params)
    ack, order = sim.account.place(request)
    return ack if request.resp_type == "ACK" else order.write_view()


def batch_orders(sim: Simulator, params: Params) -> Any:
    items = _json_list(params, "batchOrders", MAX_BATCH_ORDERS)
    return _each(items, "batchOrders", lambda p: _place(sim, p))


def batch_modify(sim: Simulator, params: Params) -> Any:
    items = _json_list(params, "batchOrders", MAX_BATCH_ORDERS)
    return _each(items, "batchOrders", lambda p: modify_order(sim, p))


def _cancel_one(sim: Simulator, symbol: str, order_id: int | None, client_id: str | None) -> Any:
    order = sim.account.find(symbol, order_id, client_id)
    if order is None or not order.is_open:
        raise E.err(E.CANCEL_REJECTED)
    sim.account.cancel(order)
    return order.write_view()


def batch_cancel(sim: Simulator, params: Params) -> Any:
    symbol = params.required_text("symbol")
    lookup_symbol(sim.specs, symbol)
    by_id = params.sent("orderIdList")
    by_client = params.sent("origClientOrderIdList")
    if by_id and by_client:
        raise E.err(E.BAD_COMBO)
    if not (by_id or by_client):
        raise E.either_mandatory("orderIdList", "origClientOrderIdList")
    name = "orderIdList" if by_id else "origClientOrderIdList"
    items = _json_list(params, name, MAX_BATCH_CANCELS)
    out: list[Any] = []
    for item in items:
        valid = isinstance(item, int) if by_id else isinstance(item, str)
        try:
            if not valid or isinstance(item, bool):
                raise E.invalid_value(name)
            ref = (item, None) if by_id else (None, item)
            out.append(_cancel_one(sim, symbol, *ref))
        except E.ErrorReply as exc:
            out.append(exc.body())
    return out


def countdown_cancel_all(sim: Simulator, params: Params) -> Any:
    symbol = params.required_text("symbol")
    lookup_symbol(sim.specs, symbol)
    countdown = params.long("countdownTime", required=True)
    assert countdown is not None
    return sim.countdowns.set(symbol, countdown, sim.now_ms())


_S = auth.SIGNED

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("PUT", "/fapi/v1/order", _S, modify_order, write=True, new_order=True),
    Endpoint(
        "POST",
        "/fapi/v1/batchOrders",
        _S,
        batch_orders,
        write=True,
        new_order=True,
        orders_10s=5,
    ),
    Endpoint(
        "PUT",
        "/fapi/v1/batchOrders",
        _S,
        batch_modify,
        write=True,
        new_order=True,
        orders_10s=5,
    ),
    Endpoint("DELETE", "/fapi/v1/batchOrders", _S, batch_cancel, write=True),
    Endpoint("POST", "/fapi/v1/countdownCancelAll", _S, countdown_cancel_all, write=True),
)
