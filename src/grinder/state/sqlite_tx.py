"""Write transactions of the SQLite expected-state store.

Every write takes the write lock at its start (``BEGIN IMMEDIATE``) and reads
the counters it keeps in ``meta`` (``last_seq``, ``live_orders``,
``tombstone_floor``) into a ``WriteTx``; the rows it changes are stamped with
``WriteTx.next_seq()`` and staged for the mirror, which only sees them once the
transaction has committed. Inside a ``batch()`` each write is a savepoint: a
write that raises is undone on its own and the batch goes on.

The bot's heartbeat (``meta.bot_heartbeat_ms``) is written at commit, in the same
transaction: with ``heartbeat_clock`` every committed write stamps it (the
recorder's writes are a bot's), and ``WriteTx.heartbeat_ms`` asks for it explicitly.
It changes no row, so it takes no change sequence number.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from grinder.clock import Clock
from grinder.state.sqlite_schema import HEARTBEAT_KEY, db_error, store_error

Staged = tuple[str, Any, Any]
"""``("o", client order id, order or None when removed)`` or ``("p", key, position)``."""


class WriteTx:
    """Counters and mirror changes of one open write transaction."""

    __slots__ = ("broken", "floor", "heartbeat_ms", "last_seq", "live", "staged", "tombstones")

    def __init__(self, last_seq: int, live: int, floor: int) -> None:
        self.last_seq = last_seq
        self.live = live
        self.floor = floor
        self.tombstones = 0
        self.broken = False
        self.heartbeat_ms: int | None = None
        """A bot heartbeat to stamp at commit."""
        # ("o", cid, order or None for removed) / ("p", key, position), in write order.
        self.staged: list[Staged] = []

    def next_seq(self) -> int:
        self.last_seq += 1
        return self.last_seq

    def mark(self) -> tuple[int, int, int, int]:
        return (self.last_seq, self.live, self.tombstones, len(self.staged))

    def restore(self, mark: tuple[int, int, int, int]) -> None:
        self.last_seq, self.live, self.tombstones, staged = mark
        del self.staged[staged:]


class Transactions:
    """The write transactions of one connection.

    ``on_commit`` receives the staged changes of each committed transaction, in
    write order. ``batch_tx`` is the open batch, if any.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        tombstone_retention: int,
        on_commit: Callable[[list[Staged]], None],
        heartbeat_clock: Clock | None = None,
        on_heartbeat: Callable[[int], None] | None = None,
    ) -> None:
        self.conn = conn
        self.path = path
        self.tombstone_retention = tombstone_retention
        self.on_commit = on_commit
        self.heartbeat_clock = heartbeat_clock
        self.on_heartbeat = on_heartbeat
        self.batch_tx: WriteTx | None = None

    @contextmanager
    def write(self) -> Iterator[WriteTx]:
        """One write: its own transaction, or a savepoint inside the open batch."""
        conn = self.conn
        tx = self.batch_tx
        if tx is not None:
            mark = tx.mark()
            self._savepoint_step(tx, "SAVEPOINT grinder_op")
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
                    raise db_error(self.path, exc) from exc
                raise
            self._savepoint_step(tx, "RELEASE grinder_op")
            return
        tx = self._begin_or_fail()
        try:
            yield tx
        except BaseException as exc:
            self.rollback_quietly()
            if isinstance(exc, sqlite3.Error):
                raise db_error(self.path, exc) from exc
            raise
        self.commit(tx)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Every write inside the block in one transaction (nested batches join)."""
        if self.batch_tx is not None:
            yield
            return
        tx = self._begin_or_fail()
        self.batch_tx = tx
        try:
            yield
        except BaseException:
            self.batch_tx = None
            self.rollback_quietly()
            raise
        self.batch_tx = None
        if tx.broken:
            self.rollback_quietly()
            raise store_error(self.path, "batch rolled back after a database error inside it")
        self.commit(tx)

    def _savepoint_step(self, tx: WriteTx, statement: str) -> None:
        try:
            self.conn.execute(statement)
        except sqlite3.Error as exc:
            tx.broken = True
            raise db_error(self.path, exc) from exc

    def _begin_or_fail(self) -> WriteTx:
        try:
            return self.begin()
        except sqlite3.Error as exc:
            raise db_error(self.path, exc) from exc

    def begin(self) -> WriteTx:
        conn = self.conn
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
                raise store_error(self.path, f"is damaged: meta is {meta!r}")
        except BaseException:
            self.rollback_quietly()
            raise
        return WriteTx(last, live, floor)

    def commit(self, tx: WriteTx) -> None:
        conn = self.conn
        beat = tx.heartbeat_ms
        if self.heartbeat_clock is not None:
            beat = max(beat or 0, self.heartbeat_clock())
        try:
            if beat is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (HEARTBEAT_KEY, beat),
                )
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
            self.rollback_quietly()
            raise db_error(self.path, exc) from exc
        self.on_commit(tx.staged)
        if beat is not None and self.on_heartbeat is not None:
            self.on_heartbeat(beat)

    def rollback_quietly(self) -> None:
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _purge_tombstones(self, tx: WriteTx) -> None:
        cutoff = tx.last_seq - self.tombstone_retention
        if cutoff <= tx.floor:
            return
        row = self.conn.execute(
            "SELECT max(seq) FROM expected_orders WHERE deleted = 1 AND seq <= ?", (cutoff,)
        ).fetchone()
        if row is None or row[0] is None:
            return
        self.conn.execute(
            "DELETE FROM expected_orders WHERE deleted = 1 AND seq <= ?", (int(row[0]),)
        )
        tx.floor = int(row[0])
