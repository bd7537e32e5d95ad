"""Expected and observed state stores (CONTRACT §1, §3)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grinder.reconcile.types import (
    ExpectedOrder,
    ObservedOrder,
    ObservedPosition,
    OrderStatus,
    PositionSide,
    Side,
)
from grinder.state.expected import ExpectedStoreFull, MemoryExpectedStore, UnknownOrder
from grinder.state.observed import ObservedStore
from grinder.state.sqlite import SqliteExpectedStore

D = Decimal
BTC = "BTCUSDT"
ETH = "ETHUSDT"
TTL = 10_000


def cid(n: int, symbol: str = BTC) -> str:
    return f"grinder_d_{symbol}_1_1704067200_{n}"


def exp_order(n: int, *, created: int = 0, **kw: object) -> ExpectedOrder:
    symbol = str(kw.pop("symbol", BTC))
    return ExpectedOrder(
        client_order_id=cid(n, symbol),
        symbol=symbol,
        side=Side.BUY,
        qty=D("1"),
        price=D("100"),
        created_ts_ms=created,
        updated_ts_ms=created,
        **kw,  # type: ignore[arg-type]
    )


def obs(
    n: int,
    status: OrderStatus = OrderStatus.NEW,
    *,
    ts: int = 1000,
    seen: int | None = None,
    executed: str = "0",
    symbol: str = BTC,
    qty: str = "3",
) -> ObservedOrder:
    return ObservedOrder(
        client_order_id=cid(n, symbol),
        symbol=symbol,
        side=Side.BUY,
        status=status,
        qty=D(qty),
        executed_qty=D(executed),
        price=D("100"),
        update_ts_ms=ts,
        seen_ts_ms=ts if seen is None else seen,
    )


def pos(
    qty: str,
    *,
    symbol: str = BTC,
    side: PositionSide = PositionSide.BOTH,
    ts: int = 1000,
    seen: int | None = None,
) -> ObservedPosition:
    return ObservedPosition(
        symbol=symbol,
        qty=D(qty),
        position_side=side,
        update_ts_ms=ts,
        seen_ts_ms=ts if seen is None else seen,
    )


def held_order(store: Any, client_order_id: str) -> Any:
    """The store's order with that id; the store must hold it."""
    order = store.get_order(client_order_id)
    assert order is not None, client_order_id
    return order


def held_position(store: Any, key: tuple[str, PositionSide]) -> Any:
    """The store's position under ``key`` (symbol, position side); the store must hold it."""
    position = store.get_position(key)
    assert position is not None, key
    return position


# =============================================================================================
# ExpectedOrder
# =============================================================================================


def test_expected_order_is_open_until_ended() -> None:
    assert exp_order(1).expected_open is True
    assert exp_order(1).ended_ts_ms is None


def test_expected_order_constructed_cancel_requested_or_terminal_has_ended() -> None:
    a = exp_order(1, created=500, cancel_requested=True)
    b = exp_order(2, created=700, status=OrderStatus.FILLED)
    assert (a.expected_open, a.ended_ts_ms) == (False, 500)
    assert (b.expected_open, b.ended_ts_ms) == (False, 700)


def test_expected_order_partially_filled_is_still_open() -> None:
    assert exp_order(1, status=OrderStatus.PARTIALLY_FILLED).expected_open is True


# =============================================================================================
# Write semantics of every expected store (memory, SQLite file)
# =============================================================================================


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryExpectedStore()
    else:
        with SqliteExpectedStore(tmp_path / "expected.db") as store:
            yield store


def test_mark_cancel_requested_ends_order_at_that_time(store: Any) -> None:
    store.record_order(exp_order(1, created=100))
    store.mark_cancel_requested(cid(1), 250)
    order = held_order(store, cid(1))
    assert order.cancel_requested is True
    assert order.ended_ts_ms == 250
    assert order.updated_ts_ms == 250
    assert order.expected_open is False


def test_mark_status_terminal_ends_order_open_status_does_not(store: Any) -> None:
    store.record_order(exp_order(1))
    store.record_order(exp_order(2))
    store.mark_status(cid(1), OrderStatus.PARTIALLY_FILLED, 1500)
    store.mark_status(cid(2), OrderStatus.FILLED, 1600)
    one, two = held_order(store, cid(1)), held_order(store, cid(2))
    assert (one.status, one.ended_ts_ms) == (OrderStatus.PARTIALLY_FILLED, None)
    assert (two.status, two.ended_ts_ms) == (OrderStatus.FILLED, 1600)


def test_second_end_does_not_move_ended_time(store: Any) -> None:
    store.record_order(exp_order(1))
    store.mark_cancel_requested(cid(1), 2000)
    store.mark_status(cid(1), OrderStatus.CANCELED, 3000)
    order = held_order(store, cid(1))
    assert (order.ended_ts_ms, order.updated_ts_ms) == (2000, 3000)
    assert order.status is OrderStatus.CANCELED


# =============================================================================================
# MemoryExpectedStore
# =============================================================================================


def test_expected_store_records_and_reads_orders() -> None:
    store = MemoryExpectedStore()
    store.record_order(exp_order(1))
    store.record_order(exp_order(2))
    assert len(store) == 2
    assert store.get_order(cid(1)) is not None
    assert store.get_order(cid(3)) is None
    assert {o.client_order_id for o in store.orders()} == {cid(1), cid(2)}


def test_expected_store_rejects_non_positive_capacity() -> None:
    with pytest.raises(ValueError, match="max_orders"):
        MemoryExpectedStore(max_orders=0)


def test_cancel_request_for_unknown_order_raises_unknown_order() -> None:
    store = MemoryExpectedStore()
    with pytest.raises(UnknownOrder, match="grinder_d_BTCUSDT_1_1704067200_9"):
        store.mark_cancel_requested(cid(9), 1000)
    assert len(store) == 0


def test_status_for_unknown_order_raises_unknown_order() -> None:
    store = MemoryExpectedStore()
    with pytest.raises(UnknownOrder, match="grinder_d_BTCUSDT_1_1704067200_9"):
        store.mark_status(cid(9), OrderStatus.FILLED, 1000)
    assert len(store) == 0


def test_unknown_order_is_a_key_error() -> None:
    assert issubclass(UnknownOrder, KeyError)


def test_remove_order_is_idempotent() -> None:
    store = MemoryExpectedStore()
    store.record_order(exp_order(1))
    store.remove_order(cid(1))
    store.remove_order(cid(1))
    assert store.get_order(cid(1)) is None
    assert len(store) == 0


def test_ttl_eviction_drops_ended_orders_after_ttl_and_keeps_open_ones() -> None:
    store = MemoryExpectedStore(terminal_ttl_ms=TTL)
    store.record_order(exp_order(1))
    store.record_order(exp_order(2))
    store.record_order(exp_order(3))
    store.mark_cancel_requested(cid(2), 1000)
    store.mark_status(cid(3), OrderStatus.FILLED, 2000)
    assert store.evict_expired(1000 + TTL - 1) == 0
    assert store.evict_expired(1000 + TTL) == 1
    assert store.get_order(cid(2)) is None
    assert store.get_order(cid(3)) is not None
    assert store.evict_expired(2000 + TTL) == 1
    assert store.get_order(cid(3)) is None
    assert store.evict_expired(10**12) == 0
    assert store.get_order(cid(1)) is not None


def test_ttl_eviction_covers_orders_recorded_already_ended() -> None:
    store = MemoryExpectedStore(terminal_ttl_ms=TTL)
    store.record_order(exp_order(1, created=500, status=OrderStatus.REJECTED))
    assert store.evict_expired(500 + TTL) == 1
    assert len(store) == 0


def test_order_rerecorded_as_open_after_ending_is_not_evicted_by_stale_ttl_entry() -> None:
    store = MemoryExpectedStore(terminal_ttl_ms=TTL)
    store.record_order(exp_order(1))
    store.mark_cancel_requested(cid(1), 1000)
    store.record_order(exp_order(1, created=1500))  # same id placed again, live
    assert store.evict_expired(1000 + TTL) == 0
    assert held_order(store, cid(1)).expected_open is True


def test_full_store_evicts_oldest_ended_order_first() -> None:
    store = MemoryExpectedStore(max_orders=3, terminal_ttl_ms=10**9)
    for n in (1, 2, 3):
        store.record_order(exp_order(n))
    store.mark_cancel_requested(cid(3), 1000)
    store.mark_cancel_requested(cid(2), 2000)
    store.record_order(exp_order(4))
    assert len(store) == 3
    assert store.get_order(cid(3)) is None  # ended first, evicted first
    assert store.get_order(cid(2)) is not None
    assert store.get_order(cid(1)) is not None
    assert store.get_order(cid(4)) is not None
    store.record_order(exp_order(5))
    assert store.get_order(cid(2)) is None
    assert {o.client_order_id for o in store.orders()} == {cid(1), cid(4), cid(5)}


def test_full_store_of_open_orders_raises_and_keeps_every_open_order() -> None:
    store = MemoryExpectedStore(max_orders=3)
    for n in (1, 2, 3):
        store.record_order(exp_order(n))
    with pytest.raises(ExpectedStoreFull) as info:
        store.record_order(exp_order(4))
    assert "max_orders=3" in str(info.value)
    assert cid(4) in str(info.value)
    assert len(store) == 3
    assert {o.client_order_id for o in store.orders()} == {cid(1), cid(2), cid(3)}
    assert store.get_order(cid(4)) is None


def test_full_store_with_only_stale_ended_entries_still_refuses() -> None:
    store = MemoryExpectedStore(max_orders=2)
    store.record_order(exp_order(1))
    store.record_order(exp_order(2))
    store.mark_cancel_requested(cid(1), 1000)
    store.record_order(exp_order(1, created=1100))  # re-placed: open again
    with pytest.raises(ExpectedStoreFull):
        store.record_order(exp_order(3))
    assert {o.client_order_id for o in store.orders()} == {cid(1), cid(2)}


def test_full_store_accepts_update_of_an_order_it_already_holds() -> None:
    store = MemoryExpectedStore(max_orders=2)
    store.record_order(exp_order(1))
    store.record_order(exp_order(2))
    store.record_order(exp_order(2, created=5000))
    assert held_order(store, cid(2)).created_ts_ms == 5000
    assert len(store) == 2


def test_expected_store_full_is_a_runtime_error() -> None:
    assert issubclass(ExpectedStoreFull, RuntimeError)


def test_expected_positions_keyed_by_symbol_and_side() -> None:
    store = MemoryExpectedStore()
    store.set_position(BTC, D("1"), 1000, PositionSide.LONG)
    store.set_position(BTC, D("-2"), 1100, PositionSide.SHORT)
    store.set_position(ETH, D("0.5"), 1200)
    long_ = held_position(store, (BTC, PositionSide.LONG))
    short = held_position(store, (BTC, PositionSide.SHORT))
    assert (long_.qty, long_.updated_ts_ms) == (D("1"), 1000)
    assert (short.qty, short.updated_ts_ms) == (D("-2"), 1100)
    assert held_position(store, (ETH, PositionSide.BOTH)).qty == D("0.5")
    assert store.get_position((BTC, PositionSide.BOTH)) is None
    assert len(list(store.positions())) == 3


def test_set_position_replaces_previous_intent() -> None:
    store = MemoryExpectedStore()
    store.set_position(BTC, D("1"), 1000)
    store.set_position(BTC, D("0"), 2000)
    p = held_position(store, (BTC, PositionSide.BOTH))
    assert (p.qty, p.updated_ts_ms) == (D("0"), 2000)


# =============================================================================================
# ObservedStore: orders, events
# =============================================================================================


def test_apply_order_new_order_is_open() -> None:
    store = ObservedStore()
    assert store.apply_order(obs(1)) is True
    assert list(store.open_order_ids()) == [cid(1)]
    assert held_order(store, cid(1)).status is OrderStatus.NEW


def test_filled_then_late_new_stays_filled() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, OrderStatus.FILLED, ts=2000, executed="3"))
    assert store.apply_order(obs(1, OrderStatus.NEW, ts=1000)) is False
    assert held_order(store, cid(1)).status is OrderStatus.FILLED
    assert list(store.open_orders()) == []


def test_terminal_order_ignores_even_newer_reports() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, OrderStatus.CANCELED, ts=2000))
    assert store.apply_order(obs(1, OrderStatus.FILLED, ts=3000, executed="3")) is False
    assert store.apply_order(obs(1, OrderStatus.NEW, ts=4000)) is False
    assert held_order(store, cid(1)).status is OrderStatus.CANCELED


def test_duplicate_event_is_rejected_and_not_marked_dirty() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, OrderStatus.PARTIALLY_FILLED, ts=1000, executed="1"))
    store.drain_dirty()
    assert store.apply_order(obs(1, OrderStatus.PARTIALLY_FILLED, ts=1000, executed="1")) is False
    assert store.drain_dirty() == (set(), set())


def test_partial_fills_only_increase_executed_qty() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, OrderStatus.PARTIALLY_FILLED, ts=1000, executed="1"))
    store.apply_order(obs(1, OrderStatus.PARTIALLY_FILLED, ts=3000, executed="2"))
    # older, lower fill delivered late
    assert store.apply_order(obs(1, OrderStatus.PARTIALLY_FILLED, ts=2000, executed="1.5")) is False
    # newer timestamp but lower executed qty: not progress
    assert store.apply_order(obs(1, OrderStatus.PARTIALLY_FILLED, ts=4000, executed="1")) is False
    assert held_order(store, cid(1)).executed_qty == D("2")


def test_equal_timestamp_partial_fills_keep_the_larger_executed_qty() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, OrderStatus.PARTIALLY_FILLED, ts=1000, executed="2"))
    assert store.apply_order(obs(1, OrderStatus.PARTIALLY_FILLED, ts=1000, executed="1")) is False
    assert store.apply_order(obs(1, OrderStatus.PARTIALLY_FILLED, ts=1000, executed="2.5")) is True
    assert held_order(store, cid(1)).executed_qty == D("2.5")


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PARTIALLY_FILLED),
        (OrderStatus.PARTIALLY_FILLED, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED),
        (OrderStatus.NEW, OrderStatus.CANCELED, OrderStatus.CANCELED),
        (OrderStatus.CANCELED, OrderStatus.NEW, OrderStatus.CANCELED),
        (OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.FILLED),
        (OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED),
        (OrderStatus.NEW, OrderStatus.EXPIRED, OrderStatus.EXPIRED),
    ],
)
def test_equal_timestamps_are_decided_by_status_rank(
    first: OrderStatus, second: OrderStatus, winner: OrderStatus
) -> None:
    def executed(s: OrderStatus) -> str:
        return {OrderStatus.PARTIALLY_FILLED: "1", OrderStatus.FILLED: "3"}.get(s, "0")

    store = ObservedStore()
    store.apply_order(obs(1, first, ts=5000, executed=executed(first)))
    store.apply_order(obs(1, second, ts=5000, executed=executed(second)))
    assert held_order(store, cid(1)).status is winner
    assert (cid(1) in set(store.open_order_ids())) is winner.is_open


def test_newer_timestamp_with_lower_rank_does_not_regress() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, OrderStatus.PARTIALLY_FILLED, ts=1000, executed="1"))
    assert store.apply_order(obs(1, OrderStatus.NEW, ts=2000)) is False
    assert held_order(store, cid(1)).status is OrderStatus.PARTIALLY_FILLED


def test_newer_same_status_update_replaces_for_amendments() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, ts=1000))
    amended = replace(obs(1, ts=2000), price=D("101"))
    assert store.apply_order(amended) is True
    assert held_order(store, cid(1)).price == D("101")


def test_terminal_update_removes_from_open_set_but_keeps_order() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, ts=1000))
    store.apply_order(obs(1, OrderStatus.FILLED, ts=2000, executed="3"))
    assert list(store.open_orders()) == []
    assert held_order(store, cid(1)).status is OrderStatus.FILLED
    assert [o.client_order_id for o in store] == [cid(1)]


def test_duplicated_new_event_after_snapshot_showed_order_gone_does_not_reopen_it() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, ts=1000, seen=1000))
    assert store.apply_open_orders_snapshot([], sent_ts_ms=2000) == 1
    store.apply_order(obs(1, ts=1000, seen=2100))  # the same NEW event, redelivered
    assert cid(1) not in set(store.open_order_ids())


# =============================================================================================
# ObservedStore: snapshot authority
# =============================================================================================


def test_snapshot_adds_its_orders_as_open_and_records_time() -> None:
    store = ObservedStore()
    assert store.has_snapshot() is False
    gone = store.apply_open_orders_snapshot([obs(1, ts=900, seen=0), obs(2, ts=900, seen=0)], 1000)
    assert gone == 0
    assert set(store.open_order_ids()) == {cid(1), cid(2)}
    assert store.has_snapshot() is True
    assert store.last_order_snapshot_ms == 1000
    got = held_order(store, cid(1))
    assert got.seen_ts_ms == 1000  # a snapshot row is known as of the request time


def test_order_in_older_snapshot_absent_from_newer_one_does_not_linger() -> None:
    store = ObservedStore()
    store.apply_open_orders_snapshot([obs(1, ts=500, seen=0), obs(2, ts=500, seen=0)], 1000)
    gone = store.apply_open_orders_snapshot([obs(2, ts=500, seen=0)], 2000)
    assert gone == 1
    assert set(store.open_order_ids()) == {cid(2)}
    assert store.get_order(cid(1)) is None


def test_order_present_in_successive_snapshots_stays_then_goes_when_absent() -> None:
    store = ObservedStore()
    store.apply_open_orders_snapshot([obs(1, ts=500, seen=0)], 1000)
    store.apply_open_orders_snapshot([obs(1, ts=500, seen=0)], 2000)
    assert set(store.open_order_ids()) == {cid(1)}
    assert store.apply_open_orders_snapshot([], 3000) == 1
    assert list(store.open_order_ids()) == []


def test_order_first_learned_after_snapshot_request_survives_that_snapshot() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, ts=1500, seen=1500))  # stream NEW while the request was in flight
    gone = store.apply_open_orders_snapshot([], sent_ts_ms=1000)
    assert gone == 0
    assert set(store.open_order_ids()) == {cid(1)}


def test_order_learned_at_exactly_request_time_is_governed_by_the_snapshot() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, ts=1000, seen=1000))
    assert store.apply_open_orders_snapshot([], sent_ts_ms=1000) == 1
    assert store.get_order(cid(1)) is None


def test_later_stream_event_keeps_an_older_order_alive_through_snapshot() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, ts=500, seen=500))
    store.apply_order(obs(1, OrderStatus.PARTIALLY_FILLED, ts=1500, seen=1500, executed="1"))
    assert store.apply_open_orders_snapshot([], sent_ts_ms=1000) == 0
    assert held_order(store, cid(1)).status is OrderStatus.PARTIALLY_FILLED


def test_stream_event_newer_than_snapshot_wins_over_snapshot_row() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, OrderStatus.FILLED, ts=1500, seen=1500, executed="3"))
    store.apply_open_orders_snapshot([obs(1, ts=900, seen=0)], sent_ts_ms=1000)
    assert held_order(store, cid(1)).status is OrderStatus.FILLED
    assert list(store.open_order_ids()) == []


def test_snapshot_row_with_progress_updates_stored_order() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, ts=500, seen=500))
    store.apply_open_orders_snapshot(
        [obs(1, OrderStatus.PARTIALLY_FILLED, ts=900, seen=0, executed="2")], 1000
    )
    assert held_order(store, cid(1)).executed_qty == D("2")


def test_per_symbol_snapshot_leaves_other_symbols_alone() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, ts=500, symbol=BTC))
    store.apply_order(obs(2, ts=500, symbol=ETH))
    gone = store.apply_open_orders_snapshot([], sent_ts_ms=1000, symbols=[BTC])
    assert gone == 1
    assert set(store.open_order_ids()) == {cid(2, ETH)}


def test_all_symbols_snapshot_clears_every_symbol() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, ts=500, symbol=BTC))
    store.apply_order(obs(2, ts=500, symbol=ETH))
    assert store.apply_open_orders_snapshot([], sent_ts_ms=1000) == 2
    assert list(store.open_order_ids()) == []


def test_snapshot_does_not_remove_terminal_orders() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, OrderStatus.FILLED, ts=500, executed="3"))
    assert store.apply_open_orders_snapshot([], sent_ts_ms=1000) == 0
    assert held_order(store, cid(1)).status is OrderStatus.FILLED


def test_older_snapshot_response_does_not_move_snapshot_time_back() -> None:
    store = ObservedStore()
    store.apply_open_orders_snapshot([], 5000)
    store.apply_open_orders_snapshot([], 4000)
    assert store.last_order_snapshot_ms == 5000


def test_snapshot_age_is_that_of_the_older_snapshot() -> None:
    store = ObservedStore()
    assert store.snapshot_age_ms(10_000) is None
    store.apply_open_orders_snapshot([], 5000)
    assert store.snapshot_age_ms(10_000) is None
    store.apply_positions_snapshot([], 3000)
    assert store.snapshot_age_ms(10_000) == 7000


def test_order_missed_by_one_snapshot_is_back_when_a_later_snapshot_lists_it() -> None:
    store = ObservedStore()
    store.apply_open_orders_snapshot([obs(1, ts=1000, seen=0)], sent_ts_ms=2000)
    assert store.apply_open_orders_snapshot([], sent_ts_ms=3000) == 1
    # The same row (same exchange update time) in a snapshot sent after the one
    # that missed it: the exchange has the order.
    store.apply_open_orders_snapshot([obs(1, ts=1000, seen=0)], sent_ts_ms=4000)
    assert set(store.open_order_ids()) == {cid(1)}
    back = held_order(store, cid(1))
    assert (back.status, back.update_ts_ms, back.seen_ts_ms) == (OrderStatus.NEW, 1000, 4000)
    assert store.drain_dirty()[0] == {cid(1)}


def test_a_late_event_from_before_the_snapshot_that_showed_the_order_gone_does_not_revive_it() -> (
    None
):
    """Cancelled at 2900 with its event lost; the snapshot sent at 3000 shows it gone; a
    fill event of 2000 arrives late: the order stays gone (no orphan to cancel). A later
    event, or its ending, is still taken."""
    store = ObservedStore()
    store.apply_order(obs(1, ts=1000, seen=1000))
    store.apply_open_orders_snapshot([], sent_ts_ms=3000)
    late = obs(1, OrderStatus.PARTIALLY_FILLED, ts=2000, seen=3100, executed="1")
    assert store.apply_order(late) is False
    assert set(store.open_order_ids()) == set()
    ended = obs(1, OrderStatus.FILLED, ts=2950, seen=3200, executed="3")
    assert store.apply_order(ended) is True
    assert held_order(store, cid(1)).status is OrderStatus.FILLED
    assert set(store.open_order_ids()) == set()


def test_an_event_after_the_snapshot_that_showed_the_order_gone_brings_it_back() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, ts=1000, seen=1000))
    store.apply_open_orders_snapshot([], sent_ts_ms=3000)
    later = obs(1, OrderStatus.PARTIALLY_FILLED, ts=3500, seen=3600, executed="1")
    assert store.apply_order(later) is True
    assert set(store.open_order_ids()) == {cid(1)}


def test_order_query_sent_after_the_snapshot_that_missed_it_brings_it_back() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, ts=1000, seen=1000))
    store.apply_open_orders_snapshot([], sent_ts_ms=3000)
    assert store.apply_order(obs(1, ts=1000, seen=3500), read_sent_ts_ms=3500) is True
    assert set(store.open_order_ids()) == {cid(1)}


def test_snapshot_sent_before_the_one_that_missed_the_order_does_not_bring_it_back() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, ts=1000, seen=1000))
    store.apply_open_orders_snapshot([], sent_ts_ms=3000)
    # an older snapshot's response, applied late; and one sent at the very same time
    store.apply_open_orders_snapshot([obs(1, ts=1000, seen=0)], sent_ts_ms=2500)
    store.apply_open_orders_snapshot([obs(1, ts=1000, seen=0)], sent_ts_ms=3000)
    assert list(store.open_order_ids()) == []
    assert store.get_order(cid(1)) is None


def test_order_ended_by_stream_is_not_reopened_by_a_snapshot_sent_before_the_event() -> None:
    store = ObservedStore()
    store.apply_open_orders_snapshot([obs(1, ts=1000, seen=0)], sent_ts_ms=2000)
    store.apply_open_orders_snapshot([], sent_ts_ms=3000)
    store.apply_order(obs(1, OrderStatus.CANCELED, ts=3500, seen=3500))
    # sent after the snapshot that missed it, but before the cancel was learned
    store.apply_open_orders_snapshot([obs(1, ts=1000, seen=0)], sent_ts_ms=3200)
    assert held_order(store, cid(1)).status is OrderStatus.CANCELED
    assert list(store.open_order_ids()) == []
    # a terminal order never changes again, whatever a later read says
    store.apply_open_orders_snapshot([obs(1, ts=1000, seen=0)], sent_ts_ms=5000)
    assert held_order(store, cid(1)).status is OrderStatus.CANCELED
    assert list(store.open_order_ids()) == []


def test_later_snapshot_row_older_than_the_last_report_reopens_with_that_report() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, OrderStatus.PARTIALLY_FILLED, ts=1500, seen=1500, executed="1"))
    store.apply_open_orders_snapshot([], sent_ts_ms=2000)
    store.apply_open_orders_snapshot([obs(1, ts=1000, seen=0)], sent_ts_ms=3000)
    back = held_order(store, cid(1))
    assert (back.status, back.executed_qty, back.update_ts_ms) == (
        OrderStatus.PARTIALLY_FILLED,
        D("1"),
        1500,
    )
    assert back.seen_ts_ms == 3000
    assert set(store.open_order_ids()) == {cid(1)}


def test_later_snapshot_row_that_ended_the_vanished_order_is_adopted() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, ts=1000, seen=1000))
    store.apply_open_orders_snapshot([], sent_ts_ms=2000)
    store.apply_order(obs(1, OrderStatus.EXPIRED, ts=900, seen=3000), read_sent_ts_ms=3000)
    assert held_order(store, cid(1)).status is OrderStatus.EXPIRED
    assert list(store.open_order_ids()) == []


def test_order_back_from_a_snapshot_goes_again_when_a_later_one_misses_it() -> None:
    store = ObservedStore(terminal_ttl_ms=TTL)
    store.apply_open_orders_snapshot([obs(1, ts=1000, seen=0)], sent_ts_ms=2000)
    store.apply_open_orders_snapshot([], sent_ts_ms=3000)
    store.apply_open_orders_snapshot([obs(1, ts=1000, seen=0)], sent_ts_ms=4000)
    assert store.apply_open_orders_snapshot([], sent_ts_ms=5000) == 1
    # the first disappearance's expiry does not drop the record of the second
    assert store.evict_expired(3000 + TTL) == 0
    store.apply_order(obs(1, ts=1000, seen=5100))  # a late duplicate stream event
    assert list(store.open_order_ids()) == []
    assert store.evict_expired(5000 + TTL) == 1
    assert store.apply_open_orders_snapshot([], sent_ts_ms=6000) == 0


def test_forget_order_removes_it_everywhere() -> None:
    store = ObservedStore()
    store.apply_order(obs(1))
    store.forget_order(cid(1))
    assert store.get_order(cid(1)) is None
    assert list(store.open_orders()) == []


# =============================================================================================
# ObservedStore: dirty tracking and eviction
# =============================================================================================


def test_drain_dirty_reports_changed_orders_and_positions_once() -> None:
    store = ObservedStore()
    store.apply_order(obs(1))
    store.apply_position(pos("1"))
    orders, positions = store.drain_dirty()
    assert orders == {cid(1)}
    assert positions == {(BTC, PositionSide.BOTH)}
    assert store.drain_dirty() == (set(), set())


def test_snapshot_removal_marks_order_dirty() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, ts=500))
    store.drain_dirty()
    store.apply_open_orders_snapshot([], 1000)
    assert store.drain_dirty()[0] == {cid(1)}


def test_stale_event_does_not_mark_dirty() -> None:
    store = ObservedStore()
    store.apply_order(obs(1, OrderStatus.FILLED, ts=2000, executed="3"))
    store.drain_dirty()
    store.apply_order(obs(1, ts=1000))
    assert store.drain_dirty() == (set(), set())


def test_position_with_unchanged_qty_is_not_dirty() -> None:
    store = ObservedStore()
    store.apply_position(pos("1", ts=1000))
    store.drain_dirty()
    store.apply_position(pos("1", ts=2000))
    assert store.drain_dirty() == (set(), set())


def test_evict_expired_drops_terminal_orders_after_ttl_only() -> None:
    store = ObservedStore(terminal_ttl_ms=TTL)
    store.apply_order(obs(1, ts=1000))
    store.apply_order(obs(2, OrderStatus.FILLED, ts=1000, executed="3"))
    store.apply_order(obs(3, OrderStatus.CANCELED, ts=3000))
    assert store.evict_expired(1000 + TTL - 1) == 0
    assert store.evict_expired(1000 + TTL) == 1
    assert store.get_order(cid(2)) is None
    assert store.get_order(cid(3)) is not None
    assert store.evict_expired(10**12) == 1
    assert store.get_order(cid(3)) is None
    assert store.get_order(cid(1)) is not None  # open orders are never evicted
    assert set(store.open_order_ids()) == {cid(1)}


# =============================================================================================
# ObservedStore: positions
# =============================================================================================


def test_positions_keyed_by_symbol_and_position_side() -> None:
    store = ObservedStore()
    store.apply_position(pos("1", side=PositionSide.LONG))
    store.apply_position(pos("-2", side=PositionSide.SHORT))
    store.apply_position(pos("3", symbol=ETH))
    assert held_position(store, (BTC, PositionSide.LONG)).qty == D("1")
    assert held_position(store, (BTC, PositionSide.SHORT)).qty == D("-2")
    assert store.get_position((BTC, PositionSide.BOTH)) is None
    assert held_position(store, (ETH, PositionSide.BOTH)).qty == D("3")


def test_hedge_long_update_does_not_touch_short() -> None:
    store = ObservedStore()
    store.apply_position(pos("1", side=PositionSide.LONG, ts=1000))
    store.apply_position(pos("-1", side=PositionSide.SHORT, ts=1000))
    store.apply_position(pos("0", side=PositionSide.LONG, ts=2000))
    assert held_position(store, (BTC, PositionSide.SHORT)).qty == D("-1")


def test_stale_position_report_is_ignored() -> None:
    store = ObservedStore()
    store.apply_position(pos("2", ts=2000))
    assert store.apply_position(pos("1", ts=1000)) is False
    assert held_position(store, (BTC, PositionSide.BOTH)).qty == D("2")


def test_changed_ts_tracks_last_quantity_change_only() -> None:
    store = ObservedStore()
    store.apply_position(pos("1", ts=1000))
    store.apply_position(pos("1", ts=2000))  # same qty: no change
    p = held_position(store, (BTC, PositionSide.BOTH))
    assert p.changed_ts_ms == 1000
    store.apply_position(pos("2", ts=3000))
    p = held_position(store, (BTC, PositionSide.BOTH))
    assert p.changed_ts_ms == 3000


def test_changed_ts_falls_back_to_seen_time_without_exchange_time() -> None:
    store = ObservedStore()
    store.apply_position(pos("1", ts=0, seen=4200))
    assert held_position(store, (BTC, PositionSide.BOTH)).changed_ts_ms == 4200


def test_position_snapshot_zeroes_positions_it_omits() -> None:
    store = ObservedStore()
    store.apply_position(pos("1", ts=500))
    store.apply_position(pos("2", symbol=ETH, ts=500))
    store.drain_dirty()
    store.apply_positions_snapshot([pos("2", symbol=ETH, ts=500, seen=0)], sent_ts_ms=1000)
    assert held_position(store, (BTC, PositionSide.BOTH)).qty == D("0")
    assert held_position(store, (ETH, PositionSide.BOTH)).qty == D("2")
    assert store.drain_dirty()[1] == {(BTC, PositionSide.BOTH)}
    assert store.last_position_snapshot_ms == 1000


def test_position_snapshot_zeroes_absent_hedge_side_only() -> None:
    store = ObservedStore()
    store.apply_position(pos("1", side=PositionSide.LONG, ts=500))
    store.apply_position(pos("-1", side=PositionSide.SHORT, ts=500))
    store.apply_positions_snapshot([pos("1", side=PositionSide.LONG, ts=500, seen=0)], 1000)
    assert held_position(store, (BTC, PositionSide.LONG)).qty == D("1")
    assert held_position(store, (BTC, PositionSide.SHORT)).qty == D("0")


def test_position_snapshot_scope_leaves_other_symbols_alone() -> None:
    store = ObservedStore()
    store.apply_position(pos("1", ts=500))
    store.apply_position(pos("2", symbol=ETH, ts=500))
    store.apply_positions_snapshot([], sent_ts_ms=1000, symbols=[BTC])
    assert held_position(store, (BTC, PositionSide.BOTH)).qty == D("0")
    assert held_position(store, (ETH, PositionSide.BOTH)).qty == D("2")


def test_position_learned_after_snapshot_request_is_not_zeroed() -> None:
    store = ObservedStore()
    store.apply_position(pos("1", ts=1500, seen=1500))
    store.apply_positions_snapshot([], sent_ts_ms=1000)
    assert held_position(store, (BTC, PositionSide.BOTH)).qty == D("1")


def test_position_snapshot_row_sets_quantity_and_mark_price() -> None:
    store = ObservedStore()
    row = replace(pos("0.5", ts=900, seen=0), mark_price=D("42000"))
    store.apply_positions_snapshot([row], sent_ts_ms=1000)
    p = held_position(store, (BTC, PositionSide.BOTH))
    assert p.qty == D("0.5")
    assert p.seen_ts_ms == 1000
    assert store.mark_price(BTC) == D("42000")
    assert store.mark_price(ETH) is None


def test_duplicated_position_event_after_snapshot_zeroed_it_does_not_resurrect() -> None:
    store = ObservedStore()
    store.apply_position(pos("1", ts=1000, seen=1000))
    store.apply_positions_snapshot([], sent_ts_ms=2000)
    store.apply_position(pos("1", ts=1000, seen=2100))  # the same ACCOUNT_UPDATE again
    assert held_position(store, (BTC, PositionSide.BOTH)).qty == D("0")


def test_position_missed_by_one_snapshot_is_back_when_a_later_snapshot_lists_it() -> None:
    store = ObservedStore()
    store.apply_positions_snapshot([pos("0.5", ts=1000, seen=0)], sent_ts_ms=2000)
    store.apply_positions_snapshot([], sent_ts_ms=3000)
    assert held_position(store, (BTC, PositionSide.BOTH)).qty == D("0")
    store.drain_dirty()
    store.apply_positions_snapshot([pos("0.5", ts=1000, seen=0)], sent_ts_ms=4000)
    back = held_position(store, (BTC, PositionSide.BOTH))
    assert (back.qty, back.update_ts_ms, back.seen_ts_ms) == (D("0.5"), 1000, 4000)
    assert back.changed_ts_ms == 1000  # the exchange's own update time
    assert store.drain_dirty()[1] == {(BTC, PositionSide.BOTH)}


def test_position_snapshot_sent_before_the_one_that_zeroed_it_does_not_undo_the_zero() -> None:
    store = ObservedStore()
    store.apply_position(pos("0.5", ts=1000, seen=1000))
    store.apply_positions_snapshot([], sent_ts_ms=3000)
    store.apply_positions_snapshot([pos("0.5", ts=1000, seen=0)], sent_ts_ms=2500)
    store.apply_positions_snapshot([pos("0.5", ts=1000, seen=0)], sent_ts_ms=3000)
    assert held_position(store, (BTC, PositionSide.BOTH)).qty == D("0")


def test_later_position_row_older_than_a_stream_report_stays_ignored() -> None:
    store = ObservedStore()
    store.apply_position(pos("0.5", ts=1000, seen=1000))
    store.apply_positions_snapshot([], sent_ts_ms=2000)
    store.apply_positions_snapshot([pos("0.7", ts=900, seen=0)], sent_ts_ms=3000)
    assert held_position(store, (BTC, PositionSide.BOTH)).qty == D("0")


def test_stream_report_after_the_zero_outranks_a_later_snapshots_older_row() -> None:
    store = ObservedStore()
    store.apply_position(pos("0.5", ts=1000, seen=1000))
    store.apply_positions_snapshot([], sent_ts_ms=2000)
    store.apply_position(pos("0", ts=2500, seen=2500))  # the close, reported by the stream
    store.apply_positions_snapshot([pos("0.5", ts=1000, seen=0)], sent_ts_ms=4000)
    assert held_position(store, (BTC, PositionSide.BOTH)).qty == D("0")


def test_duplicated_position_event_after_a_snapshot_zeroed_it_again_does_not_resurrect() -> None:
    store = ObservedStore()
    store.apply_positions_snapshot([pos("1", ts=1000, seen=0)], sent_ts_ms=2000)
    store.apply_positions_snapshot([], sent_ts_ms=3000)
    store.apply_positions_snapshot([pos("1", ts=1000, seen=0)], sent_ts_ms=4000)
    store.apply_positions_snapshot([], sent_ts_ms=5000)
    store.apply_position(pos("1", ts=1000, seen=5100))
    assert held_position(store, (BTC, PositionSide.BOTH)).qty == D("0")


# =============================================================================================
# Property: event order does not matter
# =============================================================================================


@st.composite
def order_histories(draw: st.DrawFn) -> list[ObservedOrder]:
    """A realistic progression: NEW, amendments/partial fills, optionally a terminal end."""
    qty = 10
    ts = draw(st.integers(min_value=1, max_value=10_000))
    events = [obs(1, OrderStatus.NEW, ts=ts, qty=str(qty))]
    executed = 0
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        ts += draw(st.integers(min_value=0, max_value=50))
        if executed < qty - 1 and draw(st.booleans()):
            executed += draw(st.integers(min_value=1, max_value=qty - 1 - executed))
            events.append(
                replace(
                    events[-1],
                    status=OrderStatus.PARTIALLY_FILLED,
                    executed_qty=D(executed),
                    update_ts_ms=ts,
                    seen_ts_ms=ts,
                )
            )
        else:
            ts += 1  # a same-status amendment always carries a newer update time
            prev = events[-1]
            events.append(replace(prev, update_ts_ms=ts, seen_ts_ms=ts, price=D(100 + ts)))
    end = draw(
        st.sampled_from(
            [
                None,
                OrderStatus.FILLED,
                OrderStatus.CANCELED,
                OrderStatus.EXPIRED,
                OrderStatus.REJECTED,
            ]
        )
    )
    if end is not None:
        ts += draw(st.integers(min_value=0, max_value=50))
        done = qty if end is OrderStatus.FILLED else executed
        events.append(
            replace(events[-1], status=end, executed_qty=D(done), update_ts_ms=ts, seen_ts_ms=ts)
        )
    return events


def _state(store: ObservedStore) -> tuple[object, ...]:
    o = held_order(store, cid(1))
    return (
        o.status,
        o.executed_qty,
        o.update_ts_ms,
        o.price,
        cid(1) in set(store.open_order_ids()),
    )


@given(data=st.data(), history=order_histories())
def test_property_any_permutation_with_duplicates_ends_in_the_in_order_state(
    data: st.DataObject, history: list[ObservedOrder]
) -> None:
    in_order = ObservedStore()
    for event in history:
        in_order.apply_order(replace(event))

    extra = data.draw(st.lists(st.sampled_from(history), max_size=len(history)))
    shuffled = data.draw(st.permutations(history + extra))
    scrambled = ObservedStore()
    for event in shuffled:
        scrambled.apply_order(replace(event))

    assert _state(scrambled) == _state(in_order)
    last = history[-1]
    assert _state(in_order)[:3] == (last.status, last.executed_qty, last.update_ts_ms)


# =============================================================================================
# Property: the latest snapshot decides, late duplicates do not
# =============================================================================================


@st.composite
def snapshot_histories(draw: st.DrawFn) -> list[tuple[str, int, bool, bool]]:
    """Steps at rising local times: a snapshot (listing the order and the position or
    not, the exchange's rows unchanged) or a redelivered copy of the stream events."""
    steps = []
    t = 1000
    for _ in range(draw(st.integers(min_value=1, max_value=12))):
        t += draw(st.integers(min_value=1, max_value=500))
        kind = draw(st.sampled_from(["snapshot", "snapshot", "duplicate"]))
        steps.append((kind, t, draw(st.booleans()), draw(st.booleans())))
    return steps


@given(steps=snapshot_histories())
def test_property_the_latest_snapshot_decides_and_duplicates_change_nothing(
    steps: list[tuple[str, int, bool, bool]],
) -> None:
    store = ObservedStore()
    key = (BTC, PositionSide.BOTH)
    store.apply_order(obs(1, ts=1000, seen=1000))  # NEW, from the stream
    store.apply_position(pos("0.5", ts=1000, seen=1000))  # ACCOUNT_UPDATE, from the stream
    order_listed = position_listed = True
    for kind, t, lists_order, lists_position in steps:
        if kind == "snapshot":
            order_rows = [obs(1, ts=1000, seen=0)] if lists_order else []
            position_rows = [pos("0.5", ts=1000, seen=0)] if lists_position else []
            store.apply_open_orders_snapshot(order_rows, sent_ts_ms=t)
            store.apply_positions_snapshot(position_rows, sent_ts_ms=t)
            order_listed, position_listed = lists_order, lists_position
        else:
            store.apply_order(obs(1, ts=1000, seen=t))
            store.apply_position(pos("0.5", ts=1000, seen=t))
        assert (cid(1) in set(store.open_order_ids())) is order_listed
        assert held_position(store, key).qty == (D("0.5") if position_listed else D("0"))
