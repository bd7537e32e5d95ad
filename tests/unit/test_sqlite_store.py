"""SqliteExpectedStore (the file-backed expected store, its incremental mirror) and the
ExpectedRecorder API bots write it through."""

from __future__ import annotations

import dataclasses
import math
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grinder.clock import ManualClock
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.engine import ReconcileEngine
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
from grinder.state.recorder import ExpectedRecorder
from grinder.state.sqlite import (
    APPLICATION,
    SCHEMA_VERSION,
    ExpectedStoreError,
    SqliteExpectedStore,
)

D = Decimal
BTC = "BTCUSDT"
ETH = "ETHUSDT"
TTL = 10_000
BOTH = PositionSide.BOTH


def cid(n: int, symbol: str = BTC) -> str:
    return f"grinder_d_{symbol}_1_1704067200_{n}"


def exp_order(n: int, *, created: int = 0, **kw: Any) -> ExpectedOrder:
    symbol = str(kw.pop("symbol", BTC))
    return ExpectedOrder(
        client_order_id=cid(n, symbol),
        symbol=symbol,
        side=kw.pop("side", Side.BUY),
        qty=kw.pop("qty", D("1")),
        price=kw.pop("price", D("100")),
        created_ts_ms=created,
        updated_ts_ms=created,
        **kw,
    )


def order_state(o: ExpectedOrder) -> tuple[object, ...]:
    """Every field, Decimals by their exact text (so 1.0 != 1.00)."""
    return tuple(
        str(v) if isinstance(v, Decimal) else v
        for v in (getattr(o, f.name) for f in dataclasses.fields(o))
    )


def store_state(store: Any) -> tuple[dict[str, tuple[object, ...]], dict[Any, tuple[str, int]]]:
    orders = {o.client_order_id: order_state(o) for o in store.orders()}
    positions = {p.key: (str(p.qty), p.updated_ts_ms) for p in store.positions()}
    return orders, positions


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "expected.db"


@pytest.fixture
def store(db: Path) -> Any:
    s = SqliteExpectedStore(db, terminal_ttl_ms=TTL)
    yield s
    s.close()


def reopen(db: Path, **kw: Any) -> SqliteExpectedStore:
    return SqliteExpectedStore(db, terminal_ttl_ms=TTL, **kw)


# --- opening and schema ------------------------------------------------------------------


def test_new_file_gets_versioned_schema_in_wal_mode(store: SqliteExpectedStore, db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    assert meta["application"] == APPLICATION
    assert meta["schema_version"] == SCHEMA_VERSION == 1
    assert mode == "wal"
    assert len(store) == 0
    assert store.last_seq == 0


def test_writer_connection_uses_full_sync_and_a_busy_timeout(store: SqliteExpectedStore) -> None:
    conn = store._conn
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_constructor_rejects_bad_arguments(db: Path) -> None:
    with pytest.raises(ValueError, match="max_orders"):
        SqliteExpectedStore(db, max_orders=0)
    with pytest.raises(ValueError, match="synchronous"):
        SqliteExpectedStore(db, synchronous="OFF")  # type: ignore[arg-type]
    assert not db.exists()


def test_readonly_open_of_missing_file_is_an_error_naming_the_path(db: Path) -> None:
    with pytest.raises(ExpectedStoreError, match="does not exist") as info:
        SqliteExpectedStore(db, readonly=True)
    assert str(db) in str(info.value)
    assert not db.exists()


def test_readonly_open_of_empty_file_is_an_error(db: Path) -> None:
    db.write_bytes(b"")
    with pytest.raises(ExpectedStoreError, match="empty"):
        SqliteExpectedStore(db, readonly=True)


def test_empty_file_is_initialised_by_a_writer(db: Path) -> None:
    db.write_bytes(b"")
    with SqliteExpectedStore(db) as s:
        s.record_order(exp_order(1))
    with reopen(db, readonly=True) as r:
        assert r.get_order(cid(1)) is not None


def test_readonly_store_refuses_every_write(store: SqliteExpectedStore, db: Path) -> None:
    store.record_order(exp_order(1))
    r = reopen(db, readonly=True)
    writes: list[Callable[[], object]] = [
        lambda: r.record_order(exp_order(2)),
        lambda: r.mark_cancel_requested(cid(1), 5),
        lambda: r.mark_status(cid(1), OrderStatus.FILLED, 5),
        lambda: r.remove_order(cid(1)),
        lambda: r.set_position(BTC, D("1"), 5),
        lambda: r.evict_expired(10**12),
    ]
    for write in writes:
        with pytest.raises(ExpectedStoreError, match="read-only"):
            write()
    r.close()
    with reopen(db, readonly=True) as again:
        assert store_state(again) == store_state(store)


def _set_meta(db: Path, key: str, value: object) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
        conn.commit()
    finally:
        conn.close()


def test_newer_schema_version_is_refused_with_one_line_naming_path(db: Path) -> None:
    SqliteExpectedStore(db).close()
    _set_meta(db, "schema_version", SCHEMA_VERSION + 1)
    for readonly in (False, True):
        with pytest.raises(ExpectedStoreError, match="newer than this grinder") as info:
            SqliteExpectedStore(db, readonly=readonly)
        message = str(info.value)
        assert str(db) in message
        assert "\n" not in message


@pytest.mark.parametrize("version", [0, "1", "x"])
def test_unknown_schema_version_is_refused(db: Path, version: object) -> None:
    SqliteExpectedStore(db).close()
    _set_meta(db, "schema_version", version)
    with pytest.raises(ExpectedStoreError, match="unknown schema_version"):
        SqliteExpectedStore(db)


def test_foreign_sqlite_database_is_refused_and_left_untouched(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.execute("INSERT INTO users VALUES ('alice')")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    with pytest.raises(ExpectedStoreError, match="not a grinder expected-state database") as info:
        SqliteExpectedStore(db)
    assert str(db) in str(info.value)
    assert db.read_bytes() == before  # not converted to WAL, no tables added
    assert not Path(f"{db}-wal").exists()


def test_database_with_other_application_marker_is_refused(db: Path) -> None:
    SqliteExpectedStore(db).close()
    _set_meta(db, "application", "someone-else")
    with pytest.raises(ExpectedStoreError, match="application='someone-else'"):
        SqliteExpectedStore(db)


def test_database_missing_a_table_is_reported_damaged_not_recreated(db: Path) -> None:
    SqliteExpectedStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE expected_positions")
    conn.commit()
    conn.close()
    with pytest.raises(ExpectedStoreError, match="missing table"):
        SqliteExpectedStore(db)
    conn = sqlite3.connect(db)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert "expected_positions" not in tables


def test_garbage_file_is_an_error_naming_the_path_and_is_not_overwritten(db: Path) -> None:
    junk = b"this is not a database " * 300
    db.write_bytes(junk)
    for readonly in (False, True):
        with pytest.raises(ExpectedStoreError, match="not a SQLite database") as info:
            SqliteExpectedStore(db, readonly=readonly)
        assert str(db) in str(info.value)
        assert "\n" not in str(info.value)
    assert db.read_bytes() == junk


def test_damaged_btree_page_is_an_error_naming_the_path(db: Path) -> None:
    with SqliteExpectedStore(db, synchronous="NORMAL") as s, s.batch():
        for n in range(2000):
            s.record_order(exp_order(n))
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'expected_orders'"
    ).fetchone()[0]
    conn.close()
    with db.open("r+b") as fh:  # overwrite the table's root page header
        fh.seek((root - 1) * page_size)
        fh.write(b"\xff" * 64)
    with pytest.raises(ExpectedStoreError, match=r"damaged|not a SQLite") as info:
        SqliteExpectedStore(db)
    assert str(db) in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_row_value_is_reported_as_damage(store: SqliteExpectedStore, db: Path) -> None:
    store.record_order(exp_order(1))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE expected_orders SET qty = 'lots', seq = seq + 100")
    conn.execute("UPDATE meta SET value = value + 100 WHERE key = 'last_seq'")
    conn.commit()
    conn.close()
    with pytest.raises(ExpectedStoreError, match="bad row for order"):
        store.refresh()
    assert store.get_order(cid(1)) is not None  # the mirror was left as it was
    with pytest.raises(ExpectedStoreError, match="bad row"):
        reopen(db)


def test_closed_store_refuses_io_but_keeps_its_mirror(store: SqliteExpectedStore) -> None:
    store.record_order(exp_order(1))
    store.close()
    store.close()
    with pytest.raises(ExpectedStoreError, match="closed"):
        store.refresh()
    with pytest.raises(ExpectedStoreError, match="closed"):
        store.record_order(exp_order(2))
    assert store.get_order(cid(1)) is not None


# --- round trips ----------------------------------------------------------------------


def test_every_order_field_round_trips_through_the_file(
    store: SqliteExpectedStore, db: Path
) -> None:
    order = ExpectedOrder(
        client_order_id=cid(7, ETH),
        symbol=ETH,
        side=Side.SELL,
        qty=D("0.0100"),
        price=D("2500.50"),
        order_type="STOP_MARKET",
        position_side=PositionSide.SHORT,
        status=OrderStatus.PARTIALLY_FILLED,
        created_ts_ms=1_704_067_200_123,
        updated_ts_ms=1_704_067_200_456,
        cancel_requested=True,
        ended_ts_ms=1_704_067_200_789,
        is_algo=True,
    )
    plain = exp_order(8, price=None)
    store.record_order(order)
    store.record_order(plain)
    with reopen(db, readonly=True) as r:
        assert order_state(r.get_order(order.client_order_id)) == order_state(order)  # type: ignore[arg-type]
        assert order_state(r.get_order(plain.client_order_id)) == order_state(plain)  # type: ignore[arg-type]
        assert len(r) == 2


@pytest.mark.parametrize(
    "text",
    [
        "0.10000000",
        "1E+3",
        "-0",
        "-0.000",
        "123456789012345678901234567890.123456789012345678",
        "0.000000000000000000000001",
        "5E-30",
        "42",
    ],
)
def test_decimals_round_trip_exactly_as_text(db: Path, text: str) -> None:
    value = D(text)
    with SqliteExpectedStore(db) as s:
        s.record_order(exp_order(1, qty=value, price=value))
        s.set_position(BTC, value, 1)
    with reopen(db, readonly=True) as r:
        o = r.get_order(cid(1))
        p = r.get_position((BTC, BOTH))
        assert o is not None
        assert p is not None
        exact = str(value)
        assert (str(o.qty), str(o.price), str(p.qty)) == (exact, exact, exact)
        assert o.qty.as_tuple() == value.as_tuple()
    conn = sqlite3.connect(db)
    kinds = conn.execute("SELECT typeof(qty), typeof(price) FROM expected_orders").fetchone()
    conn.close()
    assert kinds == ("text", "text")


def test_writes_show_in_the_writers_own_mirror_at_once(store: SqliteExpectedStore) -> None:
    store.record_order(exp_order(1))
    store.set_position(BTC, D("2"), 5)
    assert store.get_order(cid(1)) is not None
    assert [p.qty for p in store.positions()] == [D("2")]
    assert len(store) == 1


# --- write semantics (the ones every expected store shares: tests/unit/test_stores.py) ------


def test_updates_for_unknown_ids_raise_unknown_order(store: SqliteExpectedStore) -> None:
    store.record_order(exp_order(1))
    store.remove_order(cid(1))
    updates: list[Callable[[], object]] = [
        lambda: store.mark_cancel_requested(cid(1), 5),  # removed
        lambda: store.mark_status(cid(2), OrderStatus.FILLED, 5),  # never recorded
    ]
    for update in updates:
        with pytest.raises(UnknownOrder, match="no order") as info:
            update()
        assert isinstance(info.value, KeyError)


def test_failed_update_writes_nothing(store: SqliteExpectedStore, db: Path) -> None:
    store.record_order(exp_order(1))
    store.refresh()
    before = store.last_seq
    with pytest.raises(UnknownOrder):
        store.mark_status(cid(9), OrderStatus.FILLED, 5)
    assert not store.refresh().changed
    assert store.last_seq == before


def test_remove_order_is_idempotent_and_reaches_readers(
    store: SqliteExpectedStore, db: Path
) -> None:
    store.record_order(exp_order(1))
    r = reopen(db, readonly=True)
    assert len(r) == 1
    store.remove_order(cid(1))
    store.remove_order(cid(1))
    store.remove_order(cid(2))
    assert len(store) == 0
    changed = r.refresh()
    assert changed.order_ids == {cid(1)}
    assert r.get_order(cid(1)) is None
    assert len(r) == 0
    r.close()


def test_removed_order_can_be_recorded_again(store: SqliteExpectedStore, db: Path) -> None:
    store.record_order(exp_order(1))
    store.remove_order(cid(1))
    store.record_order(exp_order(1, qty=D("3")))
    with reopen(db, readonly=True) as r:
        o = r.get_order(cid(1))
        assert o is not None
        assert o.qty == D("3")


def test_positions_keyed_by_symbol_and_side_and_replaced(
    store: SqliteExpectedStore, db: Path
) -> None:
    store.set_position(BTC, D("1"), 10, PositionSide.LONG)
    store.set_position(BTC, D("-2"), 11, PositionSide.SHORT)
    store.set_position(ETH, D("0.5"), 12)
    store.set_position(ETH, D("0"), 13)
    with reopen(db, readonly=True) as r:
        got = {p.key: (p.qty, p.updated_ts_ms) for p in r.positions()}
        assert got == {
            (BTC, PositionSide.LONG): (D("1"), 10),
            (BTC, PositionSide.SHORT): (D("-2"), 11),
            (ETH, BOTH): (D("0"), 13),
        }
        assert r.get_position((BTC, BOTH)) is None


def test_ttl_eviction_drops_ended_orders_after_ttl_and_keeps_open_ones(
    store: SqliteExpectedStore, db: Path
) -> None:
    store.record_order(exp_order(1))
    store.record_order(exp_order(2))
    store.record_order(exp_order(3, status=OrderStatus.FILLED, created=500))
    store.mark_cancel_requested(cid(2), 1000)
    r = reopen(db, readonly=True)
    assert store.evict_expired(500 + TTL - 1) == 0
    assert store.evict_expired(1000 + TTL - 1) == 1
    assert store.evict_expired(1000 + TTL) == 1
    assert {o.client_order_id for o in store.orders()} == {cid(1)}
    assert r.refresh().order_ids == {cid(2), cid(3)}
    assert {o.client_order_id for o in r.orders()} == {cid(1)}
    assert store.evict_expired(10**12) == 0
    r.close()


def test_full_store_evicts_oldest_ended_order_first(db: Path) -> None:
    with SqliteExpectedStore(db, max_orders=3, terminal_ttl_ms=TTL) as s:
        for n in (1, 2, 3):
            s.record_order(exp_order(n))
        s.mark_cancel_requested(cid(3), 10)
        s.mark_cancel_requested(cid(1), 20)
        s.record_order(exp_order(4))
        assert {o.client_order_id for o in s.orders()} == {cid(1), cid(2), cid(4)}
        s.record_order(exp_order(5))
        assert {o.client_order_id for o in s.orders()} == {cid(2), cid(4), cid(5)}
    with reopen(db, readonly=True) as r:
        assert {o.client_order_id for o in r.orders()} == {cid(2), cid(4), cid(5)}


def test_full_store_of_open_orders_raises_and_keeps_every_open_order(db: Path) -> None:
    with SqliteExpectedStore(db, max_orders=2) as s:
        s.record_order(exp_order(1))
        s.record_order(exp_order(2))
        s.refresh()
        with pytest.raises(ExpectedStoreFull, match="max_orders=2") as info:
            s.record_order(exp_order(3))
        assert str(db) in str(info.value)
        assert isinstance(info.value, RuntimeError)
        assert {o.client_order_id for o in s.orders()} == {cid(1), cid(2)}
        assert not s.refresh().changed  # nothing was written
        s.record_order(exp_order(2, qty=D("5")))  # an update of a held order still fits
        o = s.get_order(cid(2))
        assert o is not None
        assert o.qty == D("5")
    with reopen(db, readonly=True) as r:
        assert len(r) == 2


def _both_stores(db: Path, **kw: Any) -> list[Any]:
    return [MemoryExpectedStore(**kw), SqliteExpectedStore(db, **kw)]


def test_ended_at_the_same_ms_evict_in_the_order_they_ended(db: Path) -> None:
    for s in _both_stores(db, max_orders=3):
        for n in (1, 2, 3):
            s.record_order(exp_order(n))
        s.mark_cancel_requested(cid(2), 10)
        s.mark_cancel_requested(cid(1), 10)
        s.record_order(exp_order(4))
        assert {o.client_order_id for o in s.orders()} == {cid(1), cid(3), cid(4)}, s


def test_rerecording_an_ended_order_with_the_same_end_keeps_its_eviction_place(
    db: Path,
) -> None:
    for s in _both_stores(db, max_orders=2):
        s.record_order(exp_order(1))
        s.record_order(exp_order(2))
        s.mark_cancel_requested(cid(1), 10)
        s.mark_cancel_requested(cid(2), 10)
        s.record_order(exp_order(1, qty=D("7"), cancel_requested=True, ended_ts_ms=10))
        s.record_order(exp_order(3))
        assert {o.client_order_id for o in s.orders()} == {cid(2), cid(3)}, s


def test_full_check_counts_live_orders_across_reopen(db: Path) -> None:
    with SqliteExpectedStore(db, max_orders=2) as s:
        s.record_order(exp_order(1))
        s.record_order(exp_order(2))
        s.remove_order(cid(1))
    with SqliteExpectedStore(db, max_orders=2) as s:
        s.record_order(exp_order(3))
        with pytest.raises(ExpectedStoreFull):
            s.record_order(exp_order(4))


# --- refresh ---------------------------------------------------------------------------


def test_refresh_returns_exactly_the_changed_ids_and_keys(
    store: SqliteExpectedStore, db: Path
) -> None:
    for n in range(5):
        store.record_order(exp_order(n))
    store.set_position(BTC, D("1"), 1)
    r = reopen(db, readonly=True)
    assert not r.refresh().changed
    store.mark_cancel_requested(cid(1), 5)
    store.mark_status(cid(3), OrderStatus.FILLED, 6)
    store.set_position(ETH, D("-1"), 7)
    result = r.refresh()
    assert result.order_ids == {cid(1), cid(3)}
    assert result.position_keys == {(ETH, BOTH)}
    assert not result.full
    o = r.get_order(cid(3))
    assert o is not None
    assert o.status is OrderStatus.FILLED
    assert not r.refresh().changed
    r.close()


def test_refresh_with_no_changes_is_one_query(store: SqliteExpectedStore, db: Path) -> None:
    for n in range(50):
        store.record_order(exp_order(n))
    r = reopen(db, readonly=True)
    statements: list[str] = []
    r._conn.set_trace_callback(statements.append)
    assert not r.refresh().changed
    assert len(statements) == 1
    assert "meta" in statements[0]
    statements.clear()
    store.record_order(exp_order(99))
    assert r.refresh().order_ids == {cid(99)}
    assert any("seq > ?" in s or "seq >" in s for s in statements)
    assert not any("deleted = 0" in s for s in statements)  # no full reload
    r.close()


def test_refresh_reports_the_writers_own_changes_once(store: SqliteExpectedStore) -> None:
    store.refresh()
    store.record_order(exp_order(1))
    assert store.refresh().order_ids == {cid(1)}
    assert not store.refresh().changed


def test_reader_behind_the_tombstone_horizon_reloads_fully(db: Path) -> None:
    with SqliteExpectedStore(db, tombstone_retention=3) as w:
        for n in range(6):
            w.record_order(exp_order(n))
        r = reopen(db, readonly=True)
        for n in range(5):
            w.remove_order(cid(n))
        conn = sqlite3.connect(db)
        tombstones = conn.execute("SELECT count(*) FROM expected_orders WHERE deleted = 1")
        assert tombstones.fetchone()[0] <= 3  # old tombstones were purged
        conn.close()
        result = r.refresh()
        assert result.full
        assert {cid(n) for n in range(6)} <= result.order_ids
        assert {o.client_order_id for o in r.orders()} == {cid(5)}
        w.record_order(exp_order(7))
        again = r.refresh()
        assert not again.full
        assert again.order_ids == {cid(7)}
        r.close()


def test_file_going_back_in_sequence_makes_the_reader_reload_fully(db: Path) -> None:
    with SqliteExpectedStore(db) as w:
        for n in range(3):
            w.record_order(exp_order(n))
        r = reopen(db, readonly=True)
        # As if the file were restored from an older backup under the reader.
        conn = sqlite3.connect(db)
        conn.execute("DELETE FROM expected_orders WHERE client_order_id = ?", (cid(2),))
        conn.execute("UPDATE meta SET value = 2 WHERE key = 'last_seq'")
        conn.commit()
        conn.close()
        result = r.refresh()
        assert result.full
        assert cid(2) in result.order_ids
        assert {o.client_order_id for o in r.orders()} == {cid(0), cid(1)}
        r.close()


# --- batches ---------------------------------------------------------------------------


def test_batch_commits_all_writes_as_one_transaction(store: SqliteExpectedStore, db: Path) -> None:
    r = reopen(db, readonly=True)
    with store.batch():
        store.record_order(exp_order(1))
        store.mark_status(cid(1), OrderStatus.FILLED, 5)
        store.set_position(BTC, D("1"), 5)
        assert not r.refresh().changed  # nothing visible before commit
        assert store.get_order(cid(1)) is None  # mirror changes on commit
    result = r.refresh()
    assert result.order_ids == {cid(1)}
    assert result.position_keys == {(BTC, BOTH)}
    o = store.get_order(cid(1))
    assert o is not None
    assert o.status is OrderStatus.FILLED
    r.close()


def test_batch_rolls_back_everything_on_exception(store: SqliteExpectedStore, db: Path) -> None:
    store.record_order(exp_order(1))
    before = store_state(store)

    def interrupted() -> None:
        with store.batch():
            store.record_order(exp_order(2))
            store.remove_order(cid(1))
            store.set_position(BTC, D("1"), 5)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        interrupted()
    assert store_state(store) == before
    with reopen(db, readonly=True) as r:
        assert store_state(r) == before


def test_failing_write_inside_batch_is_undone_alone(db: Path) -> None:
    with SqliteExpectedStore(db, max_orders=2) as s:
        with s.batch():
            s.record_order(exp_order(1))
            s.record_order(exp_order(2))
            with pytest.raises(ExpectedStoreFull):
                s.record_order(exp_order(3))
            with pytest.raises(UnknownOrder):
                s.mark_status(cid(9), OrderStatus.FILLED, 1)
            s.mark_status(cid(2), OrderStatus.FILLED, 2)
        assert len(s) == 2
    with reopen(db, readonly=True) as r:
        assert {o.client_order_id for o in r.orders()} == {cid(1), cid(2)}
        o = r.get_order(cid(2))
        assert o is not None
        assert o.status is OrderStatus.FILLED
        assert r.last_seq == 3


# --- equivalence with MemoryExpectedStore ---------------------------------------------------

POOL = 4
QTYS = ["0", "1", "0.10", "-0.5", "2.000", "1E+1", "-3"]
SYMBOLS = [BTC, ETH]

# One flat tuple per operation: (kind, order number, variant, qty, status, position side).
# Records weigh most, so sequences fill the store (max_orders=2) and exercise eviction.
op_strategy = st.tuples(
    st.sampled_from(
        ["record"] * 4 + ["cancel", "cancel", "status", "remove", "position", "evict", "refresh"]
    ),
    st.integers(0, POOL - 1),
    st.sampled_from(["open", "open", "cancel_requested", "filled", "partial"]),
    st.sampled_from(QTYS),
    st.sampled_from(list(OrderStatus)),
    st.sampled_from(list(PositionSide)),
)
# Time steps: 5_000 is the TTL, so "ended exactly one TTL ago" happens. Time always
# advances: ties in ended time are covered by the unit tests above.
time_step = st.sampled_from([1, 7, 500, 2_500, 5_000])
MAX_ORDERS = 2
TTL_PROP = 5_000


def _make(op: tuple[Any, ...], now: int) -> ExpectedOrder:
    _, n, variant, qty, _, _ = op
    symbol = SYMBOLS[n % 2]
    status = {"partial": OrderStatus.PARTIALLY_FILLED, "filled": OrderStatus.FILLED}
    return ExpectedOrder(
        client_order_id=cid(n, symbol),
        symbol=symbol,
        side=Side.BUY if n % 3 else Side.SELL,
        qty=abs(D(qty)) or D("0.5"),
        price=D("100.5") if n % 2 else None,
        status=status.get(variant, OrderStatus.NEW),
        cancel_requested=variant == "cancel_requested",
        created_ts_ms=now,
        updated_ts_ms=now,
    )


def _apply(store: Any, op: tuple[Any, ...], now: int) -> object:
    """Apply one operation; returns its result or the type of the exception it raised."""
    kind, n, _, qty, status, side = op
    order_id = cid(n, SYMBOLS[n % 2])
    try:
        if kind == "record":
            return store.record_order(_make(op, now))
        if kind == "cancel":
            return store.mark_cancel_requested(order_id, now)
        if kind == "status":
            return store.mark_status(order_id, status, now)
        if kind == "remove":
            return store.remove_order(order_id)
        if kind == "position":
            return store.set_position(SYMBOLS[n % 2], D(qty), now, side)
        if kind == "evict":
            return store.evict_expired(now)
    except (ExpectedStoreFull, UnknownOrder) as exc:
        return type(exc)
    raise AssertionError(op)


def _observed(
    spec: list[tuple[str, int]], positions: list[tuple[str, str]], now: int
) -> ObservedStore:
    observed = ObservedStore()
    orders = []
    for n, (status, age) in enumerate(spec):
        if status == "absent":
            continue
        symbol = SYMBOLS[n % 2]
        orders.append(
            ObservedOrder(
                client_order_id=cid(n, symbol),
                symbol=symbol,
                side=Side.BUY,
                status=OrderStatus(status),
                qty=D("1"),
                created_ts_ms=now - age,
                update_ts_ms=now - age,
                seen_ts_ms=now - age,
            )
        )
    for n, _ in enumerate(spec):  # ours on the exchange, unknown to the bot
        if n % 2:
            orders.append(
                ObservedOrder(
                    client_order_id=cid(100 + n, BTC),
                    symbol=BTC,
                    side=Side.SELL,
                    status=OrderStatus.NEW,
                    qty=D("2"),
                    created_ts_ms=now - 60_000,
                    update_ts_ms=now - 60_000,
                )
            )
    for o in orders:
        observed.apply_order(o)
    for symbol, qty in positions:
        observed.apply_position(
            ObservedPosition(symbol=symbol, qty=D(qty), update_ts_ms=now - 10_000)
        )
    return observed


def _detect(store: Any, observed: ObservedStore, now: int) -> tuple[list[Any], list[str]]:
    result = ReconcileEngine(ReconcileConfig(), store, observed).detect(now)
    mismatches = sorted((m.key, repr(sorted(m.as_dict().items())), m) for m in result.mismatches)
    return [m for *_, m in mismatches], sorted(e.client_order_id for e in result.missing_candidates)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    ops=st.lists(st.tuples(op_strategy, time_step), min_size=20, max_size=80),
    observed_spec=st.lists(
        st.tuples(
            st.sampled_from(["absent", "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED"]),
            st.sampled_from([0, 1_000, 60_000]),
        ),
        min_size=POOL,
        max_size=POOL,
    ),
    observed_positions=st.lists(
        st.tuples(st.sampled_from(SYMBOLS), st.sampled_from(QTYS)), max_size=2
    ),
    detect_after=st.sampled_from([0, 2_000, 6_000, 20_000]),
)
def test_sqlite_and_memory_stores_agree_on_any_operation_sequence(
    ops: list[tuple[tuple[Any, ...], int]],
    observed_spec: list[tuple[str, int]],
    observed_positions: list[tuple[str, str]],
    detect_after: int,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "expected.db"
        memory = MemoryExpectedStore(max_orders=MAX_ORDERS, terminal_ttl_ms=TTL_PROP)
        sqlite_store = SqliteExpectedStore(
            db, max_orders=MAX_ORDERS, terminal_ttl_ms=TTL_PROP, synchronous="NORMAL"
        )
        reader = SqliteExpectedStore(db, readonly=True)
        reader_seen = store_state(reader)
        now = 1_000_000
        try:
            for op, dt in ops:
                now += dt  # strictly increasing time, as a bot's clock
                if op[0] == "refresh":
                    result = reader.refresh()
                    current = store_state(reader)
                    assert current == store_state(memory)
                    old_orders, old_positions = reader_seen
                    new_orders, new_positions = current
                    differ = {
                        k
                        for k in old_orders.keys() | new_orders.keys()
                        if old_orders.get(k) != new_orders.get(k)
                    }
                    assert differ <= result.order_ids
                    differ_pos = {
                        k
                        for k in old_positions.keys() | new_positions.keys()
                        if old_positions.get(k) != new_positions.get(k)
                    }
                    assert differ_pos <= result.position_keys
                    assert not result.full
                    reader_seen = current
                    continue
                assert _apply(memory, op, now) == _apply(sqlite_store, op, now), op
                assert store_state(sqlite_store) == store_state(memory), op
                assert len(sqlite_store) == len(memory)
            reader.refresh()
            assert store_state(reader) == store_state(memory)
            with SqliteExpectedStore(db, readonly=True) as fresh:
                assert store_state(fresh) == store_state(memory)
                assert len(fresh) == len(memory)

            observed = _observed(observed_spec, observed_positions, now)
            at = now + detect_after
            want = _detect(memory, observed, at)
            assert _detect(sqlite_store, observed, at) == want
            assert _detect(reader, observed, at) == want
        finally:
            reader.close()
            sqlite_store.close()


# --- the recorder (the bot's API over this store) ------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000)


@pytest.fixture
def rec(db: Path, clock: ManualClock) -> Any:
    r = ExpectedRecorder(db, clock=clock, terminal_ttl_ms=TTL)
    yield r
    r.close()


def test_recorder_records_order_with_clock_time_and_exact_amounts(
    rec: ExpectedRecorder, db: Path, clock: ManualClock
) -> None:
    rec.order_placed(cid(1), BTC, "buy", "0.0100", Decimal("42000.50"))
    rec.order_placed(cid(2), BTC, Side.SELL, 3, None, order_type="market", position_side="short")
    with SqliteExpectedStore(db, readonly=True) as r:
        one, two = r.get_order(cid(1)), r.get_order(cid(2))
        assert one is not None
        assert two is not None
        assert (one.side, str(one.qty), str(one.price), one.created_ts_ms) == (
            Side.BUY,
            "0.0100",
            "42000.50",
            clock.now,
        )
        assert (two.qty, two.price, two.order_type, two.position_side) == (
            D(3),
            None,
            "MARKET",
            PositionSide.SHORT,
        )
        assert one.expected_open


@pytest.mark.parametrize("field", ["qty", "price"])
def test_recorder_refuses_float_money_with_a_clear_type_error(
    rec: ExpectedRecorder, field: str
) -> None:
    kwargs: dict[str, Any] = {"qty": "1", "price": "100"}
    kwargs[field] = 0.1
    with pytest.raises(TypeError, match="money is never float"):
        rec.order_placed(cid(1), BTC, "BUY", kwargs["qty"], kwargs["price"])
    with pytest.raises(TypeError, match="money is never float"):
        rec.position_intended(BTC, 0.5)  # type: ignore[arg-type]
    assert len(rec.store) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"qty": True}, TypeError, "not bool"),
        ({"qty": "abc"}, ValueError, "not a decimal number"),
        ({"qty": "NaN"}, ValueError, "finite"),
        ({"qty": "0"}, ValueError, "must be > 0"),
        ({"qty": "-1"}, ValueError, "must be > 0"),
        ({"price": "0"}, ValueError, "price must be > 0"),
        ({"price": None}, ValueError, "LIMIT order needs a price"),
        ({"side": "LONG"}, ValueError, "side 'LONG' is not one of BUY, SELL"),
        ({"symbol": "btc usdt"}, ValueError, "not a Binance symbol"),
        ({"client_order_id": "x" * 37}, ValueError, "not a Binance client order id"),
        ({"client_order_id": "bad id"}, ValueError, "not a Binance client order id"),
        ({"order_type": "LIMIT ORDER"}, ValueError, "not a Binance order type"),
        ({"position_side": "UP"}, ValueError, "position_side 'UP'"),
    ],
)
def test_recorder_validates_order_arguments_with_one_line_errors(
    rec: ExpectedRecorder, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {
        "client_order_id": cid(1),
        "symbol": BTC,
        "side": "BUY",
        "qty": "1",
        "price": "100",
    }
    extra = {k: kwargs.pop(k) for k in ("order_type", "position_side") if k in kwargs}
    args.update(kwargs)
    with pytest.raises(error, match=match) as info:
        rec.order_placed(**args, **extra)
    assert "\n" not in str(info.value)
    assert len(rec.store) == 0


def test_recorder_same_order_twice_is_a_no_op_but_different_params_are_refused(
    rec: ExpectedRecorder, clock: ManualClock
) -> None:
    rec.order_placed(cid(1), BTC, "BUY", "1", "100")
    clock.advance(50)
    rec.order_placed(cid(1), BTC, "BUY", "1.0", "100")  # a retried send
    o = rec.store.get_order(cid(1))
    assert o is not None
    assert o.created_ts_ms == clock.now - 50
    with pytest.raises(ValueError, match="already recorded as open with different"):
        rec.order_placed(cid(1), BTC, "BUY", "2", "100")
    rec.order_filled(cid(1))
    rec.order_placed(cid(1), BTC, "SELL", "2", "101")  # the id may be reused once ended
    again = rec.store.get_order(cid(1))
    assert again is not None
    assert (again.side, again.expected_open, again.created_ts_ms) == (Side.SELL, True, clock.now)


def test_recorder_cancel_and_end_book_the_bots_view(
    rec: ExpectedRecorder, clock: ManualClock
) -> None:
    for n in (1, 2, 3):
        rec.order_placed(cid(n), BTC, "BUY", "1", "100")
    clock.advance(10)
    rec.cancel_sent(cid(1))
    rec.order_filled(cid(2))
    rec.order_ended(cid(3), "expired")
    got = {
        o.client_order_id: (o.status, o.cancel_requested, o.ended_ts_ms) for o in rec.store.orders()
    }
    assert got == {
        cid(1): (OrderStatus.NEW, True, clock.now),
        cid(2): (OrderStatus.FILLED, False, clock.now),
        cid(3): (OrderStatus.EXPIRED, False, clock.now),
    }


def test_recorder_refuses_unknown_ids_and_open_statuses_as_ends(rec: ExpectedRecorder) -> None:
    with pytest.raises(UnknownOrder):
        rec.cancel_sent(cid(9))
    with pytest.raises(UnknownOrder):
        rec.order_filled(cid(9))
    rec.order_placed(cid(1), BTC, "BUY", "1", "100")
    with pytest.raises(ValueError, match="not terminal"):
        rec.order_ended(cid(1), OrderStatus.PARTIALLY_FILLED)
    with pytest.raises(ValueError, match="status 'DONE' is not one of"):
        rec.order_ended(cid(1), "DONE")


def test_recorder_positions_are_signed_and_checked_against_hedge_side(
    rec: ExpectedRecorder,
) -> None:
    rec.position_intended(BTC, "-0.5")
    rec.position_intended(BTC, 2, "LONG")
    rec.position_intended(BTC, Decimal("-1"), PositionSide.SHORT)
    rec.position_intended(ETH, "0", "short")
    with pytest.raises(ValueError, match="LONG position of BTCUSDT cannot be -1"):
        rec.position_intended(BTC, "-1", "LONG")
    with pytest.raises(ValueError, match="SHORT position"):
        rec.position_intended(BTC, "1", "SHORT")
    got = {p.key: p.qty for p in rec.store.positions()}
    assert got == {
        (BTC, BOTH): D("-0.5"),
        (BTC, PositionSide.LONG): D(2),
        (BTC, PositionSide.SHORT): D(-1),
        (ETH, PositionSide.SHORT): D(0),
    }


def test_recorder_batch_is_all_or_nothing(rec: ExpectedRecorder, db: Path) -> None:
    rec.order_placed(cid(1), BTC, "BUY", "1", "100")

    def fill_then_fail() -> None:
        with rec.batch():
            rec.order_filled(cid(1))
            rec.position_intended(BTC, "1")
            raise RuntimeError("bot crashed mid-booking")

    with pytest.raises(RuntimeError):
        fill_then_fail()
    with SqliteExpectedStore(db, readonly=True) as r:
        o = r.get_order(cid(1))
        assert o is not None
        assert o.expected_open
        assert list(r.positions()) == []
    with rec.batch() as same:
        same.order_filled(cid(1))
        same.position_intended(BTC, "1")
    with SqliteExpectedStore(db, readonly=True) as r:
        o = r.get_order(cid(1))
        assert o is not None
        assert o.status is OrderStatus.FILLED
        assert [p.qty for p in r.positions()] == [D(1)]


def test_recorder_evicts_expired_ended_orders_at_most_once_per_interval(
    db: Path, clock: ManualClock
) -> None:
    with ExpectedRecorder(db, clock=clock, terminal_ttl_ms=TTL, evict_interval_ms=60_000) as rec:
        rec.order_placed(cid(1), BTC, "BUY", "1", "100")
        rec.cancel_sent(cid(1))
        clock.advance(TTL)
        rec.order_placed(cid(2), BTC, "BUY", "1", "100")  # within the interval: no eviction
        assert rec.store.get_order(cid(1)) is not None
        clock.advance(60_000)
        rec.order_placed(cid(3), BTC, "BUY", "1", "100")
        assert rec.store.get_order(cid(1)) is None
        assert {o.client_order_id for o in rec.store.orders()} == {cid(2), cid(3)}


def test_closed_recorder_refuses_calls(db: Path) -> None:
    with ExpectedRecorder(db) as rec:
        rec.order_placed(cid(1), BTC, "BUY", "1", "100")
    with pytest.raises(ExpectedStoreError, match="closed"):
        rec.cancel_sent(cid(1))
    rec.close()


def test_recorder_is_safe_to_share_between_threads(rec: ExpectedRecorder, db: Path) -> None:
    def place(worker: int) -> None:
        for n in range(50):
            rec.order_placed(cid(worker * 1000 + n), BTC, "BUY", "1", "100")
            rec.position_intended(f"T{worker}USDT", n)

    threads = [threading.Thread(target=place, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with SqliteExpectedStore(db, readonly=True) as r:
        assert len(r) == 200
        assert {p.symbol: p.qty for p in r.positions()} == {f"T{w}USDT": D(49) for w in range(4)}


# --- the bot's heartbeat (gate E) -----------------------------------------------------------


def _stored_heartbeat(db: Path) -> object:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'bot_heartbeat_ms'").fetchone()
    return None if row is None else row[0]


def test_every_recorder_call_and_heartbeat_stamps_the_bots_heartbeat(
    rec: ExpectedRecorder, db: Path, clock: ManualClock
) -> None:
    reader = reopen(db, readonly=True)
    assert (reader.bot_heartbeat_ms, reader.heartbeat_age_s(clock.now)) == (None, math.inf)
    assert _stored_heartbeat(db) is None  # opening is not writing
    calls: list[Callable[[], object]] = [
        lambda: rec.order_placed(cid(1), BTC, "BUY", "1", "100"),
        lambda: rec.order_placed(cid(1), BTC, "BUY", "1", "100"),  # a retried send: no-op
        lambda: rec.cancel_sent(cid(1)),
        lambda: rec.order_ended(cid(1), "CANCELED"),
        lambda: rec.position_intended(BTC, "0.5"),
        rec.heartbeat,
    ]
    for call in calls:
        clock.advance(1_000)
        call()
        assert _stored_heartbeat(db) == clock.now
        reader.refresh()
        assert reader.bot_heartbeat_ms == clock.now
        assert reader.heartbeat_age_s(clock.now + 2_500) == 2.5
    with rec.batch():
        clock.advance(1_000)
        rec.order_placed(cid(2), BTC, "BUY", "1", "100")
        rec.heartbeat()
    assert _stored_heartbeat(db) == clock.now
    reader.close()


def test_a_heartbeat_alone_changes_no_row_and_a_refresh_reports_no_change(
    rec: ExpectedRecorder, db: Path, clock: ManualClock
) -> None:
    rec.order_placed(cid(1), BTC, "BUY", "1", "100")
    reader = reopen(db, readonly=True)
    seq = reader.last_seq
    clock.advance(10_000)
    rec.heartbeat()
    assert not reader.refresh().changed
    assert reader.last_seq == seq
    assert reader.bot_heartbeat_ms == clock.now
    reader.close()


def test_writers_that_are_not_the_bot_leave_the_heartbeat_alone(db: Path) -> None:
    """``grinder expected adopt`` writes through the store, not the recorder: it records a
    baseline but does not make the state live."""
    plain = SqliteExpectedStore(db)
    plain.record_order(exp_order(1))
    plain.set_position(BTC, D("1"), 5)
    plain.evict_expired(10)
    assert _stored_heartbeat(db) is None
    assert plain.heartbeat_age_s(10**13) == math.inf
    plain.heartbeat(1_234)  # what a bot writing through the store itself may call
    assert _stored_heartbeat(db) == 1_234
    plain.record_order(exp_order(2))
    assert _stored_heartbeat(db) == 1_234
    plain.close()


def test_a_file_from_before_heartbeats_reads_as_never_written_by_a_bot(db: Path) -> None:
    """Files of the earlier version have the same schema and no heartbeat key: both versions
    open each other's files, and the old one is "never written by a bot" until a bot writes."""
    with ExpectedRecorder(db, clock=lambda: 7_000) as bot:
        bot.order_placed(cid(1), BTC, "BUY", "1", "100")
    with sqlite3.connect(db) as conn:  # the file as the earlier version wrote it
        conn.execute("DELETE FROM meta WHERE key = 'bot_heartbeat_ms'")
        keys = {k for (k,) in conn.execute("SELECT key FROM meta")}
    assert keys == {"application", "schema_version", "last_seq", "live_orders", "tombstone_floor"}
    reader = reopen(db, readonly=True)
    assert reader.heartbeat_age_s(8_000) == math.inf
    assert [o.client_order_id for o in reader.orders()] == [cid(1)]
    with ExpectedRecorder(db, clock=lambda: 9_000) as bot:
        bot.heartbeat()
    reader.refresh()
    assert reader.heartbeat_age_s(9_500) == 0.5
    reader.close()


def test_a_heartbeat_that_is_not_ms_is_damage(db: Path) -> None:
    SqliteExpectedStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO meta (key, value) VALUES ('bot_heartbeat_ms', 'soon')")
    with pytest.raises(ExpectedStoreError, match="is damaged: meta bot_heartbeat_ms is 'soon'"):
        SqliteExpectedStore(db, readonly=True)


def test_heartbeat_age_never_goes_negative_and_a_closed_store_refuses_to_beat(db: Path) -> None:
    store = SqliteExpectedStore(db)
    store.heartbeat(10_000)
    assert store.heartbeat_age_s(9_000) == 0.0  # a clock step back counts as now
    store.close()
    with pytest.raises(ExpectedStoreError, match="closed"):
        store.heartbeat(11_000)
    with pytest.raises(ExpectedStoreError, match="read-only"):
        reopen(db, readonly=True).heartbeat(12_000)


def test_the_memory_store_is_live_once_a_bot_in_its_process_wrote_it() -> None:
    store = MemoryExpectedStore()
    assert store.heartbeat_age_s(1) == math.inf
    store.evict_expired(1)  # the service's housekeeping is not a bot's write
    assert not store.written_by_bot
    store.set_position(BTC, D("0"), 1)
    assert store.heartbeat_age_s(10**13) == 0.0
    other = MemoryExpectedStore()
    other.heartbeat()
    assert other.written_by_bot
