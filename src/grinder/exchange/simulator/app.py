"""The aiohttp application: Binance's REST paths, the user-data WebSocket, and ``/_sim/``.

Every ``/fapi`` request goes through the same steps, in the venue's order:
injected REST latency; request weight (429 / 418, ``X-MBX-USED-WEIGHT-1M``);
an injected 5xx, if one is armed; API key, signature and recvWindow by the
endpoint's security type; the ORDERS limits for new orders; the handler. A
``ErrorReply`` becomes Binance's ``{"code", "msg"}`` body; any other
exception is logged with its traceback and answered 500 / -1000, and counted
in ``Simulator.internal_errors`` so tests can prove it never happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from grinder.exchange.simulator import auth
from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator.control import register_control
from grinder.exchange.simulator.endpoint import Endpoint, RawJSON
from grinder.exchange.simulator.exchange import Simulator
from grinder.exchange.simulator.faults import ErrorBurst
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.rest import ENDPOINTS
from grinder.exchange.simulator.userstream import Connection, parse_events
from grinder.exchange.simulator.weights import weight_of
from grinder.exchange.simulator.writelog import client_order_id_of

log = logging.getLogger(__name__)
SIM_KEY = web.AppKey("grinder_simulator", Simulator)
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    text = body.text if isinstance(body, RawJSON) else json.dumps(body, separators=(",", ":"))
    return web.Response(
        text=text, status=status, content_type="application/json", headers=headers or {}
    )


def binance_error(exc: E.ErrorReply) -> web.Response:
    return json_response(exc.body(), exc.status, exc.headers)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except E.ErrorReply as exc:
        return binance_error(exc)
    except web.HTTPException as exc:
        if request.path.startswith("/fapi") and exc.status in (404, 405):
            return json_response(
                {"code": -5000, "msg": f"Path {request.path}, Method {request.method} is invalid"},
                exc.status,
            )
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("simulator: unexpected error on %s %s", request.method, request.path)
        request.app[SIM_KEY].internal_errors += 1
        code, msg = E.UNKNOWN
        return json_response({"code": code, "msg": msg}, 500)


async def _read_params(request: web.Request) -> tuple[Params, str, str]:
    raw_query = request.rel_url.raw_query_string
    raw_body = ""
    if request.can_read_body:
        raw_body = (await request.read()).decode("utf-8", errors="replace")
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    if raw_body and request.content_type != "application/json":
        pairs += parse_qsl(raw_body, keep_blank_values=True)
    return Params(pairs), raw_query, raw_body


def _authenticate(
    sim: Simulator, ep: Endpoint, request: web.Request, params: Params, raw_q: str, raw_b: str
) -> None:
    if ep.security == auth.NONE:
        return
    secret = auth.check_api_key(request.headers.get("X-MBX-APIKEY"), sim.secret_for)
    if ep.security == auth.SIGNED:
        auth.check_signature(raw_q, raw_b, secret)
        auth.check_timestamp(
            params,
            sim.server_time(),
            sim.config.recv_window_default_ms,
            sim.config.recv_window_max_ms,
        )


def _burst_response(burst: ErrorBurst, headers: dict[str, str]) -> web.Response:
    return json_response({"code": burst.code, "msg": burst.msg}, burst.status, headers)


def _endpoint_handler(ep: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        sim = request.app[SIM_KEY]
        sim.requests[f"{ep.method} {ep.path}"] += 1
        sim.requests_by_key[
            (request.headers.get("X-MBX-APIKEY") or "-", f"{ep.method} {ep.path}")
        ] += 1
        if ep.write:
            sim.write_requests += 1
        latency = sim.faults.latency_ms(ep.method, ep.path)
        if latency > 0:
            await asyncio.sleep(latency / 1000)
        params, raw_q, raw_b = await _read_params(request)
        record = None
        if ep.write:
            record = sim.write_log.received(
                now_ms=sim.now_ms(),
                api_key=request.headers.get("X-MBX-APIKEY"),
                method=ep.method,
                path=ep.path,
                client_order_id=client_order_id_of(params.raw),
            )
        response = _answer(sim, ep, request, params, raw_q, raw_b)
        if record is not None:
            record.status = response.status
            record.code = _error_code(response)
        return response

    return handle


def _error_code(response: web.StreamResponse) -> int | None:
    if response.status == 200 or not isinstance(response, web.Response) or response.text is None:
        return None
    with contextlib.suppress(ValueError, AttributeError):
        code = json.loads(response.text).get("code")
        return code if isinstance(code, int) else None
    return None


def _answer(
    sim: Simulator,
    ep: Endpoint,
    request: web.Request,
    params: Params,
    raw_q: str,
    raw_b: str,
) -> web.Response:
    """The venue's answer to one ``/fapi`` request, a Binance error as its response:
    request weight, an injected 5xx, authentication, order limits, the handler."""
    try:
        used = sim.limiter.charge(
            request.remote or "unknown", weight_of(ep.method, ep.path, params), ep.path
        )
    except E.ErrorReply as exc:
        return binance_error(exc)
    headers = {WEIGHT_HEADER: str(used)}
    burst = sim.faults.take_error(ep.method, ep.path)
    if burst is not None and not burst.apply:
        return _burst_response(burst, headers)
    try:
        _authenticate(sim, ep, request, params, raw_q, raw_b)
        if ep.new_order:
            sim.order_counter.check()
        body = ep.handler(sim, params)
        if ep.new_order:
            ten, minute = sim.order_counter.record(ep.orders_10s, ep.orders_1m)
            headers["X-MBX-ORDER-COUNT-10S"] = str(ten)
            headers["X-MBX-ORDER-COUNT-1M"] = str(minute)
    except E.ErrorReply as exc:
        if burst is not None:
            return _burst_response(burst, headers)
        for name, value in headers.items():
            exc.headers.setdefault(name, value)
        return binance_error(exc)
    if burst is not None:
        return _burst_response(burst, headers)
    return json_response(body, 200, headers)


async def user_stream(request: web.Request) -> web.StreamResponse:
    """``/private/ws?listenKey=K&events=A/B`` and ``/private/ws/K``: the user-data stream."""
    sim = request.app[SIM_KEY]
    key = request.match_info.get("listen_key") or request.query.get("listenKey")
    if not key or not sim.hub.valid(key):
        return binance_error(E.err(E.INVALID_LISTEN_KEY))
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    conn = Connection(
        ws=ws,
        request=request,
        listen_key=key,
        events=parse_events(request.query.get("events")),
        connected_ms=sim.now_ms(),
    )
    sim.hub.register(conn)
    writer = asyncio.get_running_loop().create_task(sim.hub.writer(conn))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        sim.hub.unregister(conn)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
    return ws


async def _on_shutdown(app: web.Application) -> None:
    await app[SIM_KEY].hub.close_all()


def build_app(sim: Simulator) -> web.Application:
    """The whole simulator as an aiohttp application (background tasks not started)."""
    app = web.Application(middlewares=[error_middleware])
    app[SIM_KEY] = sim
    for ep in ENDPOINTS:
        app.router.add_route(ep.method, ep.path, _endpoint_handler(ep))
    app.router.add_get("/private/ws", user_stream)
    app.router.add_get("/private/ws/{listen_key}", user_stream)
    register_control(app, SIM_KEY)
    app.on_shutdown.append(_on_shutdown)
    return app
