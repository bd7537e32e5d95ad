"""Control API handlers: the market (marks, walk, liquidity, mode) and injected faults."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp import web

from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator.control_args import (
    MAX_STEPS,
    Body,
    ControlError,
    decimal_arg,
    int_arg,
    paths_arg,
    symbol_arg,
)
from grinder.exchange.simulator.depth import MAX_LEVELS, Depth
from grinder.exchange.simulator.exchange import Simulator
from grinder.exchange.simulator.faults import DEFAULT_5XX, ErrorBurst

MAX_LATENCY_MS = 600_000
MAX_BAN_SECONDS = 3 * 24 * 3600

# --- market ----------------------------------------------------------------------------------


def set_mark(sim: Simulator, body: Body, request: web.Request) -> Any:
    symbol = symbol_arg(sim, body)
    assert symbol is not None
    price = decimal_arg(body, "price", required=True)
    assert price is not None
    mark = sim.book.set_mark(symbol, price)
    sim.match(symbol)
    return {"symbol": symbol, "markPrice": str(mark)}


def walk(sim: Simulator, body: Body, request: web.Request) -> Any:
    symbol = symbol_arg(sim, body, required=False)
    if "frozen" in body:
        sim.book.freeze(bool(body["frozen"]), symbol)
    if "volatility" in body:
        volatility = decimal_arg(body, "volatility")
        if volatility is None or not 0 <= volatility <= Decimal("0.1"):
            raise ControlError("'volatility' must be between 0 and 0.1")
        sim.book.volatility = float(volatility)
    for _ in range(int_arg(body, "steps", 0, low=0, high=MAX_STEPS)):
        for changed in sim.book.step(force=True):
            sim.match(changed)
    return {"frozen": sim.book.frozen, "markPrices": sim.book.snapshot()}


def liquidity(sim: Simulator, body: Body, request: web.Request) -> Any:
    symbol = symbol_arg(sim, body, required=False)
    sim.book.set_liquidity(symbol, decimal_arg(body, "quantity"))
    return {"ok": True}


def depth(sim: Simulator, body: Body, request: web.Request) -> Any:
    """A thin book for takers (``depth.py``), or none with ``"levels": null``."""
    symbol = symbol_arg(sim, body, required=False)
    if body.get("levels") is None:
        sim.book.set_depth(symbol, None)
        return {"depth": None}
    qty = decimal_arg(body, "quantity", required=True)
    assert qty is not None
    try:
        book = Depth(
            levels=int_arg(body, "levels", 1, low=1, high=MAX_LEVELS),
            level_qty=qty,
            spacing_ticks=int_arg(body, "spacingTicks", 1, low=1, high=1_000_000),
        )
    except ValueError as exc:
        raise ControlError(str(exc)) from None
    sim.book.set_depth(symbol, book)
    return {
        "depth": {"levels": book.levels, "quantity": str(qty), "spacingTicks": book.spacing_ticks}
    }


def position_mode(sim: Simulator, body: Body, request: web.Request) -> Any:
    if "dualSidePosition" not in body:
        raise ControlError("'dualSidePosition' is required")
    sim.account.change_mode(bool(body["dualSidePosition"]), force=bool(body.get("force", True)))
    return {"dualSidePosition": sim.account.dual}


# --- faults ----------------------------------------------------------------------------------


def latency(sim: Simulator, body: Body, request: web.Request) -> Any:
    if "restMs" in body:
        sim.faults.rest_latency_ms = int_arg(body, "restMs", low=0, high=MAX_LATENCY_MS)
        paths = body.get("paths")
        methods = body.get("methods")
        sim.faults.rest_latency_paths = tuple(paths) if paths else None
        sim.faults.rest_latency_methods = tuple(m.upper() for m in methods) if methods else None
    if "wsMs" in body:
        sim.faults.ws_latency_ms = int_arg(body, "wsMs", low=0, high=MAX_LATENCY_MS)
    return sim.faults.dump()


def error_burst(sim: Simulator, body: Body, request: web.Request) -> Any:
    status = int_arg(body, "status", 503, low=500, high=599)
    code, msg = DEFAULT_5XX.get(status, (-1000, E.UNKNOWN[1]))
    paths = body.get("paths")
    methods = body.get("methods")
    burst = ErrorBurst(
        remaining=int_arg(body, "count", 1, low=1),
        status=status,
        code=int_arg(body, "code", code),
        msg=str(body.get("msg", msg)),
        paths=tuple(paths) if paths else None,
        methods=tuple(m.upper() for m in methods) if methods else None,
        apply=bool(body.get("apply", False)),
    )
    sim.faults.add_burst(burst)
    return burst.dump()


def rate_limit(sim: Simulator, body: Body, request: web.Request) -> Any:
    count = int_arg(body, "count", 1, low=0)
    retry_after = body.get("retryAfter")
    retry_s = (
        None if retry_after is None else int_arg(body, "retryAfter", low=1, high=MAX_BAN_SECONDS)
    )
    paths = paths_arg(body)  # every argument read before any is applied
    sim.limiter.forced_429 = count
    sim.limiter.forced_retry_after_s = retry_s
    sim.limiter.forced_429_paths = paths
    return {
        "forced429Remaining": count,
        "retryAfter": retry_s,
        "paths": list(paths or ()),
    }


def used_weight(sim: Simulator, body: Body, request: web.Request) -> Any:
    sim.limiter.set_other_weight(int_arg(body, "usedWeight1m", low=0, high=1_000_000))
    return {"otherWeight1m": sim.limiter.other_weight}


def ban(sim: Simulator, body: Body, request: web.Request) -> Any:
    seconds = decimal_arg(body, "seconds", required=True)
    if seconds is None or not 0 <= seconds <= MAX_BAN_SECONDS:
        raise ControlError(f"'seconds' must be between 0 and {MAX_BAN_SECONDS}")
    sim.limiter.ban(float(seconds))
    return {"bannedUntil": sim.limiter.forced_ban_until_ms}


def clock_skew(sim: Simulator, body: Body, request: web.Request) -> Any:
    sim.faults.clock_skew_ms = int_arg(body, "offsetMs", low=-86_400_000, high=86_400_000)
    return {"clockSkewMs": sim.faults.clock_skew_ms, "serverTime": sim.server_time()}


def order_query_lag(sim: Simulator, body: Body, request: web.Request) -> Any:
    sim.faults.order_query_lag_ms = int_arg(body, "ms", low=0)
    return {"orderQueryLagMs": sim.faults.order_query_lag_ms}


def clear_faults(sim: Simulator, body: Body, request: web.Request) -> Any:
    sim.faults.reset()
    sim.limiter.clear_faults()
    return sim.faults.dump()


def drop_ws(sim: Simulator, body: Body, request: web.Request) -> Any:
    mode = body.get("mode", "abort")
    if mode not in ("abort", "close"):
        raise ControlError("'mode' must be 'abort' or 'close'")
    return {"dropped": sim.hub.drop_all(abort=mode == "abort")}


def send_raw_frame(sim: Simulator, body: Body, request: web.Request) -> Any:
    text = body.get("text")
    if not isinstance(text, str) or len(text) > 1_000_000:
        raise ControlError("'text' must be a string of at most 1,000,000 characters")
    return {"sent": sim.hub.send_raw(text)}


def expire_listen_key(sim: Simulator, body: Body, request: web.Request) -> Any:
    key = body.get("listenKey")
    if key is not None:
        if key not in sim.hub.keys:
            raise ControlError("no such listenKey")
        return {"closedConnections": sim.hub.expire(str(key))}
    return {"closedConnections": sim.hub.expire_all()}
