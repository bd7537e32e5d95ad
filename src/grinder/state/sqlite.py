"""Expected state in a SQLite file, shared by a bot (writer) and the service (reader).

The bot records what it does through ``ExpectedRecorder`` (``grinder.state.recorder``),
which writes through ``SqliteExpectedStore``; the reconcile service opens the same
file with ``SqliteExpectedStore(path, readonly=True)`` and reads it like a
``MemoryExpectedStore``. Semantics of every write are those of
``MemoryExpectedStore`` (bounded size, TTL of ended orders, ``ExpectedStoreFull``
rather than forgetting an open order, ``UnknownOrder`` for unknown ids).

**Reads serve an in-memory mirror.** ``orders()``, ``get_order()``,
``positions()``, ``get_position()`` and ``len()`` never touch the file: detection
iterates every expected order each pass and must stay at dict speed. The mirror
follows the file through ``refresh()``, which **the service calls once per
reconcile cycle, before detection**. Every write stamps the rows it changes with
the next value of a change sequence (``meta.last_seq``); a deleted order leaves a
tombstone row (``deleted = 1``) with its own sequence number. ``refresh()`` first
reads ``last_seq`` (one primary-key lookup: the whole cost when nothing changed),
then, inside one read transaction, only the rows whose sequence is newer than the
last one it saw. It returns the client order ids and position keys that changed
(``RefreshResult``) so the service can re-check just those. Writes made through an
instance are applied to its own mirror as soon as they commit, and are reported
by its next ``refresh()`` like anybody else's.

Tombstones older than ``tombstone_retention`` changes are purged (``meta.
tombstone_floor`` records how far); a reader that fell further behind than that
reloads everything (``RefreshResult.full``), which is correct, only slower.

**Durability: WAL with ``synchronous=FULL``.** The ordering rule for bots is
"record, then send": the record must survive whatever happens after the order
leaves. WAL with ``synchronous=NORMAL`` survives a crash of the *process* but may
lose the last transactions on power loss or an OS crash; the bot's order would
then be live on the exchange without a record, look unexpected, and get
cancelled by remediation. ``FULL`` syncs the WAL on every commit: measured at
about 0.18 ms per write on an SSD-backed VM (``NORMAL``: ~0.04 ms), far below
an exchange round trip. ``synchronous="NORMAL"`` can be passed where that risk is
acceptable (tests, benchmarks). Either way a crash never leaves half a write:
every public write method is one transaction (``batch()`` groups several).

**Concurrency.** One writer process and one reader process at once is the design
point; WAL lets the reader read while the writer writes, and a ``busy_timeout``
(5 s) absorbs the brief locks of checkpoints. Writes take the write lock at the
start (``BEGIN IMMEDIATE``) and decide from the rows as they are inside that
transaction, not from the mirror, so a second writer (``grinder expected adopt``
while the bot runs) is serialised by SQLite and stays correct. WAL needs a local
file system (not NFS/SMB): the store refuses to open when WAL cannot be enabled.
An instance is not thread-safe: use it from one thread at a time (the recorder
adds a lock). Do not carry an open store across ``fork()``.

**Files.** ``meta`` holds ``application`` (``grinder-expected-state``) and
``schema_version`` (1). A file that is not a SQLite database, a database without
that marker, a newer or unknown schema version, or a damaged file (checked with
``PRAGMA quick_check`` at open) raises ``ExpectedStoreError`` naming the path;
nothing is ever recreated over it. Only a file that does not exist yet (or is
empty) is initialised, and only when not ``readonly``. Decimals are stored as
TEXT (``str(Decimal)``), so they round-trip exactly, exponent included.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

from grinder.reconcile.types import (
    ExpectedOrder,
    ExpectedPosition,
    OrderStatus,
    PositionKey,
    PositionSide,
    Side,
)
from grinder.state.expected import (
    DEFAULT_MAX_ORDERS,
    DEFAULT_TERMINAL_TTL_MS,
    DictReads,
    ExpectedStoreFull,
    UnknownOrder,
)

SCHEMA_VERSION = 1
APPLICATION = "grinder-expected-state"
DEFAULT_BUSY_TIMEOUT_MS = 5_000
DEFAULT_TOMBSTONE_RETENTION = 100_000

Synchronous = Literal["FULL", "NORMAL"]

_SIDES = {s.value: s for s in Side}
_POSITION_SIDES = {s.value: s for s in PositionSide}
_STATUSES = {s.value: s for s in OrderStatus}

_ORDER_COLUMNS = (
    "client_order_id, symbol, side, qty, price, order_type, position_side, status, "
    "created_ts_ms, updated_ts_ms, cancel_requested, ended_ts_ms, is_algo"
)
_POSITION_COLUMNS = "symbol, position_side, qty, updated_ts_ms"

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value NOT NULL) WITHOUT ROWID",
    """CREATE TABLE expected_orders (
        client_order_id TEXT PRIMARY KEY NOT NULL,
        seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        qty TEXT NOT NULL,
        price TEXT,
        order_type TEXT NOT NULL,
        position_side TEXT NOT NULL,
        status TEXT NOT NULL,
        created_ts_ms INTEGER NOT NULL,
        updated_ts_ms INTEGER NOT NULL,
        cancel_requested INTEGER NOT NULL,
        ended_ts_ms INTEGER,
        end_seq INTEGER,
        is_algo INTEGER NOT NULL
    )""",
    "CREATE UNIQUE INDEX expected_orders_seq ON expected_orders (seq)",
    "CREATE INDEX expected_orders_ended ON expected_orders (ended_ts_ms, end_seq) "
    "WHERE deleted = 0 AND ended_ts_ms IS NOT NULL",
    "CREATE INDEX expected_orders_tombstones ON expected_orders (seq) WHERE deleted = 1",
    """CREATE TABLE expected_positions (
        symbol TEXT NOT NULL,
        position_side TEXT NOT NULL,
        seq INTEGER NOT NULL,
        qty TEXT NOT NULL,
        updated_ts_ms INTEGER NOT NULL,
        PRIMARY KEY (symbol, position_side)
    )""",
    "CREATE UNIQUE INDEX expected_positions_seq ON expected_positions (seq)",
)
_TABLES = frozenset({"meta", "expected_orders", "expected_positions"})


class ExpectedStoreError(RuntimeError):
    """The expected-state database cannot be used; the message names the file."""


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


_NOTHING = RefreshResult(frozenset(), frozenset())


class _Tx:
    """Counters and mirror changes of one open write transaction."""

    __slots__ = ("broken", "floor", "last_seq", "live", "staged", "tombstones")

    def __init__(self, last_seq: int, live: int, floor: int) -> None:
        self.last_seq = last_seq
        self.live = live
        self.floor = floor
        self.tombstones = 0
        self.broken = False
        # ("o", cid, order or None for removed) / ("p", key, position), in write order.
        self.staged: list[tuple[str, Any, Any]] = []

    def next_seq(self) -> int:
        self.last_seq += 1
        return self.last_seq

    def mark(self) -> tuple[int, int, int, int]:
        return (self.last_seq, self.live, self.tombstones, len(self.staged))

    def restore(self, mark: tuple[int, int, int, int]) -> None:
        self.last_seq, self.live, self.tombstones, staged = mark
        del self.staged[staged:]


class SqliteExpectedStore(DictReads):
    """Expected state in a SQLite file (WAL), read through an in-memory mirror.

    ``refresh()`` brings the mirror up to date with the file and returns what
    changed; call it once per reconcile cycle. See the module docstring.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_orders: int = DEFAULT_MAX_ORDERS,
        terminal_ttl_ms: int = DEFAULT_TERMINAL_TTL_MS,
        readonly: bool = False,
        synchronous: Synchronous = "FULL",
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        tombstone_retention: int = DEFAULT_TOMBSTONE_RETENTION,
    ) -> None:
        if max_orders < 1:
            raise ValueError("max_orders must be >= 1")
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', not {synchronous!r}")
        if busy_timeout_ms < 0 or tombstone_retention < 0:
            raise ValueError("busy_timeout_ms and tombstone_retention must be >= 0")
        self.path = Path(path)
        self.max_orders = max_orders
        self.terminal_ttl_ms = terminal_ttl_ms
        self.readonly = readonly
        self.tombstone_retention = tombstone_retention
        self._orders: dict[str, ExpectedOrder] = {}
        self._positions: dict[PositionKey, ExpectedPosition] = {}
        self._seen_seq = -1
        self._batch: _Tx | None = None
        self._closed = False
        self._conn = self._connect(synchronous, busy_timeout_ms)
        try:
            self.refresh()
        except BaseException:
            self._conn.close()
            raise

    # --- opening -------------------------------------------------------------------------

    def _fail(self, problem: str, exc: BaseException | None = None) -> ExpectedStoreError:
        detail = f": {' '.join(str(exc).split())}" if exc is not None and str(exc) else ""
        return ExpectedStoreError(f"expected-state database {self.path}: {problem}{detail}")

    def _connect(self, synchronous: Synchronous, busy_timeout_ms: int) -> sqlite3.Connection:
        path = self.path
        try:
            exists = path.exists()
            fresh = not exists or (path.is_file() and path.stat().st_size == 0)
        except OSError as exc:
            raise self._fail("cannot be read", exc) from exc
        if exists and not path.is_file():
            raise self._fail("is not a file")
        if self.readonly and not exists:
            raise self._fail("does not exist")
        timeout = busy_timeout_ms / 1000
        try:
            if self.readonly:
                uri = f"file:{quote(str(path.resolve()))}?mode=ro"
                conn = sqlite3.connect(
                    uri, uri=True, isolation_level=None, timeout=timeout, check_same_thread=False
                )
            else:
                conn = sqlite3.connect(
                    str(path), isolation_level=None, timeout=timeout, check_same_thread=False
                )
        except sqlite3.Error as exc:
            raise self._fail("cannot be opened", exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if fresh and not self.readonly:
                # Nothing to protect in a new file: switch to WAL before creating tables.
                self._enable_wal(conn)
            self._check_or_create_schema(conn)
            if not self.readonly:
                self._enable_wal(conn)
                conn.execute(f"PRAGMA synchronous = {synchronous}")
                conn.execute("PRAGMA journal_size_limit = 67108864")
            self._quick_check(conn)
        except ExpectedStoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise self._fail(_describe(exc), exc) from exc
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        mode = str(row[0]).lower() if row else ""
        if mode != "wal":
            raise self._fail(
                f"cannot use WAL journal mode (got {mode!r}); put it on a local file system"
            )

    def _check_or_create_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN" if self.readonly else "BEGIN IMMEDIATE")
        try:
            tables = {
                str(name)
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%'"
                )
            }
            if not tables:
                if self.readonly:
                    raise self._fail("is empty (not initialised by a writer yet)")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("application", APPLICATION),
                        ("schema_version", SCHEMA_VERSION),
                        ("last_seq", 0),
                        ("live_orders", 0),
                        ("tombstone_floor", 0),
                    ],
                )
            else:
                self._verify_schema(conn, tables)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _verify_schema(self, conn: sqlite3.Connection, tables: set[str]) -> None:
        if "meta" not in tables:
            raise self._fail("is not a grinder expected-state database (no meta table)")
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise self._fail("is not a grinder expected-state database", exc) from exc
        if meta.get("application") != APPLICATION:
            raise self._fail(
                f"is not a grinder expected-state database (application="
                f"{meta.get('application')!r})"
            )
        version = meta.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise self._fail(f"has an unknown schema_version {version!r}")
        if version > SCHEMA_VERSION:
            raise self._fail(
                f"has schema_version {version}, newer than this grinder supports "
                f"({SCHEMA_VERSION}); upgrade grinder"
            )
        if version != SCHEMA_VERSION:
            raise self._fail(
                f"has an unknown schema_version {version} (this grinder supports {SCHEMA_VERSION})"
            )
        missing = sorted(_TABLES - tables)
        if missing:
            raise self._fail(f"is damaged: missing table(s) {', '.join(missing)}")
        for key in ("last_seq", "live_orders", "tombstone_floor"):
            if not isinstance(meta.get(key), int):
                raise self._fail(f"is damaged: meta {key} is {meta.get(key)!r}")

    def _quick_check(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in rows] != ["ok"]:
            first = " ".join(str(rows[0][0]).split()) if rows else "no result"
            raise self._fail(f"is damaged (quick_check: {first})")

    # --- reads ---------------------------------------------------------------------------

    def read_order(self, client_order_id: str) -> ExpectedOrder | None:
        """One order as the file holds it now (not the mirror); inside a batch, as the
        batch has it."""
        self._require_open()
        try:
            found = self._fetch_order(client_order_id)
        except sqlite3.Error as exc:
            raise self._fail(_describe(exc), exc) from exc
        return None if found is None else found[0]

    @property
    def last_seq(self) -> int:
        """The change sequence the mirror reflects (after the last refresh)."""
        return self._seen_seq

    # --- refresh -------------------------------------------------------------------------

    def refresh(self) -> RefreshResult:
        """Load what changed in the file since the last refresh; return what changed.

        Cheap when nothing changed: one primary-key lookup. Otherwise one read
        transaction over the rows whose change sequence is newer than the last seen.
        """
        self._require_open()
        conn = self._conn
        in_batch = self._batch is not None
        if self._batch is not None and self._batch.staged:
            raise self._fail("refresh() inside a batch() after a write is not supported")
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
            if row is not None and row[0] == self._seen_seq:
                return _NOTHING
            if not in_batch:
                conn.execute("BEGIN")
            try:
                result = self._load_changes(conn)
            finally:
                if not in_batch and conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._fail(_describe(exc), exc) from exc
        return result

    def _load_changes(self, conn: sqlite3.Connection) -> RefreshResult:
        meta = dict(
            conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('last_seq', 'tombstone_floor')"
            ).fetchall()
        )
        last, floor = meta.get("last_seq"), meta.get("tombstone_floor")
        if not isinstance(last, int) or not isinstance(floor, int):
            raise self._fail(f"is damaged: meta last_seq={last!r} tombstone_floor={floor!r}")
        seen = self._seen_seq
        if seen < 0 or floor > seen or last < seen:
            return self._load_full(conn, last)
        order_rows = conn.execute(
            f"SELECT {_ORDER_COLUMNS}, deleted FROM expected_orders WHERE seq > ?", (seen,)
        ).fetchall()
        position_rows = conn.execute(
            f"SELECT {_POSITION_COLUMNS} FROM expected_positions WHERE seq > ?", (seen,)
        ).fetchall()
        # Parse everything before touching the mirror: a bad row changes nothing.
        orders = [(r[0], None if r[-1] else self._order_from_row(r)) for r in order_rows]
        positions = [self._position_from_row(r) for r in position_rows]
        for cid, order in orders:
            if order is None:
                self._orders.pop(cid, None)
            else:
                self._orders[cid] = order
        for pos in positions:
            self._positions[pos.key] = pos
        self._seen_seq = last
        return RefreshResult(
            frozenset(cid for cid, _ in orders), frozenset(p.key for p in positions)
        )

    def _load_full(self, conn: sqlite3.Connection, last: int) -> RefreshResult:
        orders = {
            r[0]: self._order_from_row(r)
            for r in conn.execute(f"SELECT {_ORDER_COLUMNS} FROM expected_orders WHERE deleted = 0")
        }
        positions: dict[PositionKey, ExpectedPosition] = {}
        for r in conn.execute(f"SELECT {_POSITION_COLUMNS} FROM expected_positions"):
            pos = self._position_from_row(r)
            positions[pos.key] = pos
        order_ids = frozenset(self._orders.keys() | orders.keys())
        position_keys = frozenset(self._positions.keys() | positions.keys())
        self._orders, self._positions = orders, positions
        self._seen_seq = last
        return RefreshResult(order_ids, position_keys, full=True)

    def _order_from_row(self, r: tuple[Any, ...]) -> ExpectedOrder:
        try:
            return ExpectedOrder(
                client_order_id=r[0],
                symbol=r[1],
                side=_SIDES[r[2]],
                qty=Decimal(r[3]),
                price=None if r[4] is None else Decimal(r[4]),
                order_type=r[5],
                position_side=_POSITION_SIDES[r[6]],
                status=_STATUSES[r[7]],
                created_ts_ms=int(r[8]),
                updated_ts_ms=int(r[9]),
                cancel_requested=bool(r[10]),
                ended_ts_ms=None if r[11] is None else int(r[11]),
                is_algo=bool(r[12]),
            )
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise self._fail(f"is damaged: bad row for order {r[0]!r}") from exc

    def _position_from_row(self, r: tuple[Any, ...]) -> ExpectedPosition:
        try:
            return ExpectedPosition(
                symbol=r[0],
                position_side=_POSITION_SIDES[r[1]],
                qty=Decimal(r[2]),
                updated_ts_ms=int(r[3]),
            )
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise self._fail(f"is damaged: bad row for position {r[0]!r}/{r[1]!r}") from exc

    # --- writes --------------------------------------------------------------------------

    def record_order(self, order: ExpectedOrder) -> None:
        """The bot placed (or is about to place) this order. The store keeps a copy."""
        stored = replace(order)
        cid = stored.client_order_id
        with self._write() as tx:
            current = self._fetch_order(cid)
            end_seq: int | None = None
            if current is None:
                if tx.live >= self.max_orders:
                    self._evict_oldest_ended(tx)
                    if tx.live >= self.max_orders:
                        raise ExpectedStoreFull(
                            f"expected store {self.path} holds {tx.live} orders (max_orders="
                            f"{self.max_orders}) and none has ended; refusing {cid}"
                        )
                tx.live += 1
            elif current[0].ended_ts_ms == stored.ended_ts_ms:
                end_seq = current[1]  # still the same end: keeps its place in eviction order
            self._put_order(tx, stored, end_seq)

    def mark_cancel_requested(self, client_order_id: str, now_ms: int) -> None:
        """The bot sent a cancel: from now on it expects the order gone."""
        with self._write() as tx:
            order, end_seq = self._require(client_order_id)
            order.cancel_requested = True
            order.updated_ts_ms = now_ms
            if order.ended_ts_ms is None:
                order.ended_ts_ms = now_ms
                end_seq = None
            self._put_order(tx, order, end_seq)

    def mark_status(self, client_order_id: str, status: OrderStatus, now_ms: int) -> None:
        """The bot booked a status it saw (a fill, a cancel confirmation, an expiry)."""
        status = OrderStatus(status)
        with self._write() as tx:
            order, end_seq = self._require(client_order_id)
            order.status = status
            order.updated_ts_ms = now_ms
            if status.is_terminal and order.ended_ts_ms is None:
                order.ended_ts_ms = now_ms
                end_seq = None
            self._put_order(tx, order, end_seq)

    def remove_order(self, client_order_id: str) -> None:
        """Forget an order (no error when it is not there)."""
        with self._write() as tx:
            if self._fetch_order(client_order_id) is not None:
                self._tombstone(tx, client_order_id)

    def set_position(
        self,
        symbol: str,
        qty: Decimal,
        now_ms: int,
        position_side: PositionSide = PositionSide.BOTH,
    ) -> None:
        """The position the bot now intends to hold (signed; 0 for flat)."""
        pos = ExpectedPosition(
            symbol=symbol, qty=qty, position_side=PositionSide(position_side), updated_ts_ms=now_ms
        )
        with self._write() as tx:
            seq = tx.next_seq()
            self._conn.execute(
                "INSERT OR REPLACE INTO expected_positions "
                "(symbol, position_side, seq, qty, updated_ts_ms) VALUES (?, ?, ?, ?, ?)",
                (symbol, pos.position_side.value, seq, str(qty), now_ms),
            )
            tx.staged.append(("p", pos.key, pos))

    def evict_expired(self, now_ms: int) -> int:
        """Drop ended orders older than ``terminal_ttl_ms``; returns how many."""
        with self._write() as tx:
            rows = self._conn.execute(
                "SELECT client_order_id FROM expected_orders "
                "WHERE deleted = 0 AND ended_ts_ms IS NOT NULL AND ended_ts_ms <= ?",
                (now_ms - self.terminal_ttl_ms,),
            ).fetchall()
            for (cid,) in rows:
                self._tombstone(tx, cid)
            return len(rows)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make every write inside the ``with`` block one transaction: all or nothing.

        A write that raises inside the block (``UnknownOrder``, ``ExpectedStoreFull``)
        is undone on its own; the block may catch it and go on. Any other exception
        leaving the block rolls the whole batch back. The mirror changes on commit.
        Nested batches join the outer one.
        """
        self._require_writable()
        if self._batch is not None:
            yield
            return
        try:
            tx = self._begin()
        except sqlite3.Error as exc:
            raise self._fail(_describe(exc), exc) from exc
        self._batch = tx
        try:
            yield
        except BaseException:
            self._batch = None
            self._rollback_quietly()
            raise
        self._batch = None
        if tx.broken:
            self._rollback_quietly()
            raise self._fail("batch rolled back after a database error inside it")
        self._commit(tx)

    # --- write internals -----------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[_Tx]:
        self._require_writable()
        conn = self._conn
        tx = self._batch
        if tx is not None:
            mark = tx.mark()
            try:
                conn.execute("SAVEPOINT grinder_op")
            except sqlite3.Error as exc:
                tx.broken = True
                raise self._fail(_describe(exc), exc) from exc
            try:
                yield tx
            except BaseException as exc:
                tx.restore(mark)
                try:
                    conn.execute("ROLLBACK TO grinder_op")
                    conn.execute("RELEASE grinder_op")
                except sqlite3.Error:
                    tx.broken = True
                if isinstance(exc, sqlite3.Error):
                    tx.broken = True
                    raise self._fail(_describe(exc), exc) from exc
                raise
            try:
                conn.execute("RELEASE grinder_op")
            except sqlite3.Error as exc:
                tx.broken = True
                raise self._fail(_describe(exc), exc) from exc
            return
        try:
            tx = self._begin()
        except sqlite3.Error as exc:
            raise self._fail(_describe(exc), exc) from exc
        try:
            yield tx
        except BaseException as exc:
            self._rollback_quietly()
            if isinstance(exc, sqlite3.Error):
                raise self._fail(_describe(exc), exc) from exc
            raise
        self._commit(tx)

    def _begin(self) -> _Tx:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            meta = dict(
                conn.execute(
                    "SELECT key, value FROM meta "
                    "WHERE key IN ('last_seq', 'live_orders', 'tombstone_floor')"
                ).fetchall()
            )
            last, live, floor = (
                meta.get("last_seq"),
                meta.get("live_orders"),
                meta.get("tombstone_floor"),
            )
            if not (isinstance(last, int) and isinstance(live, int) and isinstance(floor, int)):
                raise self._fail(f"is damaged: meta is {meta!r}")
        except BaseException:
            self._rollback_quietly()
            raise
        return _Tx(last, live, floor)

    def _commit(self, tx: _Tx) -> None:
        conn = self._conn
        try:
            if tx.staged:
                if tx.tombstones:
                    self._purge_tombstones(tx)
                conn.executemany(
                    "UPDATE meta SET value = ? WHERE key = ?",
                    [
                        (tx.last_seq, "last_seq"),
                        (tx.live, "live_orders"),
                        (tx.floor, "tombstone_floor"),
                    ],
                )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback_quietly()
            raise self._fail(_describe(exc), exc) from exc
        for kind, key, value in tx.staged:
            if kind == "p":
                self._positions[key] = value
            elif value is None:
                self._orders.pop(key, None)
            else:
                self._orders[key] = value

    def _rollback_quietly(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _purge_tombstones(self, tx: _Tx) -> None:
        cutoff = tx.last_seq - self.tombstone_retention
        if cutoff <= tx.floor:
            return
        row = self._conn.execute(
            "SELECT max(seq) FROM expected_orders WHERE deleted = 1 AND seq <= ?", (cutoff,)
        ).fetchone()
        if row is None or row[0] is None:
            return
        self._conn.execute(
            "DELETE FROM expected_orders WHERE deleted = 1 AND seq <= ?", (int(row[0]),)
        )
        tx.floor = int(row[0])

    def _fetch_order(self, client_order_id: str) -> tuple[ExpectedOrder, int | None] | None:
        row = self._conn.execute(
            f"SELECT {_ORDER_COLUMNS}, end_seq FROM expected_orders "
            "WHERE client_order_id = ? AND deleted = 0",
            (client_order_id,),
        ).fetchone()
        if row is None:
            return None
        return self._order_from_row(row), row[-1]

    def _require(self, client_order_id: str) -> tuple[ExpectedOrder, int | None]:
        found = self._fetch_order(client_order_id)
        if found is None:
            raise UnknownOrder(f"expected store has no order {client_order_id!r}")
        return found

    def _put_order(self, tx: _Tx, order: ExpectedOrder, end_seq: int | None) -> None:
        seq = tx.next_seq()
        if order.ended_ts_ms is None:
            end_seq = None
        elif end_seq is None:
            end_seq = seq
        self._conn.execute(
            f"INSERT OR REPLACE INTO expected_orders ({_ORDER_COLUMNS}, seq, deleted, end_seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (
                order.client_order_id,
                order.symbol,
                Side(order.side).value,
                str(order.qty),
                None if order.price is None else str(order.price),
                order.order_type,
                PositionSide(order.position_side).value,
                OrderStatus(order.status).value,
                order.created_ts_ms,
                order.updated_ts_ms,
                int(order.cancel_requested),
                order.ended_ts_ms,
                int(order.is_algo),
                seq,
                end_seq,
            ),
        )
        tx.staged.append(("o", order.client_order_id, order))

    def _tombstone(self, tx: _Tx, client_order_id: str) -> None:
        self._conn.execute(
            "UPDATE expected_orders SET deleted = 1, seq = ?, end_seq = NULL "
            "WHERE client_order_id = ?",
            (tx.next_seq(), client_order_id),
        )
        tx.live -= 1
        tx.tombstones += 1
        tx.staged.append(("o", client_order_id, None))

    def _evict_oldest_ended(self, tx: _Tx) -> None:
        row = self._conn.execute(
            "SELECT client_order_id FROM expected_orders "
            "WHERE deleted = 0 AND ended_ts_ms IS NOT NULL "
            "ORDER BY ended_ts_ms, end_seq LIMIT 1"
        ).fetchone()
        if row is not None:
            self._tombstone(tx, row[0])

    def _require_open(self) -> None:
        if self._closed:
            raise self._fail("store is closed")

    def _require_writable(self) -> None:
        self._require_open()
        if self.readonly:
            raise self._fail("opened read-only; writes are refused")

    # --- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent). The mirror stays readable."""
        if self._closed:
            return
        self._closed = True
        self._rollback_quietly()
        self._conn.close()

    def __enter__(self) -> SqliteExpectedStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _describe(exc: sqlite3.Error) -> str:
    text = str(exc).lower()
    if "not a database" in text:
        return "is not a SQLite database (corrupt or foreign file)"
    if "malformed" in text or "corrupt" in text:
        return "is damaged"
    if "locked" in text or "busy" in text:
        return "is locked by another process beyond the busy timeout"
    return "database error"
