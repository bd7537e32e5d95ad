"""One contract for every expected-state store (``ExpectedWriter`` beside ``ExpectedStore``).

Each test runs against ``MemoryExpectedStore``, ``SqliteExpectedStore`` (a real file under
``tmp_path``) and ``RedisExpectedStore`` (a real ``redis-server``, the ``redis_server``
fixture). What a store holds is checked twice: through the store that wrote it, and through
a second reader opened on the same backend (for the memory store, the store itself).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from grinder.clock import wall_clock_ms
from grinder.ha.connection import RedisConnection
from grinder.reconcile.types import ExpectedOrder, OrderStatus, PositionSide, Side
from grinder.state.expected import (
    ExpectedReadWrite,
    ExpectedStoreFull,
    MemoryExpectedStore,
    UnknownOrder,
)
from grinder.state.redis_store import RedisExpectedStore
from grinder.state.sqlite import SqliteExpectedStore

TTL = 10_000
MAX = 4
BTC = "BTCUSDT"
ETH = "ETHUSDT"
# Every position key the tests can write.
KEYS = [(symbol, side) for symbol in (BTC, ETH) for side in PositionSide]


def cid(n: int) -> str:
    return f"grinder_d_{BTC}_1_1704067200_{n}"


def order(n: int, *, created: int = 1_000, **kw: Any) -> ExpectedOrder:
    return ExpectedOrder(
        client_order_id=cid(n),
        symbol=BTC,
        side=Side.BUY,
        qty=Decimal("0.002"),
        price=Decimal("20000.10"),
        created_ts_ms=created,
        updated_ts_ms=created,
        **kw,
    )


@dataclass
class Backend:
    """A store under test, a way to open another reader on what it holds, and its
    heartbeat (whose signature is each backend's own)."""

    store: Any
    open_reader: Callable[[], Any]
    beat: Callable[[], None]

    def reader(self) -> Any:
        """What the backend holds now, as a reader that did not write it sees it."""
        r = self.open_reader()
        if hasattr(r, "refresh"):
            r.refresh()
        return r

    def sync(self) -> None:
        """Bring the store's own view up to date (the mirrored stores)."""
        if hasattr(self.store, "refresh"):
            self.store.refresh()


def _memory(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    store = MemoryExpectedStore(max_orders=MAX, terminal_ttl_ms=TTL)
    return Backend(store, lambda: store, store.heartbeat)


def _sqlite(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    path = tmp_path / "expected.db"
    opened: list[SqliteExpectedStore] = []

    def open_store(**kw: Any) -> SqliteExpectedStore:
        s = SqliteExpectedStore(
            path, max_orders=MAX, terminal_ttl_ms=TTL, synchronous="NORMAL", **kw
        )
        opened.append(s)
        return s

    request.addfinalizer(lambda: [s.close() for s in opened])
    store = open_store(heartbeat_clock=wall_clock_ms)
    return Backend(
        store, lambda: open_store(readonly=True), lambda: store.heartbeat(wall_clock_ms())
    )


def _redis(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    server = request.getfixturevalue("redis_server")
    conns: list[RedisConnection] = []

    def open_store(**kw: Any) -> RedisExpectedStore:
        conn = RedisConnection(server.url, namespace="contract")
        conns.append(conn)
        return RedisExpectedStore(conn, max_orders=MAX, terminal_ttl_ms=TTL, **kw)

    request.addfinalizer(lambda: [c.close() for c in conns])
    store = open_store(bot=True)
    return Backend(store, lambda: open_store(readonly=True), store.heartbeat)


BACKENDS = {"memory": _memory, "sqlite": _sqlite, "redis": _redis}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](tmp_path, request)


def views(b: Backend) -> list[Any]:
    return [b.store, b.reader()]


def held(store: Any, n: int) -> ExpectedOrder:
    o = store.get_order(cid(n))
    assert o is not None, f"{cid(n)} not in {store!r}"
    assert isinstance(o, ExpectedOrder)
    return o


# --- the protocols ---------------------------------------------------------------------------


def test_every_store_has_the_read_and_write_protocol(backend: Backend) -> None:
    for name in (
        "orders",
        "get_order",
        "positions",
        "get_position",
        "record_order",
        "mark_cancel_requested",
        "mark_status",
        "remove_order",
        "set_position",
        "evict_expired",
        "heartbeat",
        "heartbeat_age_s",
    ):
        assert callable(getattr(backend.store, name)), name
    store: ExpectedReadWrite = backend.store  # what adoption and the grid bot are given
    assert len(list(store.orders())) == 0


# --- orders ----------------------------------------------------------------------------------


def test_record_get_and_list_orders(backend: Backend) -> None:
    backend.store.record_order(order(1))
    backend.store.record_order(order(2, created=2_000))
    for view in views(backend):
        assert sorted(o.client_order_id for o in view.orders()) == [cid(1), cid(2)]
        assert held(view, 1) == order(1)
        assert held(view, 2).created_ts_ms == 2_000
        assert held(view, 1).price == Decimal("20000.10")
        assert held(view, 1).expected_open
        assert view.get_order(cid(3)) is None


def test_recording_again_replaces_the_order(backend: Backend) -> None:
    backend.store.record_order(order(1))
    backend.store.record_order(order(1, status=OrderStatus.PARTIALLY_FILLED, created=1_500))
    for view in views(backend):
        assert [o.client_order_id for o in view.orders()] == [cid(1)]
        assert held(view, 1).status is OrderStatus.PARTIALLY_FILLED
        assert held(view, 1).created_ts_ms == 1_500


def test_a_recorded_order_cannot_be_changed_behind_the_store(backend: Backend) -> None:
    mine = order(1)
    backend.store.record_order(mine)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mine.status = OrderStatus.FILLED  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        mine.ended_ts_ms = 5  # type: ignore[misc]
    for view in views(backend):
        o = held(view, 1)
        assert (o.status, o.qty, o.ended_ts_ms) == (OrderStatus.NEW, Decimal("0.002"), None)


def test_booking_replaces_the_stored_order_and_leaves_one_handed_out_before(
    backend: Backend,
) -> None:
    backend.store.record_order(order(1))
    backend.store.record_order(order(2))
    before_1, before_2 = held(backend.store, 1), held(backend.store, 2)
    backend.store.mark_status(cid(1), OrderStatus.FILLED, 3_000)
    backend.store.mark_cancel_requested(cid(2), 3_000)
    assert (before_1.status, before_1.ended_ts_ms) == (OrderStatus.NEW, None)
    assert (before_2.cancel_requested, before_2.ended_ts_ms) == (False, None)
    for view in views(backend):
        assert held(view, 1).status is OrderStatus.FILLED
        assert held(view, 2).cancel_requested


def test_mark_cancel_requested_ends_the_order_at_that_time(backend: Backend) -> None:
    backend.store.record_order(order(1))
    backend.store.mark_cancel_requested(cid(1), 3_000)
    backend.store.mark_cancel_requested(cid(1), 4_000)  # a second cancel: same end
    for view in views(backend):
        o = held(view, 1)
        assert o.cancel_requested
        assert o.status is OrderStatus.NEW
        assert o.ended_ts_ms == 3_000
        assert o.updated_ts_ms == 4_000
        assert not o.expected_open


def test_mark_status_open_keeps_the_order_open(backend: Backend) -> None:
    backend.store.record_order(order(1))
    backend.store.mark_status(cid(1), OrderStatus.PARTIALLY_FILLED, 3_000)
    for view in views(backend):
        o = held(view, 1)
        assert (o.status, o.updated_ts_ms, o.ended_ts_ms) == (
            OrderStatus.PARTIALLY_FILLED,
            3_000,
            None,
        )
        assert o.expected_open


def test_mark_status_terminal_ends_the_order_once(backend: Backend) -> None:
    backend.store.record_order(order(1))
    backend.store.mark_status(cid(1), OrderStatus.FILLED, 3_000)
    backend.store.mark_status(cid(1), OrderStatus.CANCELED, 4_000)
    for view in views(backend):
        o = held(view, 1)
        assert (o.status, o.updated_ts_ms, o.ended_ts_ms) == (OrderStatus.CANCELED, 4_000, 3_000)
        assert not o.cancel_requested


def test_a_status_after_a_cancel_keeps_the_end_of_the_cancel(backend: Backend) -> None:
    backend.store.record_order(order(1))
    backend.store.mark_cancel_requested(cid(1), 3_000)
    backend.store.mark_status(cid(1), OrderStatus.CANCELED, 4_000)
    for view in views(backend):
        o = held(view, 1)
        assert (o.status, o.cancel_requested, o.ended_ts_ms) == (OrderStatus.CANCELED, True, 3_000)


@pytest.mark.parametrize(
    "write",
    [
        lambda s: s.mark_cancel_requested(cid(9), 3_000),
        lambda s: s.mark_status(cid(9), OrderStatus.FILLED, 3_000),
        lambda s: s.mark_status(cid(9), OrderStatus.PARTIALLY_FILLED, 3_000),
    ],
    ids=["cancel", "terminal", "open"],
)
def test_an_unknown_id_raises_unknown_order_and_writes_nothing(
    backend: Backend, write: Callable[[Any], None]
) -> None:
    backend.store.record_order(order(1))
    with pytest.raises(UnknownOrder, match=cid(9)):
        write(backend.store)
    with pytest.raises(KeyError):
        write(backend.store)
    for view in views(backend):
        assert [o.client_order_id for o in view.orders()] == [cid(1)]


def test_remove_order_forgets_it_and_is_idempotent(backend: Backend) -> None:
    backend.store.record_order(order(1))
    backend.store.record_order(order(2))
    backend.store.remove_order(cid(1))
    backend.store.remove_order(cid(1))
    backend.store.remove_order(cid(9))
    for view in views(backend):
        assert [o.client_order_id for o in view.orders()] == [cid(2)]
        assert view.get_order(cid(1)) is None
    with pytest.raises(UnknownOrder):
        backend.store.mark_status(cid(1), OrderStatus.FILLED, 3_000)


# --- positions -------------------------------------------------------------------------------


def test_set_and_get_positions_by_symbol_and_side(backend: Backend) -> None:
    backend.store.set_position(BTC, Decimal("0.004"), 1_000)
    backend.store.set_position(BTC, Decimal("-0.010"), 1_000, PositionSide.SHORT)
    backend.store.set_position(ETH, Decimal("1.5"), 1_000)
    backend.store.set_position(ETH, Decimal("0"), 2_000)  # flat replaces the intent
    for view in views(backend):
        qty = {
            key: (p.qty, p.updated_ts_ms)
            for key in KEYS
            if (p := view.get_position(key)) is not None
        }
        assert qty == {
            (BTC, PositionSide.BOTH): (Decimal("0.004"), 1_000),
            (BTC, PositionSide.SHORT): (Decimal("-0.010"), 1_000),
            (ETH, PositionSide.BOTH): (Decimal("0"), 2_000),
        }
        assert view.get_position((ETH, PositionSide.LONG)) is None
        assert len(list(view.positions())) == 3


# --- bounds: TTL eviction and a full store ---------------------------------------------------


def test_evict_expired_drops_orders_ended_at_or_before_the_ttl_and_keeps_open_ones(
    backend: Backend,
) -> None:
    s = backend.store
    for n in range(1, 4):
        s.record_order(order(n))
    s.mark_status(cid(1), OrderStatus.FILLED, 2_000)
    s.mark_cancel_requested(cid(2), 3_000)
    assert s.evict_expired(2_000 + TTL - 1) == 0
    assert s.evict_expired(2_000 + TTL) == 1
    for view in views(backend):
        assert sorted(o.client_order_id for o in view.orders()) == [cid(2), cid(3)]
    assert s.evict_expired(10**12) == 1
    for view in views(backend):
        assert [o.client_order_id for o in view.orders()] == [cid(3)]


def test_evict_expired_goes_by_end_time_not_by_recording_order(backend: Backend) -> None:
    s = backend.store
    s.record_order(order(1, status=OrderStatus.FILLED, created=5_000))  # ended at 5000
    s.record_order(order(2, status=OrderStatus.FILLED, created=1_000))  # ended at 1000
    assert held(s, 2).ended_ts_ms == 1_000
    assert s.evict_expired(1_000 + TTL) == 1
    for view in views(backend):
        assert [o.client_order_id for o in view.orders()] == [cid(1)]


def test_an_order_recorded_open_again_is_not_evicted_for_its_old_end(backend: Backend) -> None:
    s = backend.store
    s.record_order(order(1))
    s.mark_status(cid(1), OrderStatus.FILLED, 2_000)
    s.record_order(order(1))
    assert s.evict_expired(10**12) == 0
    for view in views(backend):
        assert held(view, 1).expected_open


def test_a_full_store_evicts_the_oldest_end_first_and_refuses_when_all_are_open(
    backend: Backend,
) -> None:
    s = backend.store
    for n in range(1, MAX + 1):
        s.record_order(order(n))
    s.mark_status(cid(3), OrderStatus.FILLED, 3_000)
    s.mark_status(cid(2), OrderStatus.FILLED, 2_000)
    s.record_order(order(5))  # evicts 2 (ended first), not 3 (booked first)
    for view in views(backend):
        assert sorted(o.client_order_id for o in view.orders()) == [
            cid(1),
            cid(3),
            cid(4),
            cid(5),
        ]
    s.record_order(order(6))  # evicts 3
    with pytest.raises(ExpectedStoreFull):
        s.record_order(order(7))
    s.record_order(replace(order(6), status=OrderStatus.PARTIALLY_FILLED))  # held: fine
    for view in views(backend):
        assert sorted(o.client_order_id for o in view.orders()) == [
            cid(1),
            cid(4),
            cid(5),
            cid(6),
        ]


# --- the bot's heartbeat ---------------------------------------------------------------------


def test_a_store_no_bot_wrote_has_no_heartbeat(backend: Backend) -> None:
    assert backend.store.heartbeat_age_s() == math.inf
    assert backend.reader().heartbeat_age_s() == math.inf


def test_the_bot_heartbeat_makes_the_store_live(backend: Backend) -> None:
    backend.beat()
    backend.sync()
    assert backend.store.heartbeat_age_s() < 5
    assert backend.reader().heartbeat_age_s() < 5


def test_a_write_by_the_bot_makes_the_store_live(backend: Backend) -> None:
    backend.store.record_order(order(1))
    backend.sync()
    assert backend.store.heartbeat_age_s() < 5
    assert backend.reader().heartbeat_age_s() < 5
