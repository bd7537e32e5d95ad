"""Expected state: what the bot believes about its orders and positions.

``ExpectedStore`` is the read interface detection uses, ``ExpectedWriter`` the
write interface every backend honours; ``MemoryExpectedStore`` is the in-process
backend. The store is bounded: terminal orders are kept for
``terminal_ttl_ms`` (they explain late exchange reports) and are the first to
go when the store is full. Open orders are never evicted to make room --
forgetting one would make the bot's own live order look unexpected and get it
cancelled -- so a store full of open orders refuses the new one loudly.

What the three backends share lives here too: the read protocol over dicts
(``DictReads``), the refreshed mirror of the SQLite and Redis stores
(``MirrorReads``, ``RefreshResult``), the way a cancel or a booked status
changes an order, and the decoding tables of stored records.

**The bot's heartbeat.** Expected state is only worth comparing while a bot keeps
it: a file nobody writes says "the bot expects nothing", and remediation would
cancel every order of the bot. Every store therefore knows when a bot last wrote
it (``heartbeat_age_s``, ``math.inf`` for never), which gate E of the remediation
executor checks. The SQLite and Redis stores keep a timestamp a bot's writes and
its periodic ``heartbeat()`` calls refresh; the in-memory store lives in the
bot's own process, so it counts as live once a bot has written it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from types import TracebackType
from typing import Protocol, Self

from grinder.reconcile.types import (
    ExpectedOrder,
    ExpectedPosition,
    OrderStatus,
    PositionKey,
    PositionSide,
    Side,
)

DEFAULT_MAX_ORDERS = 100_000
DEFAULT_TERMINAL_TTL_MS = 3_600_000
# Changes a removed order's tombstone is kept for by the SQLite and Redis stores.
DEFAULT_TOMBSTONE_RETENTION = 100_000

# Enum members by their stored value, for the backends that decode records.
SIDES = {s.value: s for s in Side}
POSITION_SIDES = {s.value: s for s in PositionSide}
STATUSES = {s.value: s for s in OrderStatus}


class ExpectedStoreFull(RuntimeError):
    """The store holds ``max_orders`` open orders and cannot accept another."""


class UnknownOrder(KeyError):
    """An update named a client order id the store does not hold."""


class ExpectedStoreError(RuntimeError):
    """The expected-state backend (a SQLite file, Redis) cannot be used; the message
    names it."""


class ExpectedStore(Protocol):
    """What detection reads from any expected-state backend."""

    def orders(self) -> Iterable[ExpectedOrder]: ...

    def get_order(self, client_order_id: str) -> ExpectedOrder | None: ...

    def positions(self) -> Iterable[ExpectedPosition]: ...

    def get_position(self, key: PositionKey) -> ExpectedPosition | None: ...


class ExpectedWriter(Protocol):
    """The writes every expected-state backend takes (``MemoryExpectedStore``,
    ``SqliteExpectedStore``, ``RedisExpectedStore``), with the same semantics: orders are
    frozen values (what a store holds cannot be changed behind it), a cancel or a booked
    status replaces the stored order rather than changing an order handed out before, and
    an unknown id raises ``UnknownOrder``.

    The bot's heartbeat is not part of it: its signature differs by backend (the SQLite
    store takes the bot's time), see the module docstring."""

    def record_order(self, order: ExpectedOrder) -> None: ...

    def mark_cancel_requested(self, client_order_id: str, now_ms: int) -> None: ...

    def mark_status(self, client_order_id: str, status: OrderStatus, now_ms: int) -> None: ...

    def remove_order(self, client_order_id: str) -> None: ...

    def set_position(
        self,
        symbol: str,
        qty: Decimal,
        now_ms: int,
        position_side: PositionSide = PositionSide.BOTH,
    ) -> None: ...

    def evict_expired(self, now_ms: int) -> int: ...


class ExpectedReadWrite(ExpectedStore, ExpectedWriter, Protocol):
    """A store read and written by the same caller (``grinder expected adopt``)."""


NEVER = math.inf
"""``heartbeat_age_s`` of a store no bot has written."""

RECOMMENDED_HEARTBEAT_INTERVAL_S = 10.0
"""How often a bot should call ``heartbeat()`` (from its main loop): a sixth of the default
``expected_heartbeat_max_age_s`` (60 s), so a few missed beats never block remediation."""


def age_s(heartbeat_ms: int | None, now_ms: int) -> float:
    """Seconds from ``heartbeat_ms`` to ``now_ms`` (``NEVER`` for None; a heartbeat from
    the future, a clock step, counts as now)."""
    if heartbeat_ms is None:
        return NEVER
    return max(0, now_ms - heartbeat_ms) / 1000


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


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What one ``refresh()`` changed in the mirror.

    ``full`` is True when the mirror was reloaded from scratch (first load, or the
    reader fell behind the tombstone horizon): then the ids are every id that was
    or is in the mirror, and a full detection pass is the sensible reaction.
    """

    order_ids: frozenset[str]
    position_keys: frozenset[PositionKey]
    full: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.order_ids or self.position_keys)


class MirrorReads(DictReads):
    """``DictReads`` over a mirror of a shared backend (SQLite, Redis), which
    ``refresh()`` brings up to date through the backend's change sequence."""

    _seen_seq: int

    @property
    def last_seq(self) -> int:
        """The change sequence the mirror reflects (after the last refresh)."""
        return self._seen_seq

    def _apply_changes(
        self,
        orders: list[tuple[str, ExpectedOrder | None]],
        positions: list[ExpectedPosition],
    ) -> RefreshResult:
        """Put changed rows into the mirror (an order ``None`` was removed)."""
        for cid, order in orders:
            if order is None:
                self._orders.pop(cid, None)
            else:
                self._orders[cid] = order
        for pos in positions:
            self._positions[pos.key] = pos
        return RefreshResult(
            frozenset(cid for cid, _ in orders), frozenset(p.key for p in positions)
        )

    def _reload(
        self,
        orders: dict[str, ExpectedOrder],
        positions: dict[PositionKey, ExpectedPosition],
        *,
        merge: bool = False,
    ) -> RefreshResult:
        """Replace the mirror with everything the backend holds (``merge``: keep what
        the backend no longer has); every id that was or is in the mirror changed."""
        order_ids = frozenset(self._orders.keys() | orders.keys())
        position_keys = frozenset(self._positions.keys() | positions.keys())
        if merge:
            self._orders.update(orders)
            self._positions.update(positions)
        else:
            self._orders, self._positions = orders, positions
        return RefreshResult(order_ids, position_keys, full=True)


class Closing:
    """``with`` support: leaving the block closes the object."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- write semantics shared by every backend -------------------------------------------------


def book_cancel_requested(order: ExpectedOrder, now_ms: int) -> tuple[ExpectedOrder, bool]:
    """The bot sent a cancel for ``order``: the order as it is now (a new value, ``order``
    is left as it was), and True when this is what ended it."""
    ends = order.ended_ts_ms is None
    booked = replace(
        order,
        cancel_requested=True,
        updated_ts_ms=now_ms,
        ended_ts_ms=now_ms if ends else order.ended_ts_ms,
    )
    return booked, ends


def book_status(
    order: ExpectedOrder, status: OrderStatus, now_ms: int
) -> tuple[ExpectedOrder, bool]:
    """The bot booked ``status`` for ``order``: the order as it is now (a new value,
    ``order`` is left as it was), and True when this is what ended it."""
    ends = status.is_terminal and order.ended_ts_ms is None
    booked = replace(
        order,
        status=status,
        updated_ts_ms=now_ms,
        ended_ts_ms=now_ms if ends else order.ended_ts_ms,
    )
    return booked, ends


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
        # A heap of (ended_ts_ms, n, client_order_id): the oldest end first, then the first
        # booked (the order the SQLite and Redis stores evict in, whatever the recording order).
        self._ended: list[tuple[int, int, str]] = []
        self._booked = itertools.count()
        self._written = False

    # --- the bot's heartbeat ---------------------------------------------------------------

    @property
    def written_by_bot(self) -> bool:
        """True once a bot has written the store (any write but ``evict_expired``, or
        ``heartbeat()``)."""
        return self._written

    def heartbeat(self) -> None:
        """The bot in this process is running (it may not have written anything yet)."""
        self._written = True

    def heartbeat_age_s(self, now_ms: int | None = None) -> float:
        """0 once a bot has written the store, ``NEVER`` before: the store lives in the
        bot's process, so while the process runs the bot does too."""
        return 0.0 if self._written else NEVER

    # --- writes --------------------------------------------------------------------------

    def record_order(self, order: ExpectedOrder) -> None:
        """The bot placed (or is about to place) this order (a frozen value: stored as given)."""
        self._written = True
        if order.client_order_id not in self._orders and len(self._orders) >= self.max_orders:
            self._evict_ended(now_ms=None)
            if len(self._orders) >= self.max_orders:
                raise ExpectedStoreFull(
                    f"expected store holds {len(self._orders)} orders (max_orders="
                    f"{self.max_orders}) and none has ended; refusing {order.client_order_id}"
                )
        stored = order
        self._orders[stored.client_order_id] = stored
        if stored.ended_ts_ms is not None:
            self._push_ended(stored.ended_ts_ms, stored.client_order_id)

    def mark_cancel_requested(self, client_order_id: str, now_ms: int) -> None:
        """The bot sent a cancel: from now on it expects the order gone."""
        self._written = True
        order, ended = book_cancel_requested(self._require(client_order_id), now_ms)
        self._orders[client_order_id] = order
        if ended:
            self._push_ended(now_ms, client_order_id)

    def mark_status(self, client_order_id: str, status: OrderStatus, now_ms: int) -> None:
        """The bot booked a status it saw (a fill, a cancel confirmation, an expiry)."""
        self._written = True
        order, ended = book_status(self._require(client_order_id), status, now_ms)
        self._orders[client_order_id] = order
        if ended:
            self._push_ended(now_ms, client_order_id)

    def remove_order(self, client_order_id: str) -> None:
        self._written = True
        self._orders.pop(client_order_id, None)

    def set_position(
        self,
        symbol: str,
        qty: Decimal,
        now_ms: int,
        position_side: PositionSide = PositionSide.BOTH,
    ) -> None:
        """The position the bot now intends to hold (signed; 0 for flat)."""
        self._written = True
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

    def _push_ended(self, ended_ts_ms: int, client_order_id: str) -> None:
        heapq.heappush(self._ended, (ended_ts_ms, next(self._booked), client_order_id))

    def _evict_ended(self, now_ms: int | None) -> int:
        """Evict ended orders past their TTL, or (``now_ms`` None) the oldest ended one."""
        evicted = 0
        while self._ended:
            ended_ts, _, cid = self._ended[0]
            if now_ms is not None and ended_ts + self.terminal_ttl_ms > now_ms:
                break
            heapq.heappop(self._ended)
            order = self._orders.get(cid)
            if order is None or order.ended_ts_ms != ended_ts:
                continue  # removed or re-recorded since
            del self._orders[cid]
            evicted += 1
            if now_ms is None:
                break
        return evicted
