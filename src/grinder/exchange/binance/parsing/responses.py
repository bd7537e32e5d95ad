"""Parsers of Binance USDⓈ-M REST bodies: orders, algo orders, positions,
exchangeInfo and error bodies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from grinder.exchange.binance.parsing.statuses import _algo_status, _order_status
from grinder.exchange.binance.parsing.wire import (
    WireFormatError,
    _bool,
    _check_position_sign,
    _decimal_or_zero,
    _expect_list,
    _expect_object,
    _field_error,
    _not_object,
    _opt_decimal,
    _opt_int,
    _opt_str,
    _position_side,
    _price,
    _req_decimal,
    _req_int,
    _req_str,
    _side,
    decode_json,
)
from grinder.reconcile.types import ZERO, ObservedOrder, ObservedPosition

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
    :mod:`grinder.exchange.binance.parsing.statuses`.

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


# --- REST arrays -----------------------------------------------------------------------------

_Row_co = TypeVar("_Row_co", covariant=True)


class _RowParser(Protocol[_Row_co]):
    def __call__(self, row: Any, *, seen_ts_ms: int, kind: str) -> _Row_co: ...


def _parse_rows(
    doc: Any, parse_row: _RowParser[_Row_co], *, seen_ts_ms: int, kind: str
) -> list[_Row_co]:
    """Every row of a JSON array through ``parse_row``; an error names the row (``[3].``)."""
    rows = _expect_list(doc, kind)
    out: list[_Row_co] = []
    for index, row in enumerate(rows):
        try:
            out.append(parse_row(row, seen_ts_ms=seen_ts_ms, kind=kind))
        except WireFormatError as exc:
            raise exc.with_prefix(f"[{index}].") from None
    return out


def parse_orders(doc: Any, *, seen_ts_ms: int, kind: str = "openOrders") -> list[ObservedOrder]:
    """A JSON array of regular orders (``GET /fapi/v1/openOrders``, allOrders)."""
    return _parse_rows(doc, parse_order, seen_ts_ms=seen_ts_ms, kind=kind)


def parse_algo_orders(
    doc: Any, *, seen_ts_ms: int, kind: str = "openAlgoOrders"
) -> list[ObservedOrder]:
    """A JSON array of algo orders (``GET /fapi/v1/openAlgoOrders``)."""
    return _parse_rows(doc, parse_algo_order, seen_ts_ms=seen_ts_ms, kind=kind)


def parse_positions(
    doc: Any, *, seen_ts_ms: int, kind: str = "positionRisk"
) -> list[ObservedPosition]:
    """A JSON array of positionRisk rows (v2 or v3)."""
    return _parse_rows(doc, parse_position, seen_ts_ms=seen_ts_ms, kind=kind)


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


def parse_countdown(doc: Any, *, symbol: str, kind: str = "countdownCancelAll") -> int:
    """The countdown (ms) the exchange set for ``symbol``: ``{"symbol", "countdownTime"}``,
    the time a digit string (the docs' example) or an integer."""
    obj = _expect_object(doc, kind)
    echoed = _req_str(obj, "symbol", kind, "")
    if echoed != symbol:
        raise _field_error(obj, "symbol", kind, "", f"{symbol!r}")
    return _req_int(obj, "countdownTime", kind, "")
