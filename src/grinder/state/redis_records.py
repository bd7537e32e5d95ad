"""Records of the Redis expected-state store: orders and positions as JSON.

One compact JSON object (keys sorted) per order, in a hash field named by its
client order id, and per position, in a field named by ``position_field``.
Decimals are stored as strings (``str(Decimal)``), so they round-trip exactly;
enums by value, decoded through the tables every backend shares
(``grinder.state.expected``). A record that does not decode raises
``ExpectedStoreError`` naming the store.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

from grinder.reconcile.types import ExpectedOrder, ExpectedPosition, PositionKey
from grinder.state.expected import POSITION_SIDES, SIDES, STATUSES, ExpectedStoreError


def encode_order(order: ExpectedOrder) -> str:
    return json.dumps(
        {
            "client_order_id": order.client_order_id,
            "symbol": order.symbol,
            "side": order.side.value,
            "qty": str(order.qty),
            "price": None if order.price is None else str(order.price),
            "order_type": order.order_type,
            "position_side": order.position_side.value,
            "status": order.status.value,
            "created_ts_ms": order.created_ts_ms,
            "updated_ts_ms": order.updated_ts_ms,
            "cancel_requested": order.cancel_requested,
            "ended_ts_ms": order.ended_ts_ms,
            "is_algo": order.is_algo,
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def decode_order(raw: str, *, where: str) -> ExpectedOrder:
    try:
        d = json.loads(raw)
        price = d["price"]
        ended = d["ended_ts_ms"]
        return ExpectedOrder(
            client_order_id=str(d["client_order_id"]),
            symbol=str(d["symbol"]),
            side=SIDES[d["side"]],
            qty=Decimal(d["qty"]),
            price=None if price is None else Decimal(price),
            order_type=str(d["order_type"]),
            position_side=POSITION_SIDES[d["position_side"]],
            status=STATUSES[d["status"]],
            created_ts_ms=int(d["created_ts_ms"]),
            updated_ts_ms=int(d["updated_ts_ms"]),
            cancel_requested=bool(d["cancel_requested"]),
            ended_ts_ms=None if ended is None else int(ended),
            is_algo=bool(d["is_algo"]),
        )
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise ExpectedStoreError(f"{where}: bad order record ({exc!r})") from None


def position_field(key: PositionKey) -> str:
    return f"{key[0]}|{key[1].value}"


def encode_position(pos: ExpectedPosition) -> str:
    return json.dumps(
        {
            "symbol": pos.symbol,
            "position_side": pos.position_side.value,
            "qty": str(pos.qty),
            "updated_ts_ms": pos.updated_ts_ms,
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def decode_position(raw: str, *, where: str) -> ExpectedPosition:
    try:
        d = json.loads(raw)
        return ExpectedPosition(
            symbol=str(d["symbol"]),
            qty=Decimal(d["qty"]),
            position_side=POSITION_SIDES[d["position_side"]],
            updated_ts_ms=int(d["updated_ts_ms"]),
        )
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise ExpectedStoreError(f"{where}: bad position record ({exc!r})") from None
