"""Observed state: what the exchange says, from REST snapshots, stream events and queries.

Rules (CONTRACT §3):

* A snapshot is authoritative for the open-order set as of the moment its
  request was **sent**: an open order absent from it is gone, unless this store
  learned of it after that moment (created later, or a later stream event).
* Updates never regress an order: a terminal order stays terminal; otherwise an
  update must be newer by (exchange update time, status rank, executed qty).
  Duplicated or reordered stream events are therefore harmless.
* Positions are keyed by (symbol, positionSide). A position absent from an
  all-symbols position snapshot is flat.

Ended orders stay for ``terminal_ttl_ms`` so detection can tell "filled while we
were not looking" from "missing".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from decimal import Decimal

from grinder.reconcile.types import (
    STATUS_RANK,
    ZERO,
    ObservedOrder,
    ObservedPosition,
    PositionKey,
)

DEFAULT_TERMINAL_TTL_MS = 3_600_000


class ObservedStore:
    """The exchange's picture, kept consistent under snapshots and out-of-order events."""

    def __init__(self, *, terminal_ttl_ms: int = DEFAULT_TERMINAL_TTL_MS) -> None:
        self.terminal_ttl_ms = terminal_ttl_ms
        self._orders: dict[str, ObservedOrder] = {}
        self._open: dict[str, ObservedOrder] = {}
        self._positions: dict[PositionKey, ObservedPosition] = {}
        # Last known state of orders a snapshot showed gone: a late duplicate of an
        # old event must not bring them back; only real progress may.
        self._vanished: dict[str, ObservedOrder] = {}
        self._ended: deque[tuple[int, str]] = deque()
        self._dirty_orders: set[str] = set()
        self._dirty_positions: set[PositionKey] = set()
        self.last_order_snapshot_ms: int | None = None
        self.last_position_snapshot_ms: int | None = None

    # --- reads ---------------------------------------------------------------------------

    def open_orders(self) -> Iterable[ObservedOrder]:
        return self._open.values()

    def open_order_ids(self) -> Iterable[str]:
        return self._open.keys()

    def get_order(self, client_order_id: str) -> ObservedOrder | None:
        return self._orders.get(client_order_id)

    def positions(self) -> Iterable[ObservedPosition]:
        return self._positions.values()

    def get_position(self, key: PositionKey) -> ObservedPosition | None:
        return self._positions.get(key)

    def has_snapshot(self) -> bool:
        return self.last_order_snapshot_ms is not None

    def snapshot_age_ms(self, now_ms: int) -> int | None:
        """Age of the older of the two snapshots, or None before the first of each."""
        if self.last_order_snapshot_ms is None or self.last_position_snapshot_ms is None:
            return None
        return now_ms - min(self.last_order_snapshot_ms, self.last_position_snapshot_ms)

    def drain_dirty(self) -> tuple[set[str], set[PositionKey]]:
        """Client order ids and position keys changed since the last call."""
        orders, positions = self._dirty_orders, self._dirty_positions
        self._dirty_orders, self._dirty_positions = set(), set()
        return orders, positions

    # --- orders --------------------------------------------------------------------------

    def apply_order(self, update: ObservedOrder) -> bool:
        """Apply one order report; returns False when it is stale or a duplicate."""
        cid = update.client_order_id
        current = self._orders.get(cid) or self._vanished.get(cid)
        if current is not None and not _is_progress(current, update):
            return False
        self._vanished.pop(cid, None)
        self._orders[cid] = update
        if update.status.is_open:
            self._open[cid] = update
        else:
            self._open.pop(cid, None)
            self._ended.append((update.seen_ts_ms, cid))
        self._dirty_orders.add(cid)
        return True

    def apply_open_orders_snapshot(
        self,
        orders: Iterable[ObservedOrder],
        sent_ts_ms: int,
        symbols: Iterable[str] | None = None,
    ) -> int:
        """Apply a REST open-orders snapshot whose request was sent at ``sent_ts_ms``.

        ``symbols`` names the symbols the snapshot covered (None: all symbols).
        Returns how many stored open orders it showed to be gone.
        """
        scope = None if symbols is None else frozenset(symbols)
        present: set[str] = set()
        for order in orders:
            present.add(order.client_order_id)
            if order.seen_ts_ms < sent_ts_ms:
                order.seen_ts_ms = sent_ts_ms
            self.apply_order(order)
        gone = [
            o
            for cid, o in self._open.items()
            if cid not in present
            and (scope is None or o.symbol in scope)
            and o.seen_ts_ms <= sent_ts_ms
        ]
        for order in gone:
            cid = order.client_order_id
            del self._open[cid]
            del self._orders[cid]
            self._vanished[cid] = order
            self._ended.append((sent_ts_ms, cid))
            self._dirty_orders.add(cid)
        self.last_order_snapshot_ms = max(self.last_order_snapshot_ms or 0, sent_ts_ms)
        return len(gone)

    def forget_order(self, client_order_id: str) -> None:
        self._orders.pop(client_order_id, None)
        self._open.pop(client_order_id, None)
        self._vanished.pop(client_order_id, None)

    def evict_expired(self, now_ms: int) -> int:
        """Drop ended and vanished orders learned more than ``terminal_ttl_ms`` ago."""
        evicted = 0
        while self._ended and self._ended[0][0] + self.terminal_ttl_ms <= now_ms:
            seen, cid = self._ended.popleft()
            order = self._orders.get(cid)
            if order is not None and order.status.is_terminal and order.seen_ts_ms == seen:
                del self._orders[cid]
                evicted += 1
            elif cid in self._vanished and cid not in self._orders:
                del self._vanished[cid]
                evicted += 1
        return evicted

    # --- positions -----------------------------------------------------------------------

    def apply_position(self, update: ObservedPosition) -> bool:
        """Apply one position report (stream or snapshot row); stale reports are ignored."""
        current = self._positions.get(update.key)
        if current is not None and update.update_ts_ms < current.update_ts_ms:
            return False
        if current is None or current.qty != update.qty:
            # The change happened on the exchange at its update time when known.
            update.changed_ts_ms = update.update_ts_ms or update.seen_ts_ms
            self._dirty_positions.add(update.key)
        else:
            update.changed_ts_ms = current.changed_ts_ms
        self._positions[update.key] = update
        return True

    def apply_positions_snapshot(
        self,
        positions: Iterable[ObservedPosition],
        sent_ts_ms: int,
        symbols: Iterable[str] | None = None,
    ) -> None:
        """Apply a position snapshot; a stored position it omits (in scope) is now flat."""
        scope = None if symbols is None else frozenset(symbols)
        present: set[PositionKey] = set()
        for pos in positions:
            present.add(pos.key)
            if pos.seen_ts_ms < sent_ts_ms:
                pos.seen_ts_ms = sent_ts_ms
            self.apply_position(pos)
        for key, pos in list(self._positions.items()):
            if key in present or (scope is not None and pos.symbol not in scope):
                continue
            if pos.seen_ts_ms <= sent_ts_ms and pos.qty != ZERO:
                # The snapshot proves a change after the last known update: the zero
                # outranks every report at or before it (a late duplicate included).
                self.apply_position(
                    ObservedPosition(
                        symbol=pos.symbol,
                        qty=ZERO,
                        position_side=pos.position_side,
                        mark_price=pos.mark_price,
                        update_ts_ms=pos.update_ts_ms + 1,
                        seen_ts_ms=sent_ts_ms,
                    )
                )
        self.last_position_snapshot_ms = max(self.last_position_snapshot_ms or 0, sent_ts_ms)

    def mark_price(self, symbol: str) -> Decimal | None:
        for pos in self._positions.values():
            if pos.symbol == symbol and pos.mark_price is not None:
                return pos.mark_price
        return None

    def __iter__(self) -> Iterator[ObservedOrder]:
        return iter(self._orders.values())


def _is_progress(current: ObservedOrder, update: ObservedOrder) -> bool:
    """Whether ``update`` moves ``current`` forward (never backward, never sideways)."""
    if current.status.is_terminal:
        return False
    if update.update_ts_ms != current.update_ts_ms:
        return update.update_ts_ms > current.update_ts_ms and (
            STATUS_RANK[update.status] >= STATUS_RANK[current.status]
            and update.executed_qty >= current.executed_qty
        )
    rank_new, rank_cur = STATUS_RANK[update.status], STATUS_RANK[current.status]
    if rank_new != rank_cur:
        return rank_new > rank_cur
    return update.executed_qty > current.executed_qty
