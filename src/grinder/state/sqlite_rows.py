"""Rows of the SQLite expected-state store: decoding them, and the statements
that read and change them.

Decimals are stored as TEXT (``str(Decimal)``), so they round-trip exactly. A
removed order stays as a tombstone row (``deleted = 1``) stamped with the
sequence of its removal, so that readers learn of it; ``end_seq`` orders ended
orders of equal end time for eviction.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from grinder.reconcile.types import (
    ExpectedOrder,
    ExpectedPosition,
    OrderStatus,
    PositionKey,
    PositionSide,
    Side,
)
from grinder.state.expected import POSITION_SIDES, SIDES, STATUSES
from grinder.state.sqlite_schema import store_error
from grinder.state.sqlite_tx import WriteTx

ORDER_COLUMNS = (
    "client_order_id, symbol, side, qty, price, order_type, position_side, status, "
    "created_ts_ms, updated_ts_ms, cancel_requested, ended_ts_ms, is_algo"
)
POSITION_COLUMNS = "symbol, position_side, qty, updated_ts_ms"


# --- decoding --------------------------------------------------------------------------------


def order_from_row(path: Path, r: tuple[Any, ...]) -> ExpectedOrder:
    try:
        return ExpectedOrder(
            client_order_id=r[0],
            symbol=r[1],
            side=SIDES[r[2]],
            qty=Decimal(r[3]),
            price=None if r[4] is None else Decimal(r[4]),
            order_type=r[5],
            position_side=POSITION_SIDES[r[6]],
            status=STATUSES[r[7]],
            created_ts_ms=int(r[8]),
            updated_ts_ms=int(r[9]),
            cancel_requested=bool(r[10]),
            ended_ts_ms=None if r[11] is None else int(r[11]),
            is_algo=bool(r[12]),
        )
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise store_error(path, f"is damaged: bad row for order {r[0]!r}") from exc


def position_from_row(path: Path, r: tuple[Any, ...]) -> ExpectedPosition:
    try:
        return ExpectedPosition(
            symbol=r[0],
            position_side=POSITION_SIDES[r[1]],
            qty=Decimal(r[2]),
            updated_ts_ms=int(r[3]),
        )
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise store_error(path, f"is damaged: bad row for position {r[0]!r}/{r[1]!r}") from exc


# --- reads -----------------------------------------------------------------------------------


def load_all(
    conn: sqlite3.Connection, path: Path
) -> tuple[dict[str, ExpectedOrder], dict[PositionKey, ExpectedPosition]]:
    """Every live order and every position."""
    orders = {
        r[0]: order_from_row(path, r)
        for r in conn.execute(f"SELECT {ORDER_COLUMNS} FROM expected_orders WHERE deleted = 0")
    }
    positions: dict[PositionKey, ExpectedPosition] = {}
    for r in conn.execute(f"SELECT {POSITION_COLUMNS} FROM expected_positions"):
        pos = position_from_row(path, r)
        positions[pos.key] = pos
    return orders, positions


def load_since(
    conn: sqlite3.Connection, path: Path, seen: int
) -> tuple[list[tuple[str, ExpectedOrder | None]], list[ExpectedPosition]]:
    """The orders (``None``: removed) and positions changed after sequence ``seen``.

    Everything is decoded before anything is returned: a bad row raises."""
    order_rows = conn.execute(
        f"SELECT {ORDER_COLUMNS}, deleted FROM expected_orders WHERE seq > ?", (seen,)
    ).fetchall()
    position_rows = conn.execute(
        f"SELECT {POSITION_COLUMNS} FROM expected_positions WHERE seq > ?", (seen,)
    ).fetchall()
    orders = [(r[0], None if r[-1] else order_from_row(path, r)) for r in order_rows]
    positions = [position_from_row(path, r) for r in position_rows]
    return orders, positions


def fetch_order(
    conn: sqlite3.Connection, path: Path, client_order_id: str
) -> tuple[ExpectedOrder, int | None] | None:
    """A live order as the file holds it now, with its ``end_seq``."""
    row = conn.execute(
        f"SELECT {ORDER_COLUMNS}, end_seq FROM expected_orders "
        "WHERE client_order_id = ? AND deleted = 0",
        (client_order_id,),
    ).fetchone()
    if row is None:
        return None
    return order_from_row(path, row), row[-1]


# --- changes ---------------------------------------------------------------------------------


def put_order(
    conn: sqlite3.Connection, tx: WriteTx, order: ExpectedOrder, end_seq: int | None
) -> None:
    """Insert or replace ``order``; ``end_seq`` None (for an ended order) takes the new
    sequence, i.e. the order ended now."""
    seq = tx.next_seq()
    if order.ended_ts_ms is None:
        end_seq = None
    elif end_seq is None:
        end_seq = seq
    conn.execute(
        f"INSERT OR REPLACE INTO expected_orders ({ORDER_COLUMNS}, seq, deleted, end_seq) "
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


def put_position(conn: sqlite3.Connection, tx: WriteTx, pos: ExpectedPosition) -> None:
    seq = tx.next_seq()
    conn.execute(
        "INSERT OR REPLACE INTO expected_positions "
        "(symbol, position_side, seq, qty, updated_ts_ms) VALUES (?, ?, ?, ?, ?)",
        (pos.symbol, pos.position_side.value, seq, str(pos.qty), pos.updated_ts_ms),
    )
    tx.staged.append(("p", pos.key, pos))


def tombstone(conn: sqlite3.Connection, tx: WriteTx, client_order_id: str) -> None:
    """Remove a live order, leaving a tombstone row."""
    conn.execute(
        "UPDATE expected_orders SET deleted = 1, seq = ?, end_seq = NULL WHERE client_order_id = ?",
        (tx.next_seq(), client_order_id),
    )
    tx.live -= 1
    tx.tombstones += 1
    tx.staged.append(("o", client_order_id, None))


def evict_oldest_ended(conn: sqlite3.Connection, tx: WriteTx) -> None:
    row = conn.execute(
        "SELECT client_order_id FROM expected_orders "
        "WHERE deleted = 0 AND ended_ts_ms IS NOT NULL "
        "ORDER BY ended_ts_ms, end_seq LIMIT 1"
    ).fetchone()
    if row is not None:
        tombstone(conn, tx, row[0])


def evict_ended_before(conn: sqlite3.Connection, tx: WriteTx, cutoff_ms: int) -> int:
    """Remove the orders that ended at or before ``cutoff_ms``; how many."""
    rows = conn.execute(
        "SELECT client_order_id FROM expected_orders "
        "WHERE deleted = 0 AND ended_ts_ms IS NOT NULL AND ended_ts_ms <= ?",
        (cutoff_ms,),
    ).fetchall()
    for (cid,) in rows:
        tombstone(conn, tx, cid)
    return len(rows)
