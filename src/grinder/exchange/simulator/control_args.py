"""Helpers shared by the control API handlers: reading the JSON body, finding things."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from grinder.exchange.simulator.algo import AlgoOrder
from grinder.exchange.simulator.exchange import Simulator
from grinder.exchange.simulator.orders import Order
from grinder.exchange.simulator.params import Params

Body = dict[str, Any]
MAX_STEPS = 10_000


class ControlError(Exception):
    pass


def decimal_arg(body: Body, name: str, *, required: bool = False) -> Decimal | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ControlError(f"'{name}' is required")
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise ControlError(f"'{name}' is not a number: {value!r}") from exc
    if not number.is_finite() or isinstance(value, bool):
        raise ControlError(f"'{name}' is not a number: {value!r}")
    return number


def int_arg(
    body: Body,
    name: str,
    default: int | None = None,
    *,
    low: int | None = None,
    high: int | None = None,
) -> int:
    value = body.get(name, default)
    if value is None or isinstance(value, bool):
        raise ControlError(f"'{name}' is required (an integer)")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ControlError(f"'{name}' is not an integer: {value!r}") from exc
    if (low is not None and number < low) or (high is not None and number > high):
        raise ControlError(f"'{name}' must be between {low} and {high}")
    return number


def paths_arg(body: Body, name: str = "paths") -> tuple[str, ...] | None:
    """A list of request paths (each ``/fapi/...``), or None when not given or empty."""
    value = body.get(name)
    if value is None or value == []:
        return None
    if not isinstance(value, list) or not all(
        isinstance(p, str) and p.startswith("/fapi/") for p in value
    ):
        raise ControlError(f"'{name}' must be a list of /fapi/... paths, got {value!r}")
    return tuple(value)


def symbol_arg(sim: Simulator, body: Body, *, required: bool = True) -> str | None:
    symbol = body.get("symbol")
    if symbol is None:
        if required:
            raise ControlError("'symbol' is required")
        return None
    if symbol not in sim.specs:
        raise ControlError(f"unknown symbol {symbol!r}")
    return str(symbol)


def find_order(sim: Simulator, body: Body) -> Order:
    symbol = symbol_arg(sim, body, required=False)
    order_id = body.get("orderId")
    client_id = body.get("clientOrderId")
    if order_id is None and client_id is None:
        raise ControlError("'orderId' or 'clientOrderId' is required")
    symbols = [symbol] if symbol else list(sim.specs)
    for name in symbols:
        order = sim.account.find(name, None if order_id is None else int(order_id), client_id)
        if order is not None:
            return order
    raise ControlError("no such order")


def find_algo(sim: Simulator, body: Body) -> AlgoOrder:
    algo_id = body.get("algoId")
    client_id = body.get("clientAlgoId")
    if algo_id is None and client_id is None:
        raise ControlError("'algoId' or 'clientAlgoId' is required")
    algo = sim.algos.find(None if algo_id is None else int(algo_id), client_id)
    if algo is None:
        raise ControlError("no such algo order")
    return algo


def params_from(body: Body, skip: tuple[str, ...] = ()) -> Params:
    pairs: list[tuple[str, str]] = []
    for key, value in body.items():
        if key in skip or value is None or isinstance(value, (dict, list)):
            continue
        pairs.append((key, str(value).lower() if isinstance(value, bool) else str(value)))
    return Params(pairs)
