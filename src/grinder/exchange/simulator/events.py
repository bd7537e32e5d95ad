"""User-data stream events in Binance's shapes.

Compare with the corpus: ``docs_ORDER_TRADE_UPDATE.json`` and the real
``jqcta_ws_*`` captures (decimals without trailing zeros except a LIMIT
price, which is written at the symbol's price precision), ``docs_ACCOUNT_UPDATE.json``,
``nautilus_ws_futures_algo_update_*.json`` / ``jqcta_ws_algo_stop_market_lifecycle``
(``ai`` is a string, ``aid`` a number; ``ap``/``aq``/``act`` only once
triggered), ``docs_TRADE_LITE.json`` and ``docs_listenKeyExpired.json`` (whose
``E`` is a string).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from grinder.exchange.simulator.number_text import ZERO, fixed, fixed_or_zero, plain
from grinder.exchange.simulator.orders import TRAILING, Order
from grinder.exchange.simulator.positions import Position

if TYPE_CHECKING:
    from grinder.exchange.simulator.algo import AlgoOrder


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade of one order, as the events report it."""

    qty: Decimal
    price: Decimal
    commission: Decimal
    trade_id: int
    maker: bool
    realized: Decimal


def _notional(value: Decimal) -> str:
    return "0" if value == 0 else fixed(value, 5)


def order_trade_update(
    order: Order,
    exec_type: str,
    now_ms: int,
    *,
    fill: Fill | None = None,
    bid_notional: Decimal = ZERO,
    ask_notional: Decimal = ZERO,
) -> dict[str, Any]:
    pp = order.spec.price_precision
    body: dict[str, Any] = {
        "s": order.symbol,
        "c": order.client_order_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force,
        "q": plain(order.qty),
        "p": fixed_or_zero(order.price, pp),
        "ap": plain(order.avg_price.quantize(Decimal("1e-8"))) if order.executed_qty else "0",
        "sp": fixed_or_zero(order.stop_price, pp),
        "x": exec_type,
        "X": order.status,
        "i": order.order_id,
        "l": plain(fill.qty) if fill else "0",
        "z": plain(order.executed_qty),
        "L": plain(fill.price) if fill else "0",
        "N": order.spec.quote_asset,
        "n": plain(fill.commission) if fill else "0",
        "T": now_ms,
        "t": fill.trade_id if fill else 0,
        "b": _notional(bid_notional),
        "a": _notional(ask_notional),
        "m": fill.maker if fill else False,
        "R": order.reduce_only,
        "wt": order.working_type,
        "ot": order.orig_type,
        "ps": order.position_side,
        "cp": order.close_position,
    }
    if order.orig_type == TRAILING:
        body["AP"] = plain(order.activate_price or ZERO)
        body["cr"] = plain(order.price_rate or ZERO)
    body["pP"] = order.price_protect
    body["si"] = order.algo_id
    body["ss"] = -1 if order.algo_id else 0
    if order.algo_id:
        body["st"] = "ALGO_CONDITION"
    body["rp"] = plain(fill.realized.quantize(Decimal("1e-8"))) if fill else "0"
    body["V"] = order.stp_mode
    body["pm"] = order.price_match
    body["gtd"] = order.good_till_date
    body["er"] = str(order.expiry_reason)
    return {"e": "ORDER_TRADE_UPDATE", "E": now_ms, "T": now_ms, "o": body}


def trade_lite(order: Order, fill: Fill, now_ms: int) -> dict[str, Any]:
    return {
        "e": "TRADE_LITE",
        "E": now_ms,
        "T": now_ms,
        "s": order.symbol,
        "q": plain(order.qty),
        "p": fixed_or_zero(order.price, order.spec.price_precision),
        "m": fill.maker,
        "c": order.client_order_id,
        "S": order.side,
        "L": plain(fill.price),
        "l": plain(fill.qty),
        "t": fill.trade_id,
        "i": order.order_id,
    }


def account_update(
    reason: str,
    now_ms: int,
    *,
    wallet: Decimal,
    balance_change: Decimal,
    positions: Iterable[tuple[Position, Decimal]],
    asset: str = "USDT",
) -> dict[str, Any]:
    """``positions`` pairs each changed position with its symbol's mark price."""
    return {
        "e": "ACCOUNT_UPDATE",
        "E": now_ms,
        "T": now_ms,
        "a": {
            "m": reason,
            "B": [
                {
                    "a": asset,
                    "wb": fixed(wallet, 8),
                    "cw": fixed(wallet, 8),
                    "bc": plain(balance_change.quantize(Decimal("1e-8"))),
                }
            ],
            "P": [position.event_row(mark) for position, mark in positions],
        },
    }


def algo_update(algo: AlgoOrder, now_ms: int) -> dict[str, Any]:
    pp = algo.spec.price_precision
    body: dict[str, Any] = {
        "caid": algo.client_algo_id,
        "aid": algo.algo_id,
        "at": "CONDITIONAL",
        "o": algo.type,
        "s": algo.symbol,
        "S": algo.side,
        "ps": algo.position_side,
        "f": algo.time_in_force,
        "q": plain(algo.qty),
        "X": algo.status,
        "ai": str(algo.actual_order_id) if algo.actual_order_id else "",
    }
    if algo.actual_order_id:
        body["ap"] = plain(algo.actual_avg_price) if algo.actual_qty else "0"
        body["aq"] = plain(algo.actual_qty)
        body["act"] = algo.actual_type
    body["tp"] = plain(algo.trigger_price)
    body["p"] = fixed_or_zero(algo.price, pp)
    body["V"] = algo.stp_mode
    body["wt"] = algo.working_type
    body["pm"] = algo.price_match
    body["cp"] = algo.close_position
    body["pP"] = algo.price_protect
    body["R"] = algo.reduce_only
    body["tt"] = algo.trigger_time_ms
    body["gtd"] = algo.good_till_date
    if algo.reject_reason:
        body["rm"] = algo.reject_reason
    return {"e": "ALGO_UPDATE", "T": now_ms, "E": now_ms, "o": body}


def listen_key_expired(listen_key: str, now_ms: int) -> dict[str, Any]:
    # The docs write E as a string for this one event; so do we.
    return {"e": "listenKeyExpired", "E": str(now_ms), "listenKey": listen_key}


def client_id_of(event: dict[str, Any]) -> str | None:
    """The client order id an event is about, if any (for suppression rules)."""
    kind = event.get("e")
    if kind == "ORDER_TRADE_UPDATE":
        return str(event["o"]["c"])
    if kind == "ALGO_UPDATE":
        return str(event["o"]["caid"])
    if kind == "TRADE_LITE":
        return str(event["c"])
    return None


def leverage_update(symbol: str, leverage: int, now_ms: int) -> dict[str, Any]:
    """``ACCOUNT_CONFIG_UPDATE`` after ``POST /fapi/v1/leverage``."""
    return {
        "e": "ACCOUNT_CONFIG_UPDATE",
        "E": now_ms,
        "T": now_ms,
        "ac": {"s": symbol, "l": leverage},
    }


def multi_assets_update(on: bool, now_ms: int) -> dict[str, Any]:
    """``ACCOUNT_CONFIG_UPDATE`` after ``POST /fapi/v1/multiAssetsMargin``."""
    return {"e": "ACCOUNT_CONFIG_UPDATE", "E": now_ms, "T": now_ms, "ai": {"j": on}}
