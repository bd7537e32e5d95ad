"""The expected-state SQLite file: its schema, and opening it with every check.

``open_database()`` is the whole of what ``SqliteExpectedStore`` does at open:
WAL journal, ``synchronous``, ``busy_timeout``, schema created in a fresh file or
verified in an existing one (``meta.application`` / ``meta.schema_version``),
then ``PRAGMA quick_check``. Any failure is an ``ExpectedStoreError`` naming the
path; nothing is ever recreated over an existing file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from grinder.state.expected import ExpectedStoreError

SCHEMA_VERSION = 1
APPLICATION = "grinder-expected-state"
DEFAULT_BUSY_TIMEOUT_MS = 5_000
HEARTBEAT_KEY = "bot_heartbeat_ms"
"""``meta`` key of the bot's last heartbeat (ms since the epoch, the bot's clock). Optional:
a file written before heartbeats existed has none and reads as "never written by a bot";
an older grinder ignores the key. Neither needs a new schema version."""

Synchronous = Literal["FULL", "NORMAL"]

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


# --- errors ----------------------------------------------------------------------------------


def store_error(
    path: Path | str, problem: str, exc: BaseException | None = None
) -> ExpectedStoreError:
    """``expected-state database <path>: <problem>[: <exc on one line>]``."""
    detail = f": {' '.join(str(exc).split())}" if exc is not None and str(exc) else ""
    return ExpectedStoreError(f"expected-state database {path}: {problem}{detail}")


def db_error(path: Path | str, exc: sqlite3.Error) -> ExpectedStoreError:
    """A SQLite error as an ``ExpectedStoreError`` saying what it means for the file."""
    return store_error(path, describe_error(exc), exc)


def describe_error(exc: sqlite3.Error) -> str:
    text = str(exc).lower()
    if "not a database" in text:
        return "is not a SQLite database (corrupt or foreign file)"
    if "malformed" in text or "corrupt" in text:
        return "is damaged"
    if "locked" in text or "busy" in text:
        return "is locked by another process beyond the busy timeout"
    return "database error"


# --- opening ---------------------------------------------------------------------------------


def open_database(
    path: Path,
    *,
    readonly: bool,
    synchronous: Synchronous,
    busy_timeout_ms: int,
) -> sqlite3.Connection:
    """Open (and, when new and writable, initialise) the file; every check at open."""
    try:
        exists = path.exists()
        fresh = not exists or (path.is_file() and path.stat().st_size == 0)
    except OSError as exc:
        raise store_error(path, "cannot be read", exc) from exc
    if exists and not path.is_file():
        raise store_error(path, "is not a file")
    if readonly and not exists:
        raise store_error(path, "does not exist")
    timeout = busy_timeout_ms / 1000
    try:
        if readonly:
            uri = f"file:{quote(str(path.resolve()))}?mode=ro"
            conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, timeout=timeout, check_same_thread=False
            )
        else:
            conn = sqlite3.connect(
                str(path), isolation_level=None, timeout=timeout, check_same_thread=False
            )
    except sqlite3.Error as exc:
        raise store_error(path, "cannot be opened", exc) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if fresh and not readonly:
            # Nothing to protect in a new file: switch to WAL before creating tables.
            _enable_wal(conn, path)
        _check_or_create_schema(conn, path, readonly)
        if not readonly:
            _enable_wal(conn, path)
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("PRAGMA journal_size_limit = 67108864")
        _quick_check(conn, path)
    except ExpectedStoreError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise db_error(path, exc) from exc
    return conn


def _enable_wal(conn: sqlite3.Connection, path: Path) -> None:
    row = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    mode = str(row[0]).lower() if row else ""
    if mode != "wal":
        raise store_error(
            path, f"cannot use WAL journal mode (got {mode!r}); put it on a local file system"
        )


def _check_or_create_schema(conn: sqlite3.Connection, path: Path, readonly: bool) -> None:
    conn.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")
    try:
        tables = {
            str(name)
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        if not tables:
            if readonly:
                raise store_error(path, "is empty (not initialised by a writer yet)")
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
            _verify_schema(conn, path, tables)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _verify_schema(conn: sqlite3.Connection, path: Path, tables: set[str]) -> None:
    if "meta" not in tables:
        raise store_error(path, "is not a grinder expected-state database (no meta table)")
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error as exc:
        raise store_error(path, "is not a grinder expected-state database", exc) from exc
    if meta.get("application") != APPLICATION:
        raise store_error(
            path,
            f"is not a grinder expected-state database (application={meta.get('application')!r})",
        )
    version = meta.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise store_error(path, f"has an unknown schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise store_error(
            path,
            f"has schema_version {version}, newer than this grinder supports "
            f"({SCHEMA_VERSION}); upgrade grinder",
        )
    if version != SCHEMA_VERSION:
        raise store_error(
            path,
            f"has an unknown schema_version {version} (this grinder supports {SCHEMA_VERSION})",
        )
    missing = sorted(_TABLES - tables)
    if missing:
        raise store_error(path, f"is damaged: missing table(s) {', '.join(missing)}")
    for key in ("last_seq", "live_orders", "tombstone_floor"):
        if not isinstance(meta.get(key), int):
            raise store_error(path, f"is damaged: meta {key} is {meta.get(key)!r}")
    beat = meta.get(HEARTBEAT_KEY)
    if beat is not None and (not isinstance(beat, int) or isinstance(beat, bool)):
        raise store_error(path, f"is damaged: meta {HEARTBEAT_KEY} is {beat!r}")


def _quick_check(conn: sqlite3.Connection, path: Path) -> None:
    rows = conn.execute("PRAGMA quick_check").fetchall()
    if [r[0] for r in rows] != ["ok"]:
        first = " ".join(str(rows[0][0]).split()) if rows else "no result"
        raise store_error(path, f"is damaged (quick_check: {first})")
