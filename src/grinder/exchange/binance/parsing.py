"""Pure parsers from Binance USDⓈ-M wire JSON to the core's domain types.

Everything here takes already-decoded JSON (``dict`` / ``list``; the user-data
parser also takes the raw text) and returns :mod:`grinder.reconcile.types`
objects, or raises :class:`WireFormatError`. Nothing does I/O.

Wire rules these parsers rely on (see ``exchange-corpus/binance-usdm/SOURCES.md``):

* Prices and quantities arrive as decimal strings and become ``Decimal``; a
  JSON float is refused (it may already have lost digits), an integer is
  accepted. ``NaN``/``Infinity``, exponents, blanks and strings longer than
  64 characters are refused.
* Ids and millisecond times arrive as JSON integers or as digit strings (the
  docs' ``listenKeyExpired`` and some captures quote them); both are accepted
  and kept as ``int`` (order ids exceed 2**53). They must fit in a signed
  64-bit integer and be non-negative.
* Unknown keys are ignored; a missing optional key and ``null`` mean the same.
* Key order never matters.

Errors: every malformed input raises :class:`WireFormatError` (a
``ValueError``) with a one-line message naming the message kind and the field,
e.g. ``ORDER_TRADE_UPDATE: field o.q: expected a decimal string, got 'abc'``.
No other exception type escapes, and no partly-built object is returned.

Status mappings
---------------
Regular orders use Binance's own statuses (``NEW``, ``PARTIALLY_FILLED``,
``FILLED``, ``CANCELED``, ``EXPIRED``, ``EXPIRED_IN_MATCH``, ``REJECTED``). Older
liquidation payloads carry ``NEW_INSURANCE`` / ``NEW_ADL``, and ``PENDING_CANCEL``
exists in Binance's enum: these are derived from the fills (nothing filled →
``NEW``, part → ``PARTIALLY_FILLED``, all → ``FILLED``).

Algo (conditional) orders have their own lifecycle; it maps onto
:class:`OrderStatus` so that "open" means "the algo order's outcome is not yet
known" (the observed store never lets a terminal order become open again):

==============  =====================================================
algo status     ``OrderStatus``
==============  =====================================================
NEW             NEW (waiting for its trigger)
TRIGGERING      NEW (condition met, being sent to the matching engine)
TRIGGERED       NEW (a regular child order now exists with the same
                client id; the algo order ends with FINISHED)
(any of these)  PARTIALLY_FILLED instead of NEW when an executed
                quantity above zero is reported
FINISHED        FILLED when the child order executed its whole quantity
                (or the executed quantity is not reported, or the order
                has no quantity, i.e. closePosition); otherwise CANCELED
                (the child ended in the matching engine short of a full
                fill: cancelled or expired; ``executed_qty`` keeps any
                partial fill)
CANCELED        CANCELED
EXPIRED         EXPIRED (cancelled by the system)
REJECTED        REJECTED
==============  =====================================================

For algo orders ``ObservedOrder.order_id`` holds the ``algoId`` (the id the algo
endpoints use) and ``client_order_id`` the ``clientAlgoId``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, NoReturn, TypeAlias

from grinder.reconcile.types import (
    ZERO,
    ObservedOrder,
    ObservedPosition,
    OrderStatus,
    PositionSide,
    Side,
)

__all__ = [
    "AccountUpdate",
    "AlgoUpdate",
    "ListenKeyExpired",
    "OrderUpdate",
    "OtherEvent",
    "SymbolFilters",
    "UserEvent",
    "WireFormatError",
    "decode_json",
    "parse_algo_order",
    "parse_algo_orders",
    "parse_error",
    "parse_exchange_info",
    "parse_order",
    "parse_orders",
    "parse_position",
    "parse_positions",
    "parse_user_event",
]


# --- the one exception ---------------------------------------------------------------------


class WireFormatError(ValueError):
    """A wire message that cannot be parsed: missing field, wrong type, bad number, bad JSON.

    ``kind`` names the message (``ORDER_TRADE_UPDATE``, ``order``, ``exchangeInfo``…),
    ``field`` the dotted path of the offending field inside it (``o.q``,
    ``[3].origQty``, ``a.P[0].pa``), or ``None`` when the message as a whole is
    wrong; ``problem`` says what is wrong. ``str()`` is always a single line.
    """

    def __init__(self, kind: str, field: str | None, problem: str) -> None:
        self.kind = kind
        self.field = field
        self.problem = problem
        text = f"{kind}: field {field}: {problem}" if field else f"{kind}: {problem}"
        super().__init__(text.replace("\r", "\\r").replace("\n", "\\n"))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.kind, self.field, self.problem))

    def with_prefix(self, prefix: str) -> WireFormatError:
        """The same error with ``prefix`` put in front of the field path (``[3].`` …)."""
        path = prefix + self.field if self.field else prefix.rstrip(".")
        return WireFormatError(self.kind, path, self.problem)


def _describe(value: object) -> str:
    """A short, single-line description of a JSON value for error messages."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        if len(value) > 40:
            return f"{value[:40]!r}... ({len(value)} characters)"
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 128:
            return f"an integer of {value.bit_length()} bits"
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _field_error(
    obj: dict[str, Any], key: str, kind: str, parent: str, expected: str
) -> WireFormatError:
    if key not in obj:
        return WireFormatError(kind, parent + key, "missing")
    return WireFormatError(kind, parent + key, f"expected {expected}, got {_describe(obj[key])}")


def _not_object(kind: str, path: str | None, value: object) -> WireFormatError:
    if value is None and path is not None:
        return WireFormatError(kind, path, "missing")
    return WireFormatError(kind, path, f"expected a JSON object, got {_describe(value)}")


# --- JSON text -------------------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_json(text: str | bytes | bytearray, kind: str = "message") -> Any:
    """Decode JSON text (UTF-8 bytes or str); any failure is a ``WireFormatError``.

    ``NaN``/``Infinity`` literals, truncated text, bad UTF-8, absurdly deep
    nesting and integers beyond Python's digit limit are all refused.
    """
    try:
        if not isinstance(text, str):
            text = bytes(text).decode("utf-8")
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        detail = str(exc) or type(exc).__name__
        if len(detail) > 120:
            detail = detail[:120] + "..."
        raise WireFormatError(kind, None, f"invalid JSON: {detail}") from None


# --- field readers ---------------------------------------------------------------------------
#
# Each takes (object, key, message kind, path of the object) and either returns a
# value of the right type or raises WireFormatError naming ``parent + key``. The
# path is only concatenated on the error path, which keeps the hot path cheap.

_DECIMAL_MATCH = re.compile(r"-?[0-9]+(?:\.[0-9]+)?").fullmatch
_MAX_DECIMAL_CHARS = 64
_INT_DECIMAL_LIMIT = 10**30
_INT64_LIMIT = 2**63
_MAX_INT_DIGITS = 19

# Decoded decimal strings, shared (Decimal is immutable). Streams repeat the same
# texts ("0", "0.000", the current price) constantly; the cache is dropped whole
# when full so it follows moving prices without growing.
_DECIMAL_CACHE: dict[str, Decimal] = {}
_DECIMAL_CACHE_MAX = 4096


def _to_decimal(value: object) -> Decimal | None:
    if type(value) is str:
        cached = _DECIMAL_CACHE.get(value)
        if cached is not None:
            return cached
        if len(value) <= _MAX_DECIMAL_CHARS and _DECIMAL_MATCH(value) is not None:
            result = Decimal(value)
            if len(_DECIMAL_CACHE) >= _DECIMAL_CACHE_MAX:
                _DECIMAL_CACHE.clear()
            _DECIMAL_CACHE[value] = result
            return result
        return None
    if type(value) is int:
        if -_INT_DECIMAL_LIMIT < value < _INT_DECIMAL_LIMIT:
            return Decimal(value)
        return None
    if type(value) is Decimal and value.is_finite() and -64 <= value.adjusted() <= 64:
        # Only when the caller decoded with parse_float=Decimal.
        return value
    return None


def _req_decimal(obj: dict[str, Any], key: str, kind: str, parent: str) -> Decimal:
    result = _to_decimal(obj.get(key))
    if result is None:
        raise _field_error(obj, key, kind, parent, "a decimal string")
    return result


def _opt_decimal(obj: dict[str, Any], key: str, kind: str, parent: str) -> Decimal | None:
    value = obj.get(key)
    if value is None:
        return None
    result = _to_decimal(value)
    if result is None:
        raise _field_error(obj, key, kind, parent, "a decimal string")
    return result


def _decimal_or_zero(obj: dict[str, Any], key: str, kind: str, parent: str) -> Decimal:
    result = _opt_decimal(obj, key, kind, parent)
    return ZERO if result is None else result


def _price(obj: dict[str, Any], key: str, kind: str, parent: str) -> Decimal | None:
    """A price; absent, null and zero ("no limit price", "no mark price") are ``None``."""
    result = _opt_decimal(obj, key, kind, parent)
    if result is None or not result:
        return None
    return result


def _to_int(value: object) -> int | None:
    if type(value) is int:
        return value if 0 <= value < _INT64_LIMIT else None
    if (
        type(value) is str
        and 0 < len(value) <= _MAX_INT_DIGITS
        and value.isascii()
        and value.isdigit()
    ):
        number = int(value)
        return number if number < _INT64_LIMIT else None
    return None


_INT_EXPECTED = "a non-negative 64-bit integer"


def _req_int(obj: dict[str, Any], key: str, kind: str, parent: str) -> int:
    result = _to_int(obj.get(key))
    if result is None:
        raise _field_error(obj, key, kind, parent, _INT_EXPECTED)
    return result


def _opt_int(obj: dict[str, Any], key: str, kind: str, parent: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    result = _to_int(value)
    if result is None:
        raise _field_error(obj, key, kind, parent, _INT_EXPECTED)
    return result


def _req_str(obj: dict[str, Any], key: str, kind: str, parent: str) -> str:
    value = obj.get(key)
    if type(value) is str and value:
        return value
    raise _field_error(obj, key, kind, parent, "a non-empty string")


def _opt_str(obj: dict[str, Any], key: str, kind: str, parent: str) -> str | None:
    value = obj.get(key)
    if value is None or type(value) is str:
        return value
    raise _field_error(obj, key, kind, parent, "a string")


_BOOLS = {"true": True, "false": False}


def _bool(obj: dict[str, Any], key: str, kind: str, parent: str) -> bool:
    """A flag; absent or null is ``False``; the strings "true"/"false" are accepted."""
    value = obj.get(key)
    if value is None:
        return False
    if value is True or value is False:
        return value
    if type(value) is str:
        flag = _BOOLS.get(value)
        if flag is not None:
            return flag
    raise _field_error(obj, key, kind, parent, "a boolean")


_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}
_POSITION_SIDES = {
    "BOTH": PositionSide.BOTH,
    "LONG": PositionSide.LONG,
    "SHORT": PositionSide.SHORT,
}


def _side(obj: dict[str, Any], key: str, kind: str, parent: str) -> Side:
    value = obj.get(key)
    if type(value) is str:
        side = _SIDES.get(value)
        if side is not None:
            return side
    raise _field_error(obj, key, kind, parent, "BUY or SELL")


def _position_side(obj: dict[str, Any], key: str, kind: str, parent: str) -> PositionSide:
    """``positionSide``; absent or null is ``BOTH`` (one-way mode)."""
    value = obj.get(key)
    if value is None:
        return PositionSide.BOTH
    if type(value) is str:
        side = _POSITION_SIDES.get(value)
        if side is not None:
            return side
    raise _field_error(obj, key, kind, parent, "BOTH, LONG or SHORT")


def _check_position_sign(qty: Decimal, position_side: PositionSide, kind: str, path: str) -> None:
    """Hedge-mode amounts are signed too (SHORT ≤ 0); a contradiction is malformed."""
    if (position_side is PositionSide.LONG and qty < 0) or (
        position_side is PositionSide.SHORT and qty > 0
    ):
        raise WireFormatError(
            kind,
            path,
            f"amount {qty} contradicts positionSide {position_side.value} "
            "(LONG amounts are >= 0, SHORT amounts <= 0)",
        )


_ORDER_STATUSES: dict[str, OrderStatus] = {status.value: status for status in OrderStatus}
# Statuses outside OrderStatus whose meaning is derived from the fills.
_FILL_DERIVED_STATUSES = frozenset({"NEW_INSURANCE", "NEW_ADL", "PENDING_CANCEL"})


def _status_from_fills(qty: Decimal, executed: Decimal) -> OrderStatus:
    if executed <= 0:
        return OrderStatus.NEW
    if executed >= qty:
        return OrderStatus.FILLED
    return OrderStatus.PARTIALLY_FILLED


def _order_status(
    obj: dict[str, Any],
    key: str,
    kind: str,
    parent: str,
    qty: Decimal,
    executed: Decimal,
) -> OrderStatus:
    value = obj.get(key)
    if type(value) is str:
        status = _ORDER_STATUSES.get(value)
        if status is not None:
            return status
        if value in _FILL_DERIVED_STATUSES:
            return _status_from_fills(qty, executed)
    raise _field_error(obj, key, kind, parent, "an order status")


_ALGO_OPEN = frozenset({"NEW", "TRIGGERING", "TRIGGERED"})
_ALGO_ENDED = {
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}


def algo_status_to_order_status(
    algo_status: str, qty: Decimal, executed: Decimal | None
) -> OrderStatus | None:
    """Map an algo order status onto ``OrderStatus`` (table in the module doc); ``None``
    for a value that is not an algo status."""
    if algo_status in _ALGO_OPEN:
        if executed is not None and executed > 0:
            return OrderStatus.PARTIALLY_FILLED
        return OrderStatus.NEW
    if algo_status == "FINISHED":
        if executed is None or (executed > 0 and (qty <= 0 or executed >= qty)):
            return OrderStatus.FILLED
        return OrderStatus.CANCELED
    return _ALGO_ENDED.get(algo_status)


def _algo_status(
    obj: dict[str, Any],
    key: str,
    kind: str,
    parent: str,
    qty: Decimal,
    executed: Decimal | None,
) -> tuple[str, OrderStatus]:
    value = obj.get(key)
    if type(value) is str:
        status = algo_status_to_order_status(value, qty, executed)
        if status is not None:
            return value, status
    raise _field_error(obj, key, kind, parent, "an algo order status")


def _expect_object(value: object, kind: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise _not_object(kind, None, value)


def _expect_list(value: object, kind: str) -> list[Any]:
    if isinstance(value, list):
        return value
    raise WireFormatError(kind, None, f"expected a JSON array, got {_describe(value)}")


# --- REST rows -------------------------------------------------------------------------------


def parse_order(row: Any, *, seen_ts_ms: int, kind: str = "order") -> ObservedOrder:
    """One regular order from REST: openOrders / allOrders item, order query,
    new-order, cancel and modify responses.

    ``time`` → ``created_ts_ms`` (0 when absent, as in POST/DELETE replies),
    ``updateTime`` → ``update_ts_ms``; ``order_type`` is ``origType`` (the type
    the order was placed as), else ``type``; ``price`` "0" (MARKET, stop-market)
    is ``None``; ``executedQty`` absent is 0; ``positionSide`` absent is BOTH.
    """
    if not isinstance(row, dict):
        raise _not_object(kind, None, row)
    qty = _req_decimal(row, "origQty", kind, "")
    executed = _decimal_or_zero(row, "executedQty", kind, "")
    order_type = _opt_str(row, "origType", kind, "") or _req_str(row, "type", kind, "")
    return ObservedOrder(
        client_order_id=_req_str(row, "clientOrderId", kind, ""),
        symbol=_req_str(row, "symbol", kind, ""),
        side=_side(row, "side", kind, ""),
        status=_order_status(row, "status", kind, "", qty, executed),
        qty=qty,
        executed_qty=executed,
        price=_price(row, "price", kind, ""),
        order_type=order_type,
        position_side=_position_side(row, "positionSide", kind, ""),
        order_id=_req_int(row, "orderId", kind, ""),
        created_ts_ms=_opt_int(row, "time", kind, "") or 0,
        update_ts_ms=_opt_int(row, "updateTime", kind, "") or 0,
        seen_ts_ms=seen_ts_ms,
        reduce_only=_bool(row, "reduceOnly", kind, ""),
        is_algo=False,
    )


def parse_algo_order(row: Any, *, seen_ts_ms: int, kind: str = "algo order") -> ObservedOrder:
    """One algo (conditional) order from REST: openAlgoOrders item, algo order
    query, new-algo-order response. ``is_algo`` is set; the status mapping is in
    the module doc.

    ``clientAlgoId`` → ``client_order_id``, ``algoId`` → ``order_id``,
    ``orderType`` (or ``type``) → ``order_type``, ``quantity`` (absent for
    closePosition orders: 0) → ``qty``, ``executedQty`` or ``actualQty`` when
    reported → ``executed_qty``, ``createTime`` / ``updateTime`` → times.
    """
    if not isinstance(row, dict):
        raise _not_object(kind, None, row)
    qty = _decimal_or_zero(row, "quantity", kind, "")
    executed = _opt_decimal(row, "executedQty", kind, "")
    if executed is None:
        executed = _opt_decimal(row, "actualQty", kind, "")
    _, status = _algo_status(row, "algoStatus", kind, "", qty, executed)
    order_type = _opt_str(row, "orderType", kind, "") or _req_str(row, "type", kind, "")
    return ObservedOrder(
        client_order_id=_req_str(row, "clientAlgoId", kind, ""),
        symbol=_req_str(row, "symbol", kind, ""),
        side=_side(row, "side", kind, ""),
        status=status,
        qty=qty,
        executed_qty=ZERO if executed is None else executed,
        price=_price(row, "price", kind, ""),
        order_type=order_type,
        position_side=_position_side(row, "positionSide", kind, ""),
        order_id=_req_int(row, "algoId", kind, ""),
        created_ts_ms=_opt_int(row, "createTime", kind, "") or 0,
        update_ts_ms=_opt_int(row, "updateTime", kind, "") or 0,
        seen_ts_ms=seen_ts_ms,
        reduce_only=_bool(row, "reduceOnly", kind, ""),
        is_algo=True,
    )


def parse_position(row: Any, *, seen_ts_ms: int, kind: str = "position") -> ObservedPosition:
    """One row of ``GET /fapi/v2/positionRisk`` or ``/fapi/v3/positionRisk``.

    ``positionAmt`` is signed (short < 0, in hedge mode too, and checked against
    ``positionSide``); ``markPrice`` "0" or absent is ``None`` (no price);
    ``entryPrice`` absent is 0; ``updateTime`` absent is 0.
    """
    if not isinstance(row, dict):
        raise _not_object(kind, None, row)
    position_side = _position_side(row, "positionSide", kind, "")
    qty = _req_decimal(row, "positionAmt", kind, "")
    _check_position_sign(qty, position_side, kind, "positionAmt")
    return ObservedPosition(
        symbol=_req_str(row, "symbol", kind, ""),
        qty=qty,
        position_side=position_side,
        entry_price=_decimal_or_zero(row, "entryPrice", kind, ""),
        mark_price=_price(row, "markPrice", kind, ""),
        update_ts_ms=_opt_int(row, "updateTime", kind, "") or 0,
        seen_ts_ms=seen_ts_ms,
    )


def parse_orders(doc: Any, *, seen_ts_ms: int, kind: str = "openOrders") -> list[ObservedOrder]:
    """A JSON array of regular orders (``GET /fapi/v1/openOrders``, allOrders)."""
    rows = _expect_list(doc, kind)
    out: list[ObservedOrder] = []
    for index, row in enumerate(rows):
        try:
            out.append(parse_order(row, seen_ts_ms=seen_ts_ms, kind=kind))
        except WireFormatError as exc:
            raise exc.with_prefix(f"[{index}].") from None
    return out


def parse_algo_orders(
    doc: Any, *, seen_ts_ms: int, kind: str = "openAlgoOrders"
) -> list[ObservedOrder]:
    """A JSON array of algo orders (``GET /fapi/v1/openAlgoOrders``)."""
    rows = _expect_list(doc, kind)
    out: list[ObservedOrder] = []
    for index, row in enumerate(rows):
        try:
            out.append(parse_algo_order(row, seen_ts_ms=seen_ts_ms, kind=kind))
        except WireFormatError as exc:
            raise exc.with_prefix(f"[{index}].") from None
    return out


def parse_positions(
    doc: Any, *, seen_ts_ms: int, kind: str = "positionRisk"
) -> list[ObservedPosition]:
    """A JSON array of positionRisk rows (v2 or v3)."""
    rows = _expect_list(doc, kind)
    out: list[ObservedPosition] = []
    for index, row in enumerate(rows):
        try:
            out.append(parse_position(row, seen_ts_ms=seen_ts_ms, kind=kind))
        except WireFormatError as exc:
            raise exc.with_prefix(f"[{index}].") from None
    return out


# --- exchangeInfo ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SymbolFilters:
    """The trading rules of one symbol from ``GET /fapi/v1/exchangeInfo``.

    ``tick_size`` (PRICE_FILTER), ``step_size`` / ``min_qty`` / ``max_qty``
    (LOT_SIZE, limit orders), ``market_*`` (MARKET_LOT_SIZE, market orders such
    as a flatten) and ``min_notional`` (MIN_NOTIONAL ``notional``; reduce-only
    orders are exempt on Binance). Filters the symbol does not carry are ``None``.
    """

    symbol: str
    status: str | None
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    market_step_size: Decimal | None = None
    market_min_qty: Decimal | None = None
    market_max_qty: Decimal | None = None
    min_notional: Decimal | None = None

    @property
    def market_step(self) -> Decimal:
        """The quantity step a MARKET order must respect."""
        return self.market_step_size if self.market_step_size else self.step_size


def parse_exchange_info(doc: Any, *, kind: str = "exchangeInfo") -> dict[str, SymbolFilters]:
    """Symbol → :class:`SymbolFilters` for every symbol of an exchangeInfo body.

    PRICE_FILTER (``tickSize``) and LOT_SIZE (``stepSize``, ``minQty``) are
    required for every symbol; MARKET_LOT_SIZE and MIN_NOTIONAL are optional;
    other filter types are ignored.
    """
    body = _expect_object(doc, kind)
    symbols = body.get("symbols")
    if not isinstance(symbols, list):
        raise _field_error(body, "symbols", kind, "", "a JSON array")
    out: dict[str, SymbolFilters] = {}
    for index, entry in enumerate(symbols):
        prefix = f"symbols[{index}]."
        if not isinstance(entry, dict):
            raise _not_object(kind, prefix.rstrip("."), entry)
        name = _req_str(entry, "symbol", kind, prefix)
        filters = entry.get("filters")
        if not isinstance(filters, list):
            raise _field_error(entry, "filters", kind, prefix, "a JSON array")
        by_type: dict[str, tuple[str, dict[str, Any]]] = {}
        for position, flt in enumerate(filters):
            path = f"{prefix}filters[{position}]."
            if not isinstance(flt, dict):
                raise _not_object(kind, path.rstrip("."), flt)
            by_type[_req_str(flt, "filterType", kind, path)] = (path, flt)
        price_path, price_filter = _required_filter(by_type, "PRICE_FILTER", kind, prefix)
        lot_path, lot = _required_filter(by_type, "LOT_SIZE", kind, prefix)
        market_path, market = by_type.get("MARKET_LOT_SIZE", ("", None))
        notional_path, notional = by_type.get("MIN_NOTIONAL", ("", None))
        out[name] = SymbolFilters(
            symbol=name,
            status=_opt_str(entry, "status", kind, prefix),
            tick_size=_req_decimal(price_filter, "tickSize", kind, price_path),
            step_size=_req_decimal(lot, "stepSize", kind, lot_path),
            min_qty=_req_decimal(lot, "minQty", kind, lot_path),
            max_qty=_opt_decimal(lot, "maxQty", kind, lot_path),
            min_price=_opt_decimal(price_filter, "minPrice", kind, price_path),
            max_price=_opt_decimal(price_filter, "maxPrice", kind, price_path),
            market_step_size=(
                None if market is None else _opt_decimal(market, "stepSize", kind, market_path)
            ),
            market_min_qty=(
                None if market is None else _opt_decimal(market, "minQty", kind, market_path)
            ),
            market_max_qty=(
                None if market is None else _opt_decimal(market, "maxQty", kind, market_path)
            ),
            min_notional=(
                None
                if notional is None
                else _opt_decimal(notional, "notional", kind, notional_path)
            ),
        )
    return out


def _required_filter(
    by_type: dict[str, tuple[str, dict[str, Any]]], name: str, kind: str, prefix: str
) -> tuple[str, dict[str, Any]]:
    found = by_type.get(name)
    if found is None:
        raise WireFormatError(kind, prefix + "filters", f"no {name} filter")
    return found


# --- error bodies ----------------------------------------------------------------------------

_ERROR_CODE_MATCH = re.compile(r"-?[0-9]{1,9}").fullmatch


def parse_error(body: Any, *, kind: str = "error body") -> tuple[int, str]:
    """``{"code": -2011, "msg": "Unknown order sent."}`` → ``(-2011, "Unknown order sent.")``.

    Accepts the decoded object or its JSON text; ``code`` may be an integer or
    an integer string (algo replies quote it); ``msg`` absent is "".
    """
    if isinstance(body, str | bytes | bytearray):
        body = decode_json(body, kind)
    obj = _expect_object(body, kind)
    raw = obj.get("code")
    if type(raw) is int and -(10**9) < raw < 10**9:
        code = raw
    elif type(raw) is str and _ERROR_CODE_MATCH(raw) is not None:
        code = int(raw)
    else:
        raise _field_error(obj, "code", kind, "", "an integer error code")
    msg = _opt_str(obj, "msg", kind, "")
    return code, msg or ""


# --- user-data stream events -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """``ORDER_TRADE_UPDATE``: the order's new state and what happened to it.

    ``execution_type`` is ``o.x`` as sent (NEW, TRADE, CANCELED, EXPIRED,
    CALCULATED for liquidation/ADL, AMENDMENT, …). ``order.update_ts_ms`` is the
    order's trade time ``o.T``; ``order.created_ts_ms`` is set for ``x`` NEW
    only. ``parent_algo_id`` is ``o.si`` when non-zero (a child order placed
    by a triggered algo order, ``st`` "ALGO_CONDITION").
    """

    event_type: ClassVar[str] = "ORDER_TRADE_UPDATE"

    order: ObservedOrder
    execution_type: str
    event_ts_ms: int
    trade_id: int = 0
    last_filled_qty: Decimal = ZERO
    parent_algo_id: int | None = None


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """``ACCOUNT_UPDATE``: the positions that changed, and why (``a.m``: ORDER,
    FUNDING_FEE, ADJUSTMENT, …). Binance sends only the changed positions (none for
    a cross-margin funding fee); the positions carry no mark price and
    ``update_ts_ms`` = the transaction time ``T``. Balances are not parsed."""

    event_type: ClassVar[str] = "ACCOUNT_UPDATE"

    reason: str
    positions: tuple[ObservedPosition, ...]
    event_ts_ms: int
    transaction_ts_ms: int


@dataclass(frozen=True, slots=True)
class AlgoUpdate:
    """``ALGO_UPDATE``: an algo (conditional) order's new state, ``order.is_algo`` set.

    ``algo_status`` is ``o.X`` as sent; ``order.status`` is its mapping (module
    doc). ``actual_order_id`` is the triggered child order's id (``o.ai``) once
    there is one; ``reject_reason`` is ``o.rm`` when sent.
    """

    event_type: ClassVar[str] = "ALGO_UPDATE"

    order: ObservedOrder
    algo_status: str
    algo_id: int
    event_ts_ms: int
    actual_order_id: int | None = None
    reject_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ListenKeyExpired:
    """``listenKeyExpired``: no more events will arrive on this key."""

    event_type: ClassVar[str] = "listenKeyExpired"

    event_ts_ms: int
    listen_key: str | None = None


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """Any other event type (TRADE_LITE, MARGIN_CALL, ACCOUNT_CONFIG_UPDATE,
    CONDITIONAL_ORDER_TRIGGER_REJECT, STRATEGY_UPDATE, future ones…): tolerated,
    not interpreted. ``payload`` is the event object as received."""

    event_type: str
    event_ts_ms: int | None
    payload: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)


UserEvent: TypeAlias = OrderUpdate | AccountUpdate | AlgoUpdate | ListenKeyExpired | OtherEvent

_USER_EVENT = "user event"


def parse_user_event(msg: Any, *, seen_ts_ms: int) -> UserEvent:
    """One user-data stream message → a typed event.

    ``msg`` is the decoded JSON object or its raw text/bytes. Both a bare event
    and the combined-stream wrapper ``{"stream": …, "data": {…}}`` are accepted.
    Unknown event types become :class:`OtherEvent`.
    """
    if not isinstance(msg, dict):
        if isinstance(msg, str | bytes | bytearray):
            msg = decode_json(msg, _USER_EVENT)
        if not isinstance(msg, dict):
            raise _not_object(_USER_EVENT, None, msg)
    event: dict[str, Any] = msg
    event_type = event.get("e")
    if event_type is None and ("data" in event or "stream" in event):
        data = event.get("data")
        if not isinstance(data, dict):
            raise _not_object(_USER_EVENT, "data", data)
        event = data
        event_type = event.get("e")
    if type(event_type) is not str or not event_type:
        raise _field_error(event, "e", _USER_EVENT, "", "an event type string")
    parser = _EVENT_PARSERS.get(event_type)
    if parser is None:
        return OtherEvent(
            event_type=event_type,
            event_ts_ms=_opt_int(event, "E", event_type[:64], ""),
            payload=event,
        )
    return parser(event, seen_ts_ms)


def _parse_order_trade_update(event: dict[str, Any], seen_ts_ms: int) -> OrderUpdate:
    kind = "ORDER_TRADE_UPDATE"
    o = event.get("o")
    if type(o) is not dict:
        raise _not_object(kind, "o", o)
    event_ts = _req_int(event, "E", kind, "")
    qty = _req_decimal(o, "q", kind, "o.")
    executed = _decimal_or_zero(o, "z", kind, "o.")
    status = _order_status(o, "X", kind, "o.", qty, executed)
    execution_type = _req_str(o, "x", kind, "o.")
    trade_ts = _opt_int(o, "T", kind, "o.")
    if trade_ts is None:
        trade_ts = _opt_int(event, "T", kind, "") or event_ts
    order_type = _opt_str(o, "ot", kind, "o.") or _req_str(o, "o", kind, "o.")
    order = ObservedOrder(
        client_order_id=_req_str(o, "c", kind, "o."),
        symbol=_req_str(o, "s", kind, "o."),
        side=_side(o, "S", kind, "o."),
        status=status,
        qty=qty,
        executed_qty=executed,
        price=_price(o, "p", kind, "o."),
        order_type=order_type,
        position_side=_position_side(o, "ps", kind, "o."),
        order_id=_req_int(o, "i", kind, "o."),
        created_ts_ms=trade_ts if execution_type == "NEW" else 0,
        update_ts_ms=trade_ts,
        seen_ts_ms=seen_ts_ms,
        reduce_only=_bool(o, "R", kind, "o."),
        is_algo=False,
    )
    parent = o.get("si")
    return OrderUpdate(
        order=order,
        execution_type=execution_type,
        event_ts_ms=event_ts,
        trade_id=_opt_int(o, "t", kind, "o.") or 0,
        last_filled_qty=_decimal_or_zero(o, "l", kind, "o."),
        parent_algo_id=None if parent is None or parent == 0 else _req_int(o, "si", kind, "o."),
    )


def _parse_account_update(event: dict[str, Any], seen_ts_ms: int) -> AccountUpdate:
    kind = "ACCOUNT_UPDATE"
    a = event.get("a")
    if type(a) is not dict:
        raise _not_object(kind, "a", a)
    event_ts = _req_int(event, "E", kind, "")
    tx_ts = _opt_int(event, "T", kind, "") or event_ts
    reason = _req_str(a, "m", kind, "a.")
    rows = a.get("P")
    positions: list[ObservedPosition] = []
    if rows is not None:
        if type(rows) is not list:
            raise _field_error(a, "P", kind, "a.", "a JSON array")
        for index, row in enumerate(rows):
            path = f"a.P[{index}]."
            if type(row) is not dict:
                raise _not_object(kind, path.rstrip("."), row)
            position_side = _position_side(row, "ps", kind, path)
            qty = _req_decimal(row, "pa", kind, path)
            _check_position_sign(qty, position_side, kind, path + "pa")
            positions.append(
                ObservedPosition(
                    symbol=_req_str(row, "s", kind, path),
                    qty=qty,
                    position_side=position_side,
                    entry_price=_decimal_or_zero(row, "ep", kind, path),
                    mark_price=None,
                    update_ts_ms=tx_ts,
                    seen_ts_ms=seen_ts_ms,
                )
            )
    return AccountUpdate(
        reason=reason,
        positions=tuple(positions),
        event_ts_ms=event_ts,
        transaction_ts_ms=tx_ts,
    )


def _parse_algo_update(event: dict[str, Any], seen_ts_ms: int) -> AlgoUpdate:
    kind = "ALGO_UPDATE"
    o = event.get("o")
    if type(o) is not dict:
        raise _not_object(kind, "o", o)
    event_ts = _req_int(event, "E", kind, "")
    tx_ts = _opt_int(event, "T", kind, "") or event_ts
    qty = _decimal_or_zero(o, "q", kind, "o.")
    executed = _opt_decimal(o, "aq", kind, "o.")
    algo_status, status = _algo_status(o, "X", kind, "o.", qty, executed)
    algo_id = _req_int(o, "aid", kind, "o.")
    actual = o.get("ai")
    order = ObservedOrder(
        client_order_id=_req_str(o, "caid", kind, "o."),
        symbol=_req_str(o, "s", kind, "o."),
        side=_side(o, "S", kind, "o."),
        status=status,
        qty=qty,
        executed_qty=ZERO if executed is None else executed,
        price=_price(o, "p", kind, "o."),
        order_type=_req_str(o, "o", kind, "o."),
        position_side=_position_side(o, "ps", kind, "o."),
        order_id=algo_id,
        created_ts_ms=tx_ts if algo_status == "NEW" else 0,
        update_ts_ms=tx_ts,
        seen_ts_ms=seen_ts_ms,
        reduce_only=_bool(o, "R", kind, "o."),
        is_algo=True,
    )
    return AlgoUpdate(
        order=order,
        algo_status=algo_status,
        algo_id=algo_id,
        event_ts_ms=event_ts,
        actual_order_id=None if actual is None or actual == "" else _req_int(o, "ai", kind, "o."),
        reject_reason=_opt_str(o, "rm", kind, "o.") or None,
    )


def _parse_listen_key_expired(event: dict[str, Any], seen_ts_ms: int) -> ListenKeyExpired:
    kind = "listenKeyExpired"
    return ListenKeyExpired(
        event_ts_ms=_req_int(event, "E", kind, ""),
        listen_key=_opt_str(event, "listenKey", kind, "") or None,
    )


_EVENT_PARSERS: dict[str, Callable[[dict[str, Any], int], UserEvent]] = {
    "ORDER_TRADE_UPDATE": _parse_order_trade_update,
    "ACCOUNT_UPDATE": _parse_account_update,
    "ALGO_UPDATE": _parse_algo_update,
    "listenKeyExpired": _parse_listen_key_expired,
}
