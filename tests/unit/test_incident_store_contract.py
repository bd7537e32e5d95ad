"""One contract for every incident store (``grinder.incidents.store.IncidentStore``).

Each test runs against ``MemoryIncidentStore``, ``SqliteIncidentStore`` (a real file under
``tmp_path``) and ``RedisIncidentStore`` (a real ``redis-server``, the ``redis_server``
fixture). What a store holds is checked through the store that wrote it and through a
second one opened on the same backend (for the memory store, the store itself): the
service writes, ``grinder incidents`` reads, and a new HA leader continues.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from grinder.ha.connection import RedisConnection
from grinder.incidents import ledger as core
from grinder.incidents.causes import CauseVerdict
from grinder.incidents.records import (
    Ack,
    Evidence,
    IncidentRecord,
    LedgerCorrupt,
    LedgerError,
    TradeRow,
    TradesEvidence,
    UnknownIncident,
)
from grinder.incidents.redis_store import RedisIncidentStore
from grinder.incidents.sqlite_store import SqliteIncidentStore
from grinder.incidents.store import MemoryIncidentStore
from grinder.reconcile.actions import ActionResult
from grinder.reconcile.labels import IncidentCause, Mode, ResultStatus
from grinder.reconcile.routing import ActionKind
from grinder.reconcile.types import Mismatch, MismatchType, PositionSide
from tests.support.ids import ours

T0 = 1_800_000_000_000
DAY = core.DAY_MS
VERDICT = CauseVerdict(
    IncidentCause.MANUAL, (Evidence("fill", "BUY 1 by web_a", T0 - 1, (("qty", "1"),)),)
)


def order_mismatch(n: int) -> Mismatch:
    return Mismatch(
        type=MismatchType.ORDER_EXISTS_UNEXPECTED,
        symbol="BTCUSDT",
        client_order_id=ours(n),
        observed_status="NEW",
        observed_qty=Decimal("0.002"),
    )


def position_mismatch(symbol: str = "ETHUSDT") -> Mismatch:
    return Mismatch(
        type=MismatchType.POSITION_NONZERO_UNEXPECTED,
        symbol=symbol,
        position_side=PositionSide.BOTH,
        expected_qty=Decimal(0),
        observed_qty=Decimal("0.05"),
    )


def opened(m: Mismatch, at: int = T0) -> IncidentRecord:
    return core.opened(m, at, f"run-{at}", VERDICT)


@dataclass
class Backend:
    store: Any
    open_other: Callable[[], Any]
    damage: Callable[[str], None]
    """Make the stored record of an incident unreadable, as a damaged store would hold it."""

    def views(self) -> list[Any]:
        return [self.store, self.open_other()]


def _memory(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    store = MemoryIncidentStore()

    def damage(incident_id: str) -> None:
        pytest.skip("a memory store holds values, never bytes to damage")

    return Backend(store, lambda: store, damage)


def _sqlite(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    path = tmp_path / "incidents.db"
    opened_stores: list[SqliteIncidentStore] = []

    def open_store(**kw: Any) -> SqliteIncidentStore:
        s = SqliteIncidentStore(path, **kw)
        opened_stores.append(s)
        return s

    request.addfinalizer(lambda: [s.close() for s in opened_stores])

    def damage(incident_id: str) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE incidents SET record = '{not json' WHERE id = ?", (incident_id,))

    store = open_store()
    return Backend(store, lambda: open_store(readonly=True), damage)


def _redis(tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    server = request.getfixturevalue("redis_server")
    conns: list[RedisConnection] = []

    def open_store() -> RedisIncidentStore:
        conn = RedisConnection(server.url, namespace="contract")
        conns.append(conn)
        return RedisIncidentStore(conn)

    request.addfinalizer(lambda: [c.close() for c in conns])

    def damage(incident_id: str) -> None:
        server.client().hset("contract:incidents:records", incident_id, '{"v": 1, "id": 3}')

    return Backend(open_store(), open_store, damage)


BACKENDS = {"memory": _memory, "sqlite": _sqlite, "redis": _redis}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](tmp_path, request)


# --- writing and reading -------------------------------------------------------------------------


def test_an_opened_incident_reads_back_whole(backend: Backend) -> None:
    rec = opened(position_mismatch())
    assert backend.store.open_or_adopt(rec) == rec
    for view in backend.views():
        assert view.get(rec.id) == rec
        assert view.open_incidents() == [rec]
        assert view.get("INC-NOSUCHONE") is None


def test_one_open_incident_per_key_the_second_writer_adopts_the_first(backend: Backend) -> None:
    first = opened(order_mismatch(1), T0)
    second = opened(order_mismatch(1), T0 + 5)  # another instance, or a restarted one
    assert first.id != second.id
    backend.store.open_or_adopt(first)
    other = backend.open_other() if backend.store.kind == "redis" else backend.store
    assert other.open_or_adopt(second) == first
    for view in backend.views():
        assert [r.id for r in view.open_incidents()] == [first.id]
        assert view.get(second.id) is None


def test_a_cleared_incident_leaves_the_key_free_for_the_next(backend: Backend) -> None:
    first = opened(order_mismatch(1), T0)
    backend.store.open_or_adopt(first)
    backend.store.put(core.cleared(first, T0 + 1_000))
    again = opened(order_mismatch(1), T0 + 2_000)
    assert backend.store.open_or_adopt(again) == again
    for view in backend.views():
        assert [r.id for r in view.open_incidents()] == [again.id]
        assert view.get(first.id).cleared_ms == T0 + 1_000


def test_put_replaces_the_record_and_never_its_acknowledgement(backend: Backend) -> None:
    rec = opened(position_mismatch())
    backend.store.open_or_adopt(rec)
    ack = Ack(by="alice", ts_ms=T0 + 10, note="flattened by hand")
    assert backend.store.acknowledge(rec.id, ack).ack == ack
    step = ActionResult(
        run_id="run-9",
        kind=ActionKind.FLATTEN,
        mismatch=position_mismatch(),
        status=ResultStatus.BLOCKED,
        mode=Mode.DRY_RUN,
        reason="action_is_none",
        ts_ms=T0 + 20,
    )
    later = core.seen(core.with_step(rec, core.step_of(step)), T0 + 60_000)
    backend.store.put(later)  # the service's copy, written without the acknowledgement
    for view in backend.views():
        got = view.get(rec.id)
        assert got == replace(later, ack=ack)
        assert view.acks([rec.id, "INC-NOSUCHONE"]) == {rec.id: ack}
        (summary,) = view.summaries()
        assert (summary.ack_by, summary.ack_ts_ms) == ("alice", T0 + 10)


def test_acknowledging_an_unknown_incident_is_refused(backend: Backend) -> None:
    with pytest.raises(UnknownIncident, match="no incident 'INC-NOPE'"):
        backend.store.acknowledge("INC-NOPE", Ack(by="a", ts_ms=T0, note="n"))


def test_summaries_newest_first_open_only_and_since(backend: Backend) -> None:
    a = opened(order_mismatch(1), T0)
    b = opened(order_mismatch(2), T0 + 1_000)
    c = opened(position_mismatch(), T0 + 2_000)
    for rec in (a, b, c):
        backend.store.open_or_adopt(rec)
    backend.store.put(core.cleared(a, T0 + 10_000))
    backend.store.put(core.cleared(b, T0 + 20_000))
    for view in backend.views():
        assert [s.id for s in view.summaries()] == [c.id, b.id, a.id]
        assert [s.id for s in view.summaries(open_only=True)] == [c.id]
        assert [s.id for s in view.summaries(since_ms=T0 + 15_000)] == [c.id, b.id]
        assert [s.id for s in view.summaries(limit=2)] == [c.id, b.id]
        top = view.summaries()[0]
        assert (top.type, top.symbol, top.subject, top.cause) == (
            MismatchType.POSITION_NONZERO_UNEXPECTED,
            "ETHUSDT",
            "BOTH",
            IncidentCause.MANUAL,
        )


def test_prune_drops_old_cleared_incidents_and_keeps_open_ones(backend: Backend) -> None:
    old = opened(order_mismatch(1), T0)
    kept = opened(order_mismatch(2), T0 + 1)
    stays_open = opened(order_mismatch(3), T0 + 2)
    for rec in (old, kept, stays_open):
        backend.store.open_or_adopt(rec)
    backend.store.put(core.cleared(old, T0 + 10))
    backend.store.put(core.cleared(kept, T0 + 40 * DAY))
    backend.store.acknowledge(old.id, Ack(by="a", ts_ms=T0 + 11, note="n"))
    retention = core.Retention(max_age_ms=30 * DAY, max_count=10)
    assert backend.store.prune(T0 + 50 * DAY, retention) == 1
    for view in backend.views():
        assert {s.id for s in view.summaries()} == {kept.id, stays_open.id}
        assert view.get(old.id) is None
    assert backend.store.prune(T0 + 50 * DAY, core.Retention(max_age_ms=DAY, max_count=1)) == 1
    assert [s.id for s in backend.store.summaries()] == [stays_open.id]


def test_a_damaged_summary_is_refused_naming_the_store(request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue("redis_server")
    conn = RedisConnection(server.url, namespace="damaged")
    store = RedisIncidentStore(conn)
    rec = opened(position_mismatch())
    store.open_or_adopt(rec)
    for bad in ('["INC-X", "NOPE", "BTCUSDT", "BOTH", "manual", 1, 1, null]', '{"id": 1}', "[1"):
        server.client().hset("damaged:incidents:summaries", rec.id, bad)
        with pytest.raises(LedgerCorrupt, match=re.escape(store.where)):
            store.summaries()
    conn.close()


def test_a_damaged_record_is_refused_naming_the_store_and_the_incident(backend: Backend) -> None:
    rec = opened(position_mismatch())
    backend.store.open_or_adopt(rec)
    backend.damage(rec.id)
    for view in backend.views():
        with pytest.raises(LedgerCorrupt) as err:
            view.get(rec.id)
        assert view.where in str(err.value)
        with pytest.raises(LedgerCorrupt):
            view.open_incidents()


# --- the SQLite file -----------------------------------------------------------------------------


def test_the_ledger_file_outlives_its_writer(tmp_path: Path) -> None:
    path = tmp_path / "incidents.db"
    store = SqliteIncidentStore(path)
    rec = opened(position_mismatch())
    store.open_or_adopt(rec)
    store.close()
    again = SqliteIncidentStore(path)
    assert again.open_incidents() == [rec]
    again.close()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a database, just text" * 40, "not a SQLite database"),
        (None, "is not a grinder incident ledger"),
    ],
)
def test_a_file_that_is_no_ledger_is_refused_and_left_as_it_is(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "incidents.db"
    if content is None:
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE other (x)")
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    for readonly in (True, False):
        with pytest.raises(LedgerError, match=message):
            SqliteIncidentStore(path, readonly=readonly)
    assert path.read_bytes() == before


def test_a_ledger_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "incidents.db"
    SqliteIncidentStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = 7 WHERE key = 'schema_version'")
    with pytest.raises(LedgerCorrupt, match="schema_version 7"):
        SqliteIncidentStore(path, readonly=True)


def test_a_read_only_store_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "incidents.db"
    SqliteIncidentStore(path).close()
    store = SqliteIncidentStore(path, readonly=True)
    with pytest.raises(LedgerError, match="read-only"):
        store.put(opened(position_mismatch()))
    store.close()


# --- Redis ---------------------------------------------------------------------------------------


def test_redis_keeps_the_ledger_in_the_deployments_namespace(
    request: pytest.FixtureRequest,
) -> None:
    server = request.getfixturevalue("redis_server")
    conn = RedisConnection(server.url, namespace="deploy-a")
    store = RedisIncidentStore(conn)
    store.open_or_adopt(opened(position_mismatch()))
    keys = sorted(server.client().keys("*"))
    assert keys == [
        "deploy-a:incidents:open",
        "deploy-a:incidents:records",
        "deploy-a:incidents:summaries",
    ]
    other = RedisIncidentStore(RedisConnection(server.url, namespace="deploy-b"))
    assert other.summaries() == []
    (summary,) = [json.loads(v) for v in server.client().hvals("deploy-a:incidents:summaries")]
    assert summary[4] == "manual"  # the compact form: a JSON array in SUMMARY_KEYS order
    conn.close()
    other.conn.close()


def test_a_records_trades_read_back_whole(backend: Backend) -> None:
    rec = opened(position_mismatch())
    backend.store.open_or_adopt(rec)
    trades = TradesEvidence(
        fetched_ms=T0 + 5,
        start_ms=T0 - 600_000,
        end_ms=T0 + 4,
        difference="0.05",
        explained=True,
        signed_sum="0.05",
        unexplained="0",
        trades=(TradeRow(11, 22, "BUY", "0.05", "2000.1", "0.04", "USDT", T0 - 50),),
    )
    later = core.with_trades(rec, trades)
    backend.store.put(later)
    for view in backend.views():
        assert view.get(rec.id) == later
        assert view.open_incidents() == [later]
