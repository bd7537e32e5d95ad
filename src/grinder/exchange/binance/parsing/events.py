"""Parsers of Binance USDⓈ-M user-data stream events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, TypeAlias

from grinder.exchange.binance.parsing.statuses import _algo_status, _order_status
from grinder.exchange.binance.parsing.wire import (
    _bool,
    _check_position_sign,
    _decimal_or_zero,
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


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """``ORDER_TRADE_UPDATE``: the order's new state and what happened to it.

    ``execution_type`` is ``o.x`` as sent (NEW, TRADE, CANCELED, EXPIRED,
    CALCULATED for liquidation/ADL, AMENDMENT, …). ``order.update_ts_ms`` is the
    order's trade time ``o.T``; ``order.created_ts_ms`` is set for ``x`` NEW
    only. ``parent_algo_id`` is ``o.si`` when non-zero (a child order placed
    by a triggered algo order, ``st`` "ALGO_CONDITION"). ``time_in_force`` (``o.f``),
    ``stp_mode`` (``o.V``) and ``expiry_reason`` (``o.er``, a number or its text: "6" is
    a GTE_GTC order whose position closed) are kept as sent, None when absent: the
    evidence of an incident's cause (``grinder.incidents``).
    """

    event_type: ClassVar[str] = "ORDER_TRADE_UPDATE"

    order: ObservedOrder
    execution_type: str
    event_ts_ms: int
    trade_id: int = 0
    last_filled_qty: Decimal = ZERO
    parent_algo_id: int | None = None
    time_in_force: str | None = None
    stp_mode: str | None = None
    expiry_reason: str | None = None


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

    ``algo_status`` is ``o.X`` as sent; ``order.status`` is its mapping
    (:mod:`grinder.exchange.binance.parsing.statuses`). ``actual_order_id`` is the
    triggered child order's id (``o.ai``) once there is one; ``reject_reason`` is
    ``o.rm`` when sent.
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
        time_in_force=_opt_str(o, "f", kind, "o.") or None,
        stp_mode=_opt_str(o, "V", kind, "o.") or None,
        expiry_reason=_code(o, "er", kind),
    )


def _code(o: dict[str, Any], key: str, kind: str) -> str | None:
    """A numeric code sent as a number or as its text (``er``), as text; None when absent."""
    value = o.get(key)
    if value is None or (type(value) is str and value):
        return value
    if type(value) is int:
        return str(value)
    raise _field_error(o, key, kind, "o.", "a code (a number or its text)")


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
