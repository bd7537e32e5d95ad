"""Control API handlers: state, time, and drift (orders, positions, missed events)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from grinder.exchange.simulator.clock import ManualClock
from grinder.exchange.simulator.control_args import (
    MAX_STEPS,
    Body,
    ControlError,
    decimal_arg,
    find_algo,
    find_order,
    int_arg,
    params_from,
    symbol_arg,
)
from grinder.exchange.simulator.exchange import Simulator
from grinder.exchange.simulator.params import valid_client_id

# --- state -----------------------------------------------------------------------------------


def state(sim: Simulator, body: Body, request: web.Request) -> Any:
    return sim.dump()


def recent_events(sim: Simulator, body: Body, request: web.Request) -> Any:
    limit = int(request.query.get("limit", "100"))
    return {
        "events": list(sim.hub.recent)[-limit:],
        "suppressed": list(sim.hub.suppressed_log)[-limit:],
    }


def writes(sim: Simulator, body: Body, request: web.Request) -> Any:
    """Every write received, oldest first (``?apiKey=K``: only those sent with key K)."""
    return {"writes": sim.write_log.dump(request.query.get("apiKey"))}


def reset(sim: Simulator, body: Body, request: web.Request) -> Any:
    seed = body.get("seed")
    sim.reset(None if seed is None else int(seed))
    return {"ok": True, "seed": sim.config.seed}


def tick(sim: Simulator, body: Body, request: web.Request) -> Any:
    steps = int_arg(body, "steps", 1, low=0, high=MAX_STEPS)
    walk = bool(body.get("walk", True))
    for _ in range(steps):
        sim.heartbeat(walk=walk)
    return {"ok": True, "markPrices": sim.book.snapshot()}


def advance_clock(sim: Simulator, body: Body, request: web.Request) -> Any:
    if not isinstance(sim.clock, ManualClock):
        raise ControlError("the simulator runs on the system clock; start it with a ManualClock")
    now = sim.clock.advance(int_arg(body, "ms", low=0))
    sim.heartbeat(walk=False)
    return {"ok": True, "now": now}


# --- drift -----------------------------------------------------------------------------------


def inject_order(sim: Simulator, body: Body, request: web.Request) -> Any:
    client_id = body.get("clientOrderId") or body.get("newClientOrderId")
    if client_id is not None and body.get("validate", True) and not valid_client_id(str(client_id)):
        raise ControlError(f"client order id {client_id!r} is not valid on Binance")
    params = params_from(body, ("clientOrderId", "newClientOrderId", "emitEvents", "validate"))
    request_ = sim.order_request(params)
    if client_id is not None:
        request_.client_order_id = str(client_id)
    _, order = sim.account.place(request_, emit_events=bool(body.get("emitEvents", True)))
    return order.query_view()


def vanish_order(sim: Simulator, body: Body, request: web.Request) -> Any:
    order = find_order(sim, body)
    sim.account.vanish(order)
    return {"ok": True, "orderId": order.order_id, "clientOrderId": order.client_order_id}


def fill_order(sim: Simulator, body: Body, request: web.Request) -> Any:
    order = find_order(sim, body)
    if not order.is_open:
        raise ControlError(f"order is {order.status}")
    qty = decimal_arg(body, "quantity") or order.remaining
    price = decimal_arg(body, "price") or (order.price if order.type == "LIMIT" else None)
    if qty <= 0 or (price is not None and price <= 0):
        raise ControlError("'quantity' and 'price' must be positive")
    traded = sim.account.fill(order, qty, price or sim.book.mark(order.symbol), maker=True)
    return {"traded": str(traded), "order": order.query_view()}


def end_order(sim: Simulator, body: Body, request: web.Request) -> Any:
    order = find_order(sim, body)
    if not order.is_open:
        raise ControlError(f"order is {order.status}")
    status = body.get("status", "CANCELED")
    if status == "CANCELED":
        sim.account.cancel(order)
    elif status == "EXPIRED":
        sim.account.expire(order)
    else:
        raise ControlError("'status' must be CANCELED or EXPIRED")
    return order.query_view()


def inject_algo(sim: Simulator, body: Body, request: web.Request) -> Any:
    body = {"algoType": "CONDITIONAL", **body}
    params = params_from(body, ("emitEvents",))
    request_ = sim.algo_request(params)
    algo = sim.algos.place(request_, emit_events=bool(body.get("emitEvents", True)))
    return algo.query_view()


def vanish_algo(sim: Simulator, body: Body, request: web.Request) -> Any:
    algo = find_algo(sim, body)
    sim.algos.vanish(algo)
    return {"ok": True, "algoId": algo.algo_id}


def trigger_algo(sim: Simulator, body: Body, request: web.Request) -> Any:
    algo = find_algo(sim, body)
    if not algo.is_open:
        raise ControlError(f"algo order is {algo.status}")
    sim.algos.trigger(algo)
    return algo.query_view()


def inject_position(sim: Simulator, body: Body, request: web.Request) -> Any:
    symbol = symbol_arg(sim, body)
    assert symbol is not None
    qty = decimal_arg(body, "quantity", required=True)
    assert qty is not None
    price = decimal_arg(body, "price")
    account = sim.account
    side = body.get("positionSide") or (
        ("LONG" if qty > 0 else "SHORT") if account.dual else "BOTH"
    )
    if side not in account.position_sides():
        raise ControlError(f"positionSide {side!r} does not fit the position mode")
    if price is not None and price <= 0:
        raise ControlError("'price' must be positive")
    emit = bool(body.get("emitEvents", True))
    via = body.get("via", "order")
    if via == "set":
        if (side == "LONG" and qty < 0) or (side == "SHORT" and qty > 0):
            raise ControlError("a LONG position is >= 0 and a SHORT one <= 0")
        pos = account.set_position(
            symbol, side, qty, price or sim.book.mark(symbol), emit_events=emit
        )
        return pos.dump(sim.book.mark(symbol))
    if via != "order":
        raise ControlError("'via' must be 'order' or 'set'")
    if qty == 0:
        raise ControlError("'quantity' must not be 0 with via=order")
    order_body: Body = {
        "symbol": symbol,
        "side": "BUY" if qty > 0 else "SELL",
        "type": "MARKET",
        "quantity": str(abs(qty)),
    }
    if account.dual:
        order_body["positionSide"] = side
    params = params_from(order_body)
    request_ = sim.order_request(params)
    client_id = body.get("clientOrderId")
    request_.client_order_id = None if client_id is None else str(client_id)
    _, order = account.place(request_, emit_events=emit, taker_price=price)
    return {
        "order": order.query_view(),
        "position": account.position(symbol, side).dump(sim.book.mark(symbol)),
    }


def suppress(sim: Simulator, body: Body, request: web.Request) -> Any:
    count = body.get("count")
    client_id = body.get("clientOrderId")
    if count is None and client_id is None:
        raise ControlError("'count' or 'clientOrderId' is required")
    rule = sim.hub.suppress(
        count=None if count is None else int(count),
        client_order_id=client_id,
        event_types=body.get("eventTypes"),
    )
    return rule.dump()


def clear_suppression(sim: Simulator, body: Body, request: web.Request) -> Any:
    sim.hub.clear_suppression()
    return {"ok": True}
