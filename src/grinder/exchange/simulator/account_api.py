"""Account endpoints beyond positions: balances, brackets, fees, history and settings.

``income`` and ``userTrades`` read the ledger (``ledger.py``), ``allOrders`` the account's
order history (the last ``history_limit`` ended orders and every open one); settings
changes go through ``settings.py`` and publish ACCOUNT_CONFIG_UPDATE as the venue does.
Liquidations are not simulated, so ``forceOrders`` is always empty.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from grinder.exchange.simulator import auth, views
from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator import events as ev
from grinder.exchange.simulator.endpoint import Endpoint
from grinder.exchange.simulator.ledger import in_window
from grinder.exchange.simulator.number_text import ZERO
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.settings import MARGIN_TYPES, brackets_view
from grinder.exchange.simulator.validation import lookup_symbol

if TYPE_CHECKING:
    from grinder.exchange.simulator.exchange import Simulator

WEEK_MS = 7 * 24 * 60 * 60 * 1000
AUTO_CLOSE_TYPES = ("LIQUIDATION", "ADL")


def _symbol(sim: Simulator, params: Params, *, required: bool = False) -> str | None:
    symbol = params.required_text("symbol") if required else params.text("symbol")
    if symbol is not None:
        lookup_symbol(sim.specs, symbol)
    return symbol


def _each(sim: Simulator, symbol: str | None) -> list[str]:
    return [symbol] if symbol is not None else list(sim.specs)


def _week(sim: Simulator, params: Params) -> tuple[int, int, bool]:
    """The window of a history query: at most 7 days; the last 7 days when no time is sent.
    The flag: a start was sent (answer the oldest rows from it, else the newest)."""
    start, end = params.window(WEEK_MS)
    if start is None and end is None:
        now = sim.server_time()
        return now - WEEK_MS, now, False
    if start is None:
        assert end is not None
        return end - WEEK_MS, end, False
    return start, end if end is not None else start + WEEK_MS, True


def _cut(rows: list[Any], limit: int, from_start: bool) -> list[Any]:
    return rows[:limit] if from_start else rows[-limit:]


# --- balances, fees, brackets -------------------------------------------------------------------


def balance(sim: Simulator, params: Params) -> Any:
    return views.balances(sim.account)


def leverage_bracket(sim: Simulator, params: Params) -> Any:
    symbol = _symbol(sim, params)
    if symbol is not None:
        return brackets_view(symbol)
    return [brackets_view(s) for s in sim.specs]


def commission_rate(sim: Simulator, params: Params) -> Any:
    symbol = _symbol(sim, params, required=True)
    return {
        "symbol": symbol,
        "makerCommissionRate": str(sim.config.maker_fee),
        "takerCommissionRate": str(sim.config.taker_fee),
        "rpiCommissionRate": "0",
    }


# --- history -------------------------------------------------------------------------------


def income(sim: Simulator, params: Params) -> Any:
    symbol = _symbol(sim, params)
    kind = params.text("incomeType")
    limit = params.limit(100, 1000)
    page = params.limit(1, 1_000_000, "page")
    start, end, from_start = _week(sim, params)
    rows = [
        i
        for i in sim.account.ledger.incomes
        if (symbol is None or i.symbol == symbol)
        and (kind is None or i.income_type == kind)
        and in_window(i.time_ms, start, end)
    ]
    skip = (page - 1) * limit
    rows = rows[skip : skip + limit] if from_start else rows[::-1][skip : skip + limit][::-1]
    return [i.view() for i in rows]


def user_trades(sim: Simulator, params: Params) -> Any:
    symbol = _symbol(sim, params, required=True)
    order_id = params.long("orderId")
    from_id = params.long("fromId")
    limit = params.limit(500, 1000)
    if from_id is not None and (params.sent("startTime") or params.sent("endTime")):
        raise E.err(E.BAD_COMBO)
    rows = [
        t
        for t in sim.account.ledger.trades
        if t.symbol == symbol and (order_id is None or t.order_id == order_id)
    ]
    if from_id is not None:
        return [t.view() for t in rows if t.trade_id >= from_id][:limit]
    start, end, from_start = _week(sim, params)
    rows = [t for t in rows if in_window(t.time_ms, start, end)]
    return [t.view() for t in _cut(rows, limit, from_start)]


def all_orders(sim: Simulator, params: Params) -> Any:
    symbol = _symbol(sim, params, required=True)
    order_id = params.long("orderId")
    limit = params.limit(500, 1000)
    start, end = params.window(WEEK_MS)
    rows = sorted(
        (o for o in sim.account.orders.values() if o.symbol == symbol),
        key=lambda o: o.order_id,
    )
    if order_id is not None:
        return [o.query_view() for o in rows if o.order_id >= order_id][:limit]
    rows = [o for o in rows if in_window(o.time_ms, start, end)]
    return [o.query_view() for o in _cut(rows, limit, start is not None)]


def force_orders(sim: Simulator, params: Params) -> Any:
    _symbol(sim, params)
    params.enum("autoCloseType", AUTO_CLOSE_TYPES)
    params.limit(50, 100)
    params.window()
    return []


def adl_quantile(sim: Simulator, params: Params) -> Any:
    account = sim.account
    rows: list[dict[str, Any]] = []
    for name in _each(sim, _symbol(sim, params)):
        amounts = {side: account.positions.get((name, side)) for side in ("BOTH", "LONG", "SHORT")}
        held = {side: pos is not None and pos.amt != 0 for side, pos in amounts.items()}
        if not any(held.values()):
            continue
        both = amounts["BOTH"].amt if held["BOTH"] and amounts["BOTH"] else ZERO
        if account.dual:
            quantile = {"LONG": int(held["LONG"]), "SHORT": int(held["SHORT"]), "HEDGE": 0}
        else:
            quantile = {"LONG": int(both > 0), "SHORT": int(both < 0), "BOTH": int(both != 0)}
        rows.append({"symbol": name, "adlQuantile": quantile})
    return rows


# --- settings ------------------------------------------------------------------------------------


def get_multi_assets(sim: Simulator, params: Params) -> Any:
    return {"multiAssetsMargin": sim.account.settings.multi_assets}


def set_multi_assets(sim: Simulator, params: Params) -> Any:
    params.required_text("multiAssetsMargin")
    on = params.boolean("multiAssetsMargin")
    sim.account.settings.set_multi_assets(on)
    sim.account.emit(ev.multi_assets_update(on, sim.now_ms()))
    return {"code": 200, "msg": "success"}


def _position_notional(sim: Simulator, symbol: str) -> Decimal:
    mark = sim.book.mark(symbol)
    return sum(
        (abs(p.amt * mark) for (s, _), p in sim.account.positions.items() if s == symbol), ZERO
    )


def set_leverage(sim: Simulator, params: Params) -> Any:
    symbol = _symbol(sim, params, required=True)
    assert symbol is not None
    leverage = params.long("leverage", required=True)
    assert leverage is not None
    allowed = sim.account.settings.set_leverage(symbol, leverage, _position_notional(sim, symbol))
    sim.account.emit(ev.leverage_update(symbol, leverage, sim.now_ms()))
    return {"leverage": leverage, "maxNotionalValue": str(allowed), "symbol": symbol}


def set_margin_type(sim: Simulator, params: Params) -> Any:
    symbol = _symbol(sim, params, required=True)
    assert symbol is not None
    margin_type = params.enum("marginType", MARGIN_TYPES, required=True)
    assert margin_type is not None
    sim.account.settings.set_margin_type(
        symbol,
        margin_type,
        orders=bool(sim.account.open_by_symbol[symbol] or sim.algos.open_by_symbol[symbol]),
        position=_position_notional(sim, symbol) != 0,
    )
    return {"code": 200, "msg": "success"}


def symbol_config(sim: Simulator, params: Params) -> Any:
    return [sim.account.settings.symbol_config(s) for s in _each(sim, _symbol(sim, params))]


def account_config(sim: Simulator, params: Params) -> Any:
    return views.account_config(sim.account)


_S = auth.SIGNED

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/fapi/v2/balance", _S, balance),
    Endpoint("GET", "/fapi/v3/balance", _S, balance),
    Endpoint("GET", "/fapi/v1/leverageBracket", _S, leverage_bracket),
    Endpoint("GET", "/fapi/v1/commissionRate", _S, commission_rate),
    Endpoint("GET", "/fapi/v1/income", _S, income),
    Endpoint("GET", "/fapi/v1/userTrades", _S, user_trades),
    Endpoint("GET", "/fapi/v1/allOrders", _S, all_orders),
    Endpoint("GET", "/fapi/v1/forceOrders", _S, force_orders),
    Endpoint("GET", "/fapi/v1/adlQuantile", _S, adl_quantile),
    Endpoint("GET", "/fapi/v1/multiAssetsMargin", _S, get_multi_assets),
    Endpoint("POST", "/fapi/v1/multiAssetsMargin", _S, set_multi_assets, write=True),
    Endpoint("POST", "/fapi/v1/leverage", _S, set_leverage, write=True),
    Endpoint("POST", "/fapi/v1/marginType", _S, set_margin_type, write=True),
    Endpoint("GET", "/fapi/v1/symbolConfig", _S, symbol_config),
    Endpoint("GET", "/fapi/v1/accountConfig", _S, account_config),
)
