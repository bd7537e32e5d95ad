"""The control API under ``/_sim/``: JSON in, JSON out, no Binance authentication.

Used by integration tests, the demo and benchmarks to drive the venue. Errors
are HTTP 400 ``{"error": "...", "code": <Binance code or null>}``.

State
  GET    /_sim/state                 orders, algo orders, positions, marks, weights,
                                     stream, faults, counters (``writeRequests`` = port calls;
                                     ``byApiKey``: requests per API key and endpoint)
  GET    /_sim/events?limit=N        the last N published (and suppressed) stream events
  GET    /_sim/writes?apiKey=K       every write received (when, which API key, client order
                                     id, HTTP status, Binance code); apiKey narrows it
  POST   /_sim/reset                 {"seed"?}  everything back to the start
  POST   /_sim/tick                  {"steps"?: 1, "walk"?: true}  run heartbeats now
  POST   /_sim/clock/advance         {"ms"}  move a ManualClock (then one heartbeat)

Drift (as if done by hand, or by another instance)
  POST   /_sim/orders                {"symbol","side","type","quantity","price"?,
                                      "timeInForce"?,"positionSide"?,"reduceOnly"?,
                                      "clientOrderId"?,"emitEvents"?: true,"validate"?: true}
                                     place an order through the book -> its query view
  DELETE /_sim/orders                {"orderId" | "clientOrderId", "symbol"?}
                                     the order vanishes: no event, unknown to queries
  POST   /_sim/orders/fill           {"orderId"|"clientOrderId","symbol"?,"quantity"?,"price"?}
  POST   /_sim/orders/cancel         {"orderId"|"clientOrderId","symbol"?,
                                      "status"?: "CANCELED"|"EXPIRED"}  ended by the venue
  POST   /_sim/algo-orders           the POST /fapi/v1/algoOrder parameters (+ "emitEvents")
  DELETE /_sim/algo-orders           {"algoId" | "clientAlgoId"}  vanishes without an event
  POST   /_sim/algo-orders/trigger   {"algoId" | "clientAlgoId"}  fire it now
  POST   /_sim/positions             {"symbol","quantity" (signed),"positionSide"?,"price"?,
                                      "via"?: "order"|"set","clientOrderId"?,"emitEvents"?}
                                     "order" trades a MARKET order (normal events);
                                     "set" overwrites the position (ACCOUNT_UPDATE only)
  POST   /_sim/stream/suppress       {"count"?,"clientOrderId"?,"eventTypes"?: [...]}
                                     the next N events (or all about one client id) are
                                     never sent
  DELETE /_sim/stream/suppress       remove all suppression rules

Market
  POST   /_sim/mark                  {"symbol","price"}  set the mark (matching runs at once)
  POST   /_sim/walk                  {"frozen"?,"symbol"?,"steps"?,"volatility"?}
  POST   /_sim/liquidity             {"symbol"?,"quantity": "0.5" | null}  max qty per pass
  POST   /_sim/depth                 {"symbol"?,"levels": 5 | null,"quantity","spacingTicks"?}
                                     a thin book for takers (self-trade prevention applies)
  POST   /_sim/position-mode         {"dualSidePosition": bool, "force"?: true}
                                     (false: refused with -4059 / -4067 / -4068)

Faults
  POST   /_sim/faults/latency        {"restMs"?,"wsMs"?,"paths"?: [...],"methods"?: [...]}
                                     ``restMs`` for the requests matching paths and methods
  POST   /_sim/faults/errors         {"count","status": 500|502|503|504,"code"?,"msg"?,
                                      "paths"?: [...],"methods"?: [...],"apply"?: false}
                                     ``apply`` processes the request, then answers the error
  POST   /_sim/faults/rate-limit     {"count","retryAfter"?,"paths"?}  the next N /fapi requests
                                     (to one of ``paths`` when given) get 429
                                     (``Retry-After``: that many seconds, else to the next minute)
  POST   /_sim/faults/weight         {"usedWeight1m"}  every IP's minute starts at that weight
  POST   /_sim/faults/ban            {"seconds"}  418 for every request for that long
  POST   /_sim/faults/clock-skew     {"offsetMs"}  server time = local time + offset
  POST   /_sim/faults/order-query-lag {"ms"}  GET /fapi/v1/order answers -2013 for younger orders
  DELETE /_sim/faults                clear every fault (and forced 429 / ban)
  POST   /_sim/ws/drop               {"mode"?: "abort"|"close"}  cut every user-data socket
  POST   /_sim/ws/raw                {"text"}                    send text as-is (garbled frame)
  POST   /_sim/listen-keys/expire    {"listenKey"?}  expire now (listenKeyExpired, then close)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from grinder.exchange.simulator import control_drift as D
from grinder.exchange.simulator import control_market as M
from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator.control_args import Body, ControlError
from grinder.exchange.simulator.exchange import Simulator

ControlHandler = Callable[[Simulator, Body, web.Request], Any]

ROUTES: tuple[tuple[str, str, ControlHandler], ...] = (
    ("GET", "/_sim/state", D.state),
    ("GET", "/_sim/events", D.recent_events),
    ("GET", "/_sim/writes", D.writes),
    ("POST", "/_sim/reset", D.reset),
    ("POST", "/_sim/tick", D.tick),
    ("POST", "/_sim/clock/advance", D.advance_clock),
    ("POST", "/_sim/orders", D.inject_order),
    ("DELETE", "/_sim/orders", D.vanish_order),
    ("POST", "/_sim/orders/fill", D.fill_order),
    ("POST", "/_sim/orders/cancel", D.end_order),
    ("POST", "/_sim/algo-orders", D.inject_algo),
    ("DELETE", "/_sim/algo-orders", D.vanish_algo),
    ("POST", "/_sim/algo-orders/trigger", D.trigger_algo),
    ("POST", "/_sim/positions", D.inject_position),
    ("POST", "/_sim/stream/suppress", D.suppress),
    ("DELETE", "/_sim/stream/suppress", D.clear_suppression),
    ("POST", "/_sim/mark", M.set_mark),
    ("POST", "/_sim/walk", M.walk),
    ("POST", "/_sim/liquidity", M.liquidity),
    ("POST", "/_sim/depth", M.depth),
    ("POST", "/_sim/position-mode", M.position_mode),
    ("POST", "/_sim/faults/latency", M.latency),
    ("POST", "/_sim/faults/errors", M.error_burst),
    ("POST", "/_sim/faults/rate-limit", M.rate_limit),
    ("POST", "/_sim/faults/weight", M.used_weight),
    ("POST", "/_sim/faults/ban", M.ban),
    ("POST", "/_sim/faults/clock-skew", M.clock_skew),
    ("POST", "/_sim/faults/order-query-lag", M.order_query_lag),
    ("DELETE", "/_sim/faults", M.clear_faults),
    ("POST", "/_sim/ws/drop", M.drop_ws),
    ("POST", "/_sim/ws/raw", M.send_raw_frame),
    ("POST", "/_sim/listen-keys/expire", M.expire_listen_key),
)


def _wrap(
    handler: ControlHandler, key: web.AppKey[Simulator]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        sim = request.app[key]
        body: Body = {}
        if request.can_read_body:
            text = await request.text()
            if text.strip():
                try:
                    loaded = json.loads(text)
                except json.JSONDecodeError as exc:
                    return web.json_response(
                        {"error": f"bad JSON: {exc}", "code": None}, status=400
                    )
                if not isinstance(loaded, dict):
                    return web.json_response(
                        {"error": "the body must be a JSON object", "code": None}, status=400
                    )
                body = loaded
        try:
            result = handler(sim, body, request)
        except ControlError as exc:
            return web.json_response({"error": str(exc), "code": None}, status=400)
        except E.ErrorReply as exc:
            return web.json_response({"error": exc.msg, "code": exc.code}, status=400)
        except (ValueError, TypeError, ArithmeticError) as exc:
            return web.json_response({"error": str(exc), "code": None}, status=400)
        return web.json_response(result)

    return handle


def register_control(app: web.Application, key: web.AppKey[Simulator]) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, _wrap(handler, key))
