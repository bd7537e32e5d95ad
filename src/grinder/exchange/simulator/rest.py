"""The core Binance USDⓈ-M REST endpoints (orders, positions, algo orders, listenKey), and
the table of every endpoint (with ``market_data``, ``account_api`` and ``trading``'s).

Handlers are synchronous: they read parameters, change the simulator's state
and return the JSON body (or raise ``ErrorReply``). Authentication, weights,
faults and HTTP details are the app's (``app.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from grinder.exchange.simulator import account_api, auth, market_data, trading, views
from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator.account import Account
from grinder.exchange.simulator.algo import AlgoOrder
from grinder.exchange.simulator.endpoint import Endpoint, RawJSON
from grinder.exchange.simulator.exchange import Simulator
from grinder.exchange.simulator.orders import Order
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.validation import lookup_symbol

_T = TypeVar("_T")


# --- market data ----------------------------------------------------------------------------


def ping(sim: Simulator, params: Params) -> Any:
    return {}


def server_time(sim: Simulator, params: Params) -> Any:
    return {"serverTime": sim.server_time()}


def exchange_info(sim: Simulator, params: Params) -> Any:
    return sim.exchange_info()


def _optional_symbol(sim: Simulator, params: Params) -> str | None:
    symbol = params.text("symbol")
    if symbol is not None:
        lookup_symbol(sim.specs, symbol)
    return symbol


def _per_symbol(
    sim: Simulator, params: Params, view: Callable[[Account, str, int], dict[str, Any]]
) -> Any:
    """The view of the ``symbol`` parameter, or the list of every symbol's view without one."""
    symbol = _optional_symbol(sim, params)
    now = sim.server_time()
    if symbol is not None:
        return view(sim.account, symbol, now)
    return [view(sim.account, s, now) for s in sim.specs]


def premium_index(sim: Simulator, params: Params) -> Any:
    return _per_symbol(sim, params, views.premium_index)


def ticker_price(sim: Simulator, params: Params) -> Any:
    return _per_symbol(sim, params, views.ticker_price)


# --- account settings and positions ---------------------------------------------------------


def get_position_mode(sim: Simulator, params: Params) -> Any:
    return {"dualSidePosition": sim.account.dual}


def set_position_mode(sim: Simulator, params: Params) -> Any:
    params.required_text("dualSidePosition")
    dual = params.boolean("dualSidePosition")
    if dual != sim.account.dual and any(True for _ in sim.algos.open_orders()):
        raise E.err(E.POSITION_SIDE_OPEN_ORDERS)  # conditional orders are open orders too
    sim.account.change_mode(dual)
    return {"code": 200, "msg": "success"}


def position_risk_v3(sim: Simulator, params: Params) -> Any:
    return views.position_risk_v3(sim.account, _optional_symbol(sim, params))


def position_risk_v2(sim: Simulator, params: Params) -> Any:
    return views.position_risk_v2(sim.account, _optional_symbol(sim, params))


def account_v2(sim: Simulator, params: Params) -> Any:
    return views.account_v2(sim.account)


def account_v3(sim: Simulator, params: Params) -> Any:
    return views.account_v3(sim.account)


# --- orders -----------------------------------------------------------------------------------


def open_orders(sim: Simulator, params: Params) -> Any:
    symbol = _optional_symbol(sim, params)
    parts = [order.query_json() for order in sim.account.open_orders(symbol)]
    return RawJSON("[" + ",".join(parts) + "]")


def _order_ref(params: Params) -> tuple[str, int | None, str | None]:
    symbol = params.required_text("symbol")
    order_id = params.long("orderId")
    client_id = params.text("origClientOrderId")
    if order_id is None and client_id is None:
        raise E.either_mandatory("orderId", "origClientOrderId")
    return symbol, order_id, client_id


def _find(sim: Simulator, params: Params, missing: tuple[int, str]) -> Order:
    symbol, order_id, client_id = _order_ref(params)
    lookup_symbol(sim.specs, symbol)
    order = sim.account.find(symbol, order_id, client_id)
    if order is None:
        raise E.err(missing)
    return order


def query_order(sim: Simulator, params: Params) -> Any:
    order = _find(sim, params, E.NO_SUCH_ORDER)
    lag = sim.faults.order_query_lag_ms
    if lag and sim.now_ms() - order.time_ms < lag:
        raise E.err(E.NO_SUCH_ORDER)
    return order.query_view()


def query_open_order(sim: Simulator, params: Params) -> Any:
    order = _find(sim, params, E.NO_SUCH_ORDER)
    if not order.is_open:
        raise E.err(E.NO_SUCH_ORDER)
    return order.query_view()


def new_order(sim: Simulator, params: Params) -> Any:
    request = sim.order_request(params)
    ack, order = sim.account.place(request)
    return ack if request.resp_type == "ACK" else order.write_view()


def cancel_order(sim: Simulator, params: Params) -> Any:
    order = _find(sim, params, E.CANCEL_REJECTED)
    if not order.is_open:
        raise E.err(E.CANCEL_REJECTED)
    sim.account.cancel(order)
    return order.write_view()


def _cancel_all(
    sim: Simulator,
    params: Params,
    open_orders: Callable[[str], Iterator[_T]],
    cancel: Callable[[_T], None],
) -> Any:
    """Cancel every open order of the ``symbol`` parameter (regular or algo, as given)."""
    symbol = params.required_text("symbol")
    lookup_symbol(sim.specs, symbol)
    for order in list(open_orders(symbol)):
        cancel(order)
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


def cancel_all(sim: Simulator, params: Params) -> Any:
    return _cancel_all(sim, params, sim.account.open_orders, sim.account.cancel)


# --- conditional (algo) orders ------------------------------------------------------------------


def new_algo_order(sim: Simulator, params: Params) -> Any:
    return sim.algos.place(sim.algo_request(params)).new_view()


def _find_algo(sim: Simulator, params: Params, missing: tuple[int, str]) -> AlgoOrder:
    algo_id = params.long("algoId")
    client_id = params.text("clientAlgoId")
    if algo_id is None and client_id is None:
        raise E.either_mandatory("algoId", "clientAlgoId")
    algo = sim.algos.find(algo_id, client_id)
    if algo is None:
        raise E.err(missing)
    return algo


def cancel_algo_order(sim: Simulator, params: Params) -> Any:
    algo = _find_algo(sim, params, E.CANCEL_REJECTED)
    sim.algos.cancel(algo)
    return {
        "algoId": algo.algo_id,
        "clientAlgoId": algo.client_algo_id,
        "code": "200",
        "msg": "success",
    }


def query_algo_order(sim: Simulator, params: Params) -> Any:
    return _find_algo(sim, params, E.NO_SUCH_ORDER).query_view()


def open_algo_orders(sim: Simulator, params: Params) -> Any:
    symbol = _optional_symbol(sim, params)
    algo_id = params.long("algoId")
    params.text("algoType")
    return [
        a.query_view()
        for a in sim.algos.open_orders(symbol)
        if algo_id is None or a.algo_id == algo_id
    ]


def all_algo_orders(sim: Simulator, params: Params) -> Any:
    """Every algo order of the symbol, open or not, oldest first: from ``algoId`` on when
    given, else the newest ``limit`` of the time window."""
    symbol = params.required_text("symbol")
    lookup_symbol(sim.specs, symbol)
    algo_id = params.long("algoId")
    limit = params.limit(500, 1000)
    page = params.limit(1, 1_000_000, "page")
    start, end = params.window()
    rows = [a for a in sim.algos.by_id.values() if a.symbol == symbol]
    if algo_id is not None:
        rows = [a for a in rows if a.algo_id >= algo_id]
    rows = [
        a
        for a in rows
        if (start is None or a.create_time_ms >= start) and (end is None or a.create_time_ms <= end)
    ]
    skip = (page - 1) * limit
    if algo_id is not None or start is not None:
        rows = rows[skip : skip + limit]
    else:
        rows = rows[::-1][skip : skip + limit][::-1]
    return [a.query_view() for a in rows]


def cancel_all_algo(sim: Simulator, params: Params) -> Any:
    return _cancel_all(sim, params, sim.algos.open_orders, sim.algos.cancel)


# --- user data stream ----------------------------------------------------------------------------


def listen_key_create(sim: Simulator, params: Params) -> Any:
    return {"listenKey": sim.hub.create_key()}


def listen_key_keepalive(sim: Simulator, params: Params) -> Any:
    return {"listenKey": sim.hub.keepalive(params.text("listenKey"))}


def listen_key_close(sim: Simulator, params: Params) -> Any:
    sim.hub.close_key(params.text("listenKey"))
    return {}


_N, _U, _S = auth.NONE, auth.USER_STREAM, auth.SIGNED

CORE: tuple[Endpoint, ...] = (
    Endpoint("GET", "/fapi/v1/ping", _N, ping),
    Endpoint("GET", "/fapi/v1/time", _N, server_time),
    Endpoint("GET", "/fapi/v1/exchangeInfo", _N, exchange_info),
    Endpoint("GET", "/fapi/v1/premiumIndex", _N, premium_index),
    Endpoint("GET", "/fapi/v1/ticker/price", _N, ticker_price),
    Endpoint("GET", "/fapi/v1/positionSide/dual", _S, get_position_mode),
    Endpoint("POST", "/fapi/v1/positionSide/dual", _S, set_position_mode, write=True),
    Endpoint("GET", "/fapi/v3/positionRisk", _S, position_risk_v3),
    Endpoint("GET", "/fapi/v2/positionRisk", _S, position_risk_v2),
    Endpoint("GET", "/fapi/v2/account", _S, account_v2),
    Endpoint("GET", "/fapi/v3/account", _S, account_v3),
    Endpoint("GET", "/fapi/v1/openOrders", _S, open_orders),
    Endpoint("GET", "/fapi/v1/openOrder", _S, query_open_order),
    Endpoint("GET", "/fapi/v1/order", _S, query_order),
    Endpoint("POST", "/fapi/v1/order", _S, new_order, write=True, new_order=True),
    Endpoint("DELETE", "/fapi/v1/order", _S, cancel_order, write=True),
    Endpoint("DELETE", "/fapi/v1/allOpenOrders", _S, cancel_all, write=True),
    Endpoint("POST", "/fapi/v1/algoOrder", _S, new_algo_order, write=True, new_order=True),
    Endpoint("DELETE", "/fapi/v1/algoOrder", _S, cancel_algo_order, write=True),
    Endpoint("GET", "/fapi/v1/algoOrder", _S, query_algo_order),
    Endpoint("GET", "/fapi/v1/openAlgoOrders", _S, open_algo_orders),
    Endpoint("GET", "/fapi/v1/allAlgoOrders", _S, all_algo_orders),
    Endpoint("DELETE", "/fapi/v1/algoOpenOrders", _S, cancel_all_algo, write=True),
    Endpoint("POST", "/fapi/v1/listenKey", _U, listen_key_create),
    Endpoint("PUT", "/fapi/v1/listenKey", _U, listen_key_keepalive),
    Endpoint("DELETE", "/fapi/v1/listenKey", _U, listen_key_close),
)

ENDPOINTS: tuple[Endpoint, ...] = (
    CORE + market_data.ENDPOINTS + account_api.ENDPOINTS + trading.ENDPOINTS
)
"""Every REST endpoint the venue serves; any other ``/fapi`` path answers -5000."""
