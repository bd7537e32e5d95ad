"""Observed state: what the exchange says, from REST snapshots, stream events and queries.

Rules (CONTRACT §3):

* A snapshot is authoritative for the open-order set as of the moment its
  request was **sent**: an open order absent from it is gone, unless this store
  learned of it after that moment (created later, or a later stream event).
* Updates never regress an order: a terminal order stays terminal; otherwise an
  update must be newer by (exchange update time, status rank, executed qty).
  Duplicated or reordered stream events are therefore harmless.
* An order a snapshot showed gone keeps its last known state with that
  snapshot's request time: a stream event brings it back only as progress made
  after that time (a late duplicate, or a late event from before, does not; its
  ending is always taken), but a REST read (snapshot row, order query) whose
  request was sent after that snapshot is the exchange's newer word and does --
  a snapshot can miss an order that is still open.
* Positions are keyed by (symbol, positionSide). A position absent from an
  all-symbols position snapshot is flat; the same two rules hold for that zero
  (a late duplicate report cannot undo it, a later snapshot's row can).

Ended orders stay for ``terminal_ttl_ms`` so detection can tell "filled while we
were not looking" from "missing".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal

from grinder.reconcile.types import (
    STATUS_RANK,
    ZERO,
    ObservedOrder,
    ObservedPosition,
    PositionKey,
)

DEFAULT_TERMINAL_TTL_MS = 3_600_000


@dataclass(slots=True)
class _Vanished:
    """An open order a snapshot did not list: its last known state, and when that
    snapshot's request was sent."""

    order: ObservedOrder
    sent_ts_ms: int


@dataclass(slots=True)
class _Zeroed:
    """A position a snapshot did not list (so stored as flat): when that snapshot's
    request was sent, and the exchange update time of the last report before it."""

    sent_ts_ms: int
    update_ts_ms: int


class ObservedStore:
    """The exchange's picture, kept consistent under snapshots and out-of-order events."""

    def __init__(self, *, terminal_ttl_ms: int = DEFAULT_TERMINAL_TTL_MS) -> None:
        self.terminal_ttl_ms = terminal_ttl_ms
        self._orders: dict[str, ObservedOrder] = {}
        self._open: dict[str, ObservedOrder] = {}
        self._positions: dict[PositionKey, ObservedPosition] = {}
        # Orders a snapshot showed gone: a late duplicate of an old event must not
        # bring them back; real progress may, and so may a later snapshot.
        self._vanished: dict[str, _Vanished] = {}
        # Positions a snapshot showed flat, under the same two rules.
        self._zeroed: dict[PositionKey, _Zeroed] = {}
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

    def apply_order(self, update: ObservedOrder, *, read_sent_ts_ms: int | None = None) -> bool:
        """Apply one order report; returns False when it is stale or a duplicate.

        ``read_sent_ts_ms`` marks a REST read (a snapshot row, an order query) and
        is the time its request was sent; stream events leave it None. A read sent
        after the snapshot that showed the order gone brings the order back: the
        exchange has it (with the more advanced of the read's and the last known
        state). Anything else must be progress over the last known state.
        """
        cid = update.client_order_id
        current = self._orders.get(cid)
        if current is None and (gone := self._vanished.get(cid)) is not None:
            if (
                read_sent_ts_ms is None
                and not update.status.is_terminal
                and update.update_ts_ms <= gone.sent_ts_ms
            ):
                # A late event from before the snapshot that showed the order gone: the
                # snapshot is newer news. Only its ending (or a later event) may follow.
                return False
            if read_sent_ts_ms is None or read_sent_ts_ms <= gone.sent_ts_ms:
                current = gone.order
            elif _is_progress(update, gone.order):
                # The read is older news than a report we had: it proves the order
                # open, the report says how far it has got.
                update = replace(gone.order, seen_ts_ms=max(update.seen_ts_ms, read_sent_ts_ms))
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
            self.apply_order(order, read_sent_ts_ms=sent_ts_ms)
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
            self._vanished[cid] = _Vanished(order, sent_ts_ms)
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
            elif order is None:
                gone = self._vanished.get(cid)
                if gone is not None and gone.sent_ts_ms == seen:
                    del self._vanished[cid]
                    evicted += 1
        return evicted

    # --- positions -----------------------------------------------------------------------

    def apply_position(
        self, update: ObservedPosition, *, read_sent_ts_ms: int | None = None
    ) -> bool:
        """Apply one position report; stale reports are ignored.

        ``read_sent_ts_ms`` marks a snapshot row and is the time its request was
        sent; stream reports leave it None. The zero a snapshot inferred outranks
        every report up to the last one before it, except a row of a snapshot sent
        later: that one is judged against the last real report only.
        """
        key = update.key
        current = self._positions.get(key)
        if current is not None and update.update_ts_ms < self._bar(current, read_sent_ts_ms):
            return False
        self._zeroed.pop(key, None)
        if current is None or current.qty != update.qty:
            # The change happened on the exchange at its update time when known.
            update.changed_ts_ms = update.update_ts_ms or update.seen_ts_ms
            self._dirty_positions.add(update.key)
        else:
            update.changed_ts_ms = current.changed_ts_ms
        self._positions[update.key] = update
        return True

    def _bar(self, current: ObservedPosition, read_sent_ts_ms: int | None) -> int:
        """The exchange update time a report must reach to replace ``current``."""
        zeroed = self._zeroed.get(current.key)
        if zeroed is None or read_sent_ts_ms is None or read_sent_ts_ms <= zeroed.sent_ts_ms:
            return current.update_ts_ms
        # A read sent after the snapshot that zeroed it answers to real reports only.
        return zeroed.update_ts_ms

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
            self.apply_position(pos, read_sent_ts_ms=sent_ts_ms)
        for key, pos in list(self._positions.items()):
            if key in present or (scope is not None and pos.symbol not in scope):
                continue
            if pos.seen_ts_ms <= sent_ts_ms and pos.qty != ZERO:
                # The snapshot proves a change after the last known update: the zero
                # outranks every report at or before it (a late duplicate included),
                # until a snapshot sent later lists the position again.
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
                self._zeroed[key] = _Zeroed(sent_ts_ms, pos.update_ts_ms)
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
