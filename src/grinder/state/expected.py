"""Expected state: what the bot believes about its orders and positions.

``ExpectedStore`` is the read interface detection uses; ``MemoryExpectedStore``
is the in-process backend. The store is bounded: terminal orders are kept for
``terminal_ttl_ms`` (they explain late exchange reports) and are the first to
go when the store is full. Open orders are never evicted to make room --
forgetting one would make the bot's own live order look unexpected and get it
cancelled -- so a store full of open orders refuses the new one loudly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from decimal import Decimal
from typing import Protocol

from grinder.reconcile.types import (
    ExpectedOrder,
    ExpectedPosition,
    OrderStatus,
    PositionKey,
    PositionSide,
)

DEFAULT_MAX_ORDERS = 100_000
DEFAULT_TERMINAL_TTL_MS = 3_600_000


class ExpectedStoreFull(RuntimeError):
    """The store holds ``max_orders`` open orders and cannot accept another."""


class UnknownOrder(KeyError):
    """An update named a client order id the store does not hold."""


class ExpectedStore(Protocol):
    """What detection reads from any expected-state backend."""

    def orders(self) -> Iterable[ExpectedOrder]: ...

    def get_order(self, client_order_id: str) -> ExpectedOrder | None: ...

    def positions(self) -> Iterable[ExpectedPosition]: ...

    def get_position(self, key: PositionKey) -> ExpectedPosition | None: ...


class DictReads:
    """The read protocol over in-memory dicts: the memory store's state, and the
    mirrors the SQLite and Redis stores refresh from their backends."""

    _orders: dict[str, ExpectedOrder]
    _positions: dict[PositionKey, ExpectedPosition]

    def orders(self) -> Iterable[ExpectedOrder]:
        return self._orders.values()

    def get_order(self, client_order_id: str) -> ExpectedOrder | None:
        return self._orders.get(client_order_id)

    def positions(self) -> Iterable[ExpectedPosition]:
        return self._positions.values()

    def get_position(self, key: PositionKey) -> ExpectedPosition | None:
        return self._positions.get(key)

    def __len__(self) -> int:
        return len(self._orders)


class MemoryExpectedStore(DictReads):
    """In-process expected state with bounded size and TTL eviction of ended orders."""

    def __init__(
        self,
        *,
        max_orders: int = DEFAULT_MAX_ORDERS,
        terminal_ttl_ms: int = DEFAULT_TERMINAL_TTL_MS,
    ) -> None:
        if max_orders < 1:
            raise ValueError("max_orders must be >= 1")
        self.max_orders = max_orders
        self.terminal_ttl_ms = terminal_ttl_ms
        self._orders: dict[str, ExpectedOrder] = {}
        self._positions: dict[PositionKey, ExpectedPosition] = {}
        # (ended_ts_ms, client_order_id) in the order the bot ended them.
        self._ended: deque[tuple[int, str]] = deque()

    # --- writes --------------------------------------------------------------------------

    def record_order(self, order: ExpectedOrder) -> None:
        """The bot placed (or is about to place) this order."""
        if order.client_order_id not in self._orders and len(self._orders) >= self.max_orders:
            self._evict_ended(now_ms=None)
            if len(self._orders) >= self.max_orders:
                raise ExpectedStoreFull(
                    f"expected store holds {len(self._orders)} orders (max_orders="
                    f"{self.max_orders}) and none has ended; refusing {order.client_order_id}"
                )
        self._orders[order.client_order_id] = order
        if order.ended_ts_ms is not None:
            self._ended.append((order.ended_ts_ms, order.client_order_id))

    def mark_cancel_requested(self, client_order_id: str, now_ms: int) -> None:
        """The bot sent a cancel: from now on it expects the order gone."""
        order = self._require(client_order_id)
        order.cancel_requested = True
        order.updated_ts_ms = now_ms
        self._mark_ended(order, now_ms)

    def mark_status(self, client_order_id: str, status: OrderStatus, now_ms: int) -> None:
        """The bot booked a status it saw (a fill, a cancel confirmation, an expiry)."""
        order = self._require(client_order_id)
        order.status = status
        order.updated_ts_ms = now_ms
        if status.is_terminal:
            self._mark_ended(order, now_ms)

    def remove_order(self, client_order_id: str) -> None:
        self._orders.pop(client_order_id, None)

    def set_position(
        self,
        symbol: str,
        qty: Decimal,
        now_ms: int,
        position_side: PositionSide = PositionSide.BOTH,
    ) -> None:
        """The position the bot now intends to hold (signed; 0 for flat)."""
        self._positions[(symbol, position_side)] = ExpectedPosition(
            symbol=symbol, qty=qty, position_side=position_side, updated_ts_ms=now_ms
        )

    def evict_expired(self, now_ms: int) -> int:
        """Drop ended orders older than ``terminal_ttl_ms``; returns how many."""
        return self._evict_ended(now_ms)

    # --- internals -----------------------------------------------------------------------

    def _require(self, client_order_id: str) -> ExpectedOrder:
        order = self._orders.get(client_order_id)
        if order is None:
            raise UnknownOrder(f"expected store has no order {client_order_id!r}")
        return order

    def _mark_ended(self, order: ExpectedOrder, now_ms: int) -> None:
        if order.ended_ts_ms is None:
            order.ended_ts_ms = now_ms
            self._ended.append((now_ms, order.client_order_id))

    def _evict_ended(self, now_ms: int | None) -> int:
        """Evict ended orders past their TTL, or (``now_ms`` None) the oldest ended one."""
        evicted = 0
        while self._ended:
            ended_ts, cid = self._ended[0]
            if now_ms is not None and ended_ts + self.terminal_ttl_ms > now_ms:
                break
            self._ended.popleft()
            order = self._orders.get(cid)
            if order is None or order.ended_ts_ms != ended_ts:
                continue  # removed or re-recorded since
            del self._orders[cid]
            evicted += 1
            if now_ms is None:
                break
        return evicted
