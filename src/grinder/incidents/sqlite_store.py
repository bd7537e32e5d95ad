"""The ledger in a SQLite file (``--ledger-db FILE``): a service alone, across restarts.

One row per incident: the columns ``list`` shows (type, symbol, subject, cause,
times), the record's JSON (``records.record_to_json``) and, in columns of their
own, the acknowledgement -- ``put`` never writes those. A partial unique index
keeps one open incident per key. WAL journal, so ``grinder incidents`` can read
and acknowledge while the service writes. Opening checks the file is a grinder
ledger of this schema and passes ``PRAGMA quick_check``: anything else is a
``LedgerCorrupt`` naming the path; nothing is ever recreated over an existing file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from grinder.incidents.ledger import Retention, RetentionEntry, to_drop
from grinder.incidents.record_json import (
    record_from_json,
    record_to_json,
)
from grinder.incidents.records import (
    Ack,
    IncidentRecord,
    IncidentSummary,
    LedgerCorrupt,
    LedgerError,
)
from grinder.incidents.store import key_text, unknown
from grinder.reconcile.labels import IncidentCause
from grinder.reconcile.types import MismatchType
from grinder.state.sqlite_schema import describe_error

APPLICATION = "grinder-incident-ledger"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5_000

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value NOT NULL) WITHOUT ROWID",
    """CREATE TABLE incidents (
        id TEXT PRIMARY KEY NOT NULL,
        key TEXT NOT NULL,
        open INTEGER NOT NULL CHECK (open IN (0, 1)),
        type TEXT NOT NULL,
        symbol TEXT NOT NULL,
        subject TEXT NOT NULL,
        cause TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        cleared_ms INTEGER,
        record TEXT NOT NULL,
        ack_by TEXT,
        ack_ts_ms INTEGER,
        ack_note TEXT
    )""",
    "CREATE UNIQUE INDEX incidents_open_key ON incidents (key) WHERE open = 1",
    "CREATE INDEX incidents_first_seen ON incidents (first_seen_ms)",
)
_TYPES = {t.value: t for t in MismatchType}
_CAUSES = {c.value: c for c in IncidentCause}
_SUMMARY_COLUMNS = "id, type, symbol, subject, cause, first_seen_ms, last_seen_ms, cleared_ms"
_ACK_COLUMNS = "ack_by, ack_ts_ms, ack_note"


class SqliteIncidentStore:
    kind = "sqlite"

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.where = f"incident ledger {path}"
        self.readonly = readonly
        self._conn = _open(path, readonly=readonly, where=self.where)

    # --- writes --------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise LedgerError(f"{self.where}: opened read-only")
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise _error(self.where, exc) from exc
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def open_or_adopt(self, rec: IncidentRecord) -> IncidentRecord:
        with self._write() as conn:
            row = conn.execute(
                "SELECT id FROM incidents WHERE key = ? AND open = 1", (key_text(rec.key),)
            ).fetchone()
            if row is None:
                self._upsert(conn, rec)
                return rec
        found = self.get(str(row[0]))
        assert found is not None
        return found

    def put(self, rec: IncidentRecord) -> None:
        with self._write() as conn:
            self._upsert(conn, rec)

    def put_many(self, records: Iterable[IncidentRecord]) -> None:
        with self._write() as conn:
            for rec in records:
                self._upsert(conn, rec)

    def _upsert(self, conn: sqlite3.Connection, rec: IncidentRecord) -> None:
        conn.execute(
            "INSERT INTO incidents (id, key, open, type, symbol, subject, cause, first_seen_ms, "
            "last_seen_ms, cleared_ms, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET open = excluded.open, cause = excluded.cause, "
            "last_seen_ms = excluded.last_seen_ms, cleared_ms = excluded.cleared_ms, "
            "record = excluded.record",
            (
                rec.id,
                key_text(rec.key),
                1 if rec.is_open else 0,
                rec.type.value,
                rec.symbol,
                rec.subject,
                rec.cause.value,
                rec.first_seen_ms,
                rec.last_seen_ms,
                rec.cleared_ms,
                json.dumps(record_to_json(rec), separators=(",", ":")),
            ),
        )

    def acknowledge(self, incident_id: str, ack: Ack) -> IncidentRecord:
        with self._write() as conn:
            done = conn.execute(
                "UPDATE incidents SET ack_by = ?, ack_ts_ms = ?, ack_note = ? WHERE id = ?",
                (ack.by, ack.ts_ms, ack.note, incident_id),
            ).rowcount
        if not done:
            raise unknown(incident_id, self.where)
        found = self.get(incident_id)
        assert found is not None
        return found

    def prune(self, now_ms: int, retention: Retention) -> int:
        with self._write() as conn:
            entries = [
                RetentionEntry(str(i), int(f), None if c is None else int(c))
                for i, f, c in conn.execute("SELECT id, first_seen_ms, cleared_ms FROM incidents")
            ]
            drop = to_drop(entries, now_ms, retention)
            conn.executemany("DELETE FROM incidents WHERE id = ?", [(i,) for i in drop])
        return len(drop)

    # --- reads ---------------------------------------------------------------------------------

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise _error(self.where, exc) from exc

    def get(self, incident_id: str) -> IncidentRecord | None:
        rows = self._rows(
            f"SELECT record, {_ACK_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)
        )
        return self._record(rows[0]) if rows else None

    def open_incidents(self) -> list[IncidentRecord]:
        rows = self._rows(f"SELECT record, {_ACK_COLUMNS} FROM incidents WHERE open = 1")
        return [self._record(r) for r in rows]

    def _record(self, row: Any) -> IncidentRecord:
        text, by, ts, note = row
        try:
            obj = json.loads(text)
        except (TypeError, ValueError):
            raise LedgerCorrupt(f"{self.where}: a record is not JSON") from None
        ack = None if by is None else _ack(by, ts, note, self.where)
        return record_from_json(obj, self.where, ack)

    def summaries(
        self, *, open_only: bool = False, since_ms: int | None = None, limit: int | None = None
    ) -> list[IncidentSummary]:
        where, args = [], []
        if open_only:
            where.append("open = 1")
        if since_ms is not None:
            where.append("(cleared_ms IS NULL OR cleared_ms >= ?)")
            args.append(since_ms)
        sql = f"SELECT {_SUMMARY_COLUMNS}, ack_by, ack_ts_ms FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY first_seen_ms DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [self._summary(row) for row in self._rows(sql, tuple(args))]

    def _summary(self, row: Any) -> IncidentSummary:
        rid, type_, symbol, subject, cause, first, last, cleared, by, ts = row
        try:
            return IncidentSummary(
                rid, _TYPES[type_], symbol, subject, _CAUSES[cause], first, last, cleared, by, ts
            )
        except KeyError:
            raise LedgerCorrupt(f"{self.where}: incident {rid}: a column is damaged") from None

    def acks(self, ids: Iterable[str]) -> dict[str, Ack]:
        wanted = list(ids)
        out: dict[str, Ack] = {}
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._rows(
                f"SELECT id, {_ACK_COLUMNS} FROM incidents WHERE id IN ({marks}) "
                "AND ack_by IS NOT NULL",
                tuple(part),
            )
            for rid, by, ts, note in rows:
                out[str(rid)] = _ack(by, ts, note, self.where)
        return out

    def close(self) -> None:
        self._conn.close()


def _ack(by: Any, ts: Any, note: Any, where: str) -> Ack:
    if not isinstance(by, str) or not isinstance(note, str) or not isinstance(ts, int):
        raise LedgerCorrupt(f"{where}: an acknowledgement is damaged")
    return Ack(by=by, ts_ms=ts, note=note)


def _error(where: str, exc: sqlite3.Error) -> LedgerError:
    problem = describe_error(exc)
    detail = " ".join(str(exc).split())
    cls = LedgerCorrupt if problem.startswith(("is not", "is damaged")) else LedgerError
    return cls(f"{where}: {problem}: {detail}")


# --- opening ----------------------------------------------------------------------------------


def _open(path: Path, *, readonly: bool, where: str) -> sqlite3.Connection:
    try:
        exists = path.exists()
        if exists and not path.is_file():
            raise LedgerError(f"{where}: is not a file")
        fresh = not exists or path.stat().st_size == 0
    except OSError as exc:
        raise LedgerError(f"{where}: cannot be read ({exc.strerror})") from None
    if readonly and not exists:
        raise LedgerError(f"{where}: does not exist")
    try:
        if readonly:
            uri = f"file:{quote(str(path.resolve()))}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise LedgerError(f"{where}: cannot be opened ({' '.join(str(exc).split())})") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        create = fresh and not readonly
        if create:
            _enable_wal(conn, where)  # nothing to protect in a new file: WAL before the tables
        _check_schema(conn, where, create=create)
        if not readonly:
            _enable_wal(conn, where)  # only once the file is known to be a ledger
            # WAL with NORMAL: a commit survives the process; an OS crash may lose the last
            # few, as it may the audit trail's last lines (the ledger gates no write).
            conn.execute("PRAGMA synchronous = NORMAL")
        rows = conn.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in rows] != ["ok"]:
            raise LedgerCorrupt(f"{where}: is damaged (quick_check: {rows[0][0] if rows else '?'})")
    except LedgerError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise _error(where, exc) from exc
    return conn


def _enable_wal(conn: sqlite3.Connection, where: str) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if not mode or str(mode[0]).lower() != "wal":
        raise LedgerError(f"{where}: cannot use WAL journal mode (a network file system?)")


def _check_schema(conn: sqlite3.Connection, where: str, *, create: bool) -> None:
    tables = {
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    if not tables and create:
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("application", APPLICATION), ("schema_version", SCHEMA_VERSION)],
        )
        conn.execute("COMMIT")
        return
    if not tables:
        raise LedgerCorrupt(f"{where}: is empty (no service has written it yet)")
    if "meta" not in tables or "incidents" not in tables:
        raise LedgerCorrupt(f"{where}: is not a grinder incident ledger")
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("application") != APPLICATION:
        raise LedgerCorrupt(
            f"{where}: is not a grinder incident ledger (application={meta.get('application')!r})"
        )
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise LedgerCorrupt(
            f"{where}: has schema_version {meta.get('schema_version')!r}; this grinder reads "
            f"{SCHEMA_VERSION}"
        )
