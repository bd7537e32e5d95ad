"""Order and algo order statuses from the wire → :class:`OrderStatus`.

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

from decimal import Decimal
from typing import Any

from grinder.exchange.binance.parsing.wire import _field_error
from grinder.reconcile.types import OrderStatus

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
