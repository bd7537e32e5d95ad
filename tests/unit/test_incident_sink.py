"""The ledger in the service (``IncidentLedger``): through restarts, failures and roles.

A real SQLite ledger file, a real audit file, the real ``Reporter``; the clock is a
``ManualClock``.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from grinder.clock import ManualClock
from grinder.incidents.metrics import IncidentMetrics
from grinder.incidents.records import Ack, IncidentRecord, LedgerError, UnknownIncident
from grinder.incidents.sink import IncidentLedger, LedgerInputs
from grinder.incidents.sqlite_store import SqliteIncidentStore
from grinder.incidents.store import MemoryIncidentStore
from grinder.reconcile.actions import ActionResult
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.engine import TriageFinding
from grinder.reconcile.labels import Mode, ResultStatus, TriageOutcome
from grinder.reconcile.routing import ActionKind
from grinder.reconcile.types import Mismatch, MismatchType, OrderStatus, PositionSide
from grinder.reporting.audit import AuditWriter
from grinder.reporting.report import Reporter
from tests.support.ids import ours
from tests.support.mismatches import ORPHAN

T0 = 1_800_000_000_000
ENDED = Mismatch(
    type=MismatchType.ORDER_STATUS_DIVERGENCE,
    symbol="BTCUSDT",
    client_order_id=ours(2),
    expected_status="NEW",
    observed_status="CANCELED",
)
POSITION = Mismatch(
    type=MismatchType.POSITION_NONZERO_UNEXPECTED,
    symbol="ETHUSDT",
    position_side=PositionSide.BOTH,
    expected_qty=Decimal(0),
    observed_qty=Decimal("0.05"),
)


class Rig:
    def __init__(self, tmp: Path, **kw: Any) -> None:
        self.tmp = tmp
        self.clock = ManualClock(T0)
        self.audit_path = tmp / "audit.jsonl"
        self.registry = CollectorRegistry()
        self.heartbeat_age = 1.0
        store = kw.pop("store", None) or SqliteIncidentStore(tmp / "incidents.db")
        self.ledger = IncidentLedger(
            store,
            ReconcileConfig(),
            clock=self.clock,
            inputs=LedgerInputs(heartbeat_age_s=lambda: self.heartbeat_age),
            audit=AuditWriter(self.audit_path),
            metrics=IncidentMetrics(self.registry),
            **kw,
        )
        self.ledger.load()

    def run(
        self, new: list[Mismatch], cleared: list[Mismatch], standing: list[Mismatch]
    ) -> dict[Any, Any]:
        fields = self.ledger.incidents("run", new, cleared)
        self.ledger.run_end("run", standing)
        return dict(fields)

    def audit(self, event: str | None = None) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        lines = [json.loads(x) for x in self.audit_path.read_text().splitlines()]
        return [r for r in lines if event is None or r["event_type"] == event]

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels or None)
        return 0.0 if value is None else value

    def close(self) -> None:
        self.ledger.close()


def test_an_incident_opens_stands_and_clears_with_its_audit_trail(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.heartbeat_age = float("inf")
    fields = rig.run([ORPHAN], [], [ORPHAN])
    incident_id = fields[ORPHAN.key]["incident_id"]
    assert fields[ORPHAN.key]["cause"] == "bot_stopped"
    (opened,) = rig.audit("INCIDENT_OPENED")
    assert opened["incident_id"] == incident_id
    assert opened["cause"] == "bot_stopped"
    assert opened["client_order_id"] == ours(1)
    assert opened["evidence"] == [
        "the bot's heartbeat was never written (limit 60 s): it had stopped recording"
    ]
    assert rig.metric("grinder_incidents_open", type=ORPHAN.type.value, cause="bot_stopped") == 1
    rig.clock.advance(90_000)
    assert rig.metric("grinder_incidents_oldest_unacknowledged_age_seconds") == 90.0
    rig.run([], [], [ORPHAN])
    rig.clock.advance(10_000)
    rig.run([], [ORPHAN], [])
    (cleared,) = rig.audit("INCIDENT_CLEARED")
    assert cleared["incident_id"] == incident_id
    assert cleared["duration_ms"] == 100_000
    rec = rig.ledger.get(incident_id)
    assert rec is not None
    assert (rec.first_seen_ms, rec.last_seen_ms, rec.cleared_ms) == (T0, T0 + 90_000, T0 + 100_000)
    assert rig.metric("grinder_incidents_open", type=ORPHAN.type.value, cause="bot_stopped") == 0
    assert rig.metric("grinder_incidents_oldest_unacknowledged_age_seconds") == 0


def test_a_restart_continues_the_open_incident_and_clears_what_no_longer_stands(
    tmp_path: Path,
) -> None:
    first = Rig(tmp_path)
    ids = first.run([ORPHAN, POSITION], [], [ORPHAN, POSITION])
    first.close()
    # A new process, the same file: the engine reports both as new again; one still stands.
    second = Rig(tmp_path)
    second.clock.set(T0 + 30_000)
    again = second.run([ORPHAN], [], [ORPHAN])
    assert again[ORPHAN.key]["incident_id"] == ids[ORPHAN.key]["incident_id"]
    assert len(second.audit("INCIDENT_OPENED")) == 2  # the first process's two, no more
    (cleared,) = second.audit("INCIDENT_CLEARED")
    assert cleared["incident_id"] == ids[POSITION.key]["incident_id"]
    assert cleared["cleared_ms"] == T0 + 30_000
    (still,) = second.ledger.open_records()
    assert still.id == ids[ORPHAN.key]["incident_id"]


def test_a_cause_found_later_replaces_unknown(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    fields = rig.run([ENDED], [], [ENDED])
    assert fields[ENDED.key]["cause"] == "unknown"
    rig.ledger.triaged(
        [TriageFinding(ours(2), TriageOutcome.FOUND_ENDED, OrderStatus.CANCELED, T0 - 1)]
    )
    rig.clock.advance(1_000)
    rig.run([], [], [ENDED])  # an unknown cause is looked at again every 5 s, not every run
    assert rig.ledger.open_records()[0].cause.value == "unknown"
    rig.clock.advance(4_000)
    rig.run([], [], [ENDED])
    rec = rig.ledger.get(fields[ENDED.key]["incident_id"])
    assert rec is not None
    assert rec.cause.value == "missed_stream_event"
    assert rec.evidence[0].kind == "triage"


def test_remediation_steps_are_kept_and_a_standing_block_is_one_step(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    reporter = Reporter(ledger=rig.ledger)
    rig.ledger.incidents("run-1", [POSITION], [])

    def outcome(status: ResultStatus, reason: str | None) -> ActionResult:
        return ActionResult(
            run_id="run-1",
            kind=ActionKind.FLATTEN,
            mismatch=POSITION,
            status=status,
            mode=Mode.LIVE,
            reason=reason,
            ts_ms=rig.clock(),
        )

    for _ in range(3):
        reporter.result(None, outcome(ResultStatus.BLOCKED, "not_armed"))  # type: ignore[arg-type]
        rig.clock.advance(1_000)
    reporter.result(None, outcome(ResultStatus.EXECUTED, None))  # type: ignore[arg-type]
    (rec,) = rig.ledger.open_records()
    rig.ledger.run_end("run-1", [POSITION])  # the run's changes are written at its end
    stored = rig.ledger.get(rec.id)
    assert stored is not None
    assert [(s.status.value, s.repeats) for s in stored.steps] == [("BLOCKED", 3), ("EXECUTED", 1)]
    assert stored.steps[0].gates == ("not_armed",)


def test_the_mismatch_log_lines_carry_the_incident_id_and_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(tmp_path)
    reporter = Reporter(ledger=rig.ledger, logger=logging.getLogger("test.reporter"))
    with caplog.at_level(logging.INFO, logger="test.reporter"):
        reporter.incidents("run-1", [POSITION], [])
        reporter.incidents("run-2", [], [POSITION])
    (rec,) = rig.ledger.summaries()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("RECONCILE_MISMATCH ")
    assert f"incident_id={rec.id} cause=unknown" in lines[0]
    assert lines[1].startswith("RECONCILE_MISMATCH_CLEARED ")
    assert f"incident_id={rec.id}" in lines[1]


class FailingStore(MemoryIncidentStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def _check(self) -> None:
        if self.down:
            raise OSError("disk full")

    def open_or_adopt(self, rec: IncidentRecord) -> IncidentRecord:
        self._check()
        return super().open_or_adopt(rec)

    def put(self, rec: IncidentRecord) -> None:
        self._check()
        super().put(rec)


def test_a_store_that_fails_never_stops_reconciliation_and_is_written_when_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FailingStore()
    rig = Rig(tmp_path, store=store)
    with caplog.at_level(logging.WARNING, logger="grinder.incidents"):
        fields = rig.run([ORPHAN], [], [ORPHAN])
    assert fields[ORPHAN.key]["incident_id"].startswith("INC-")
    assert rig.metric("grinder_incidents_store_errors_total") >= 1
    assert 'INCIDENT_STORE_FAILED op=open store=memory error="OSError: disk full"' in caplog.text
    assert store.summaries() == []
    store.down = False
    rig.clock.advance(1_000)
    rig.run([POSITION], [], [ORPHAN, POSITION])
    store.down = True
    rig.clock.advance(1_000)
    rig.run([], [POSITION], [ORPHAN])  # the position's end cannot be written now
    store.down = False
    rig.clock.advance(1_000)
    rig.run([], [], [ORPHAN])
    by_id = {s.id: s for s in store.summaries()}
    assert by_id[fields[ORPHAN.key]["incident_id"]].is_open
    (ended,) = [s for s in by_id.values() if not s.is_open]
    assert ended.cleared_ms == T0 + 2_000


def test_only_the_writer_writes_and_a_reader_shows_the_writers_incidents(tmp_path: Path) -> None:
    path = tmp_path / "incidents.db"
    leader = Rig(tmp_path, store=SqliteIncidentStore(path))
    follower_dir = tmp_path / "follower"
    follower_dir.mkdir()
    follower = Rig(follower_dir, store=SqliteIncidentStore(path), may_write=lambda: False)
    follower_fields = follower.run([POSITION], [], [POSITION])
    assert follower_fields == {}  # nothing open yet, and a follower opens nothing
    assert follower.audit() == []
    leader_fields = leader.run([POSITION], [], [POSITION])
    follower.clock.advance(10_000)
    follower.run([], [], [POSITION])  # it reads the shared ledger after its run
    (seen,) = follower.ledger.open_records()
    assert seen.id == leader_fields[POSITION.key]["incident_id"]
    # The follower's engine sees it clear first: it logs the id, the leader clears it.
    assert follower.ledger.incidents("run", [], [POSITION])[POSITION.key]["incident_id"] == seen.id
    assert len(SqliteIncidentStore(path, readonly=True).open_incidents()) == 1


def test_taking_the_lease_continues_what_the_last_writer_left_open(tmp_path: Path) -> None:
    path = tmp_path / "incidents.db"
    leading = {"now": False}
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    new = Rig(new_dir, store=SqliteIncidentStore(path), may_write=lambda: leading["now"])
    new.run([], [], [])  # a follower's run: it has read the (empty) ledger
    old = Rig(tmp_path, store=SqliteIncidentStore(path))
    ids = old.run([ORPHAN, POSITION], [], [ORPHAN, POSITION])
    leading["now"] = True  # the old leader died; this one acquired the lease at once
    new.clock.advance(1_000)
    fields = new.run([ORPHAN], [], [ORPHAN])  # the position cleared meanwhile
    assert fields[ORPHAN.key]["incident_id"] == ids[ORPHAN.key]["incident_id"]
    assert new.audit("INCIDENT_OPENED") == []
    (cleared,) = new.audit("INCIDENT_CLEARED")
    assert cleared["incident_id"] == ids[POSITION.key]["incident_id"]
    (rec,) = new.ledger.open_records()
    assert rec.id == ids[ORPHAN.key]["incident_id"]


def test_acknowledgements_are_audited_by_the_service_and_from_the_store(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    a = rig.run([ORPHAN, POSITION], [], [ORPHAN, POSITION])
    orphan_id, position_id = a[ORPHAN.key]["incident_id"], a[POSITION.key]["incident_id"]
    acked = rig.ledger.acknowledge(orphan_id, "alice", "crashed bot; cancelled by hand")
    assert acked.ack is not None
    assert acked.ack.by == "alice"
    with pytest.raises(LedgerError, match="needs a note"):
        rig.ledger.acknowledge(position_id, "bob", "   ")
    with pytest.raises(UnknownIncident):
        rig.ledger.acknowledge("INC-NOPE", "bob", "x")
    # Another process (grinder incidents ack --ledger-db) acknowledges on the file.
    other = SqliteIncidentStore(tmp_path / "incidents.db")
    other.acknowledge(position_id, Ack(by="bob", ts_ms=T0 + 1, note="manual ETH"))
    other.close()
    rig.clock.advance(10_000)
    rig.run([], [], [ORPHAN, POSITION])
    acks = rig.audit("INCIDENT_ACKNOWLEDGED")
    assert [(r["incident_id"], r["by"], r["via"]) for r in acks] == [
        (orphan_id, "alice", "service"),
        (position_id, "bob", "store"),
    ]
    assert rig.metric("grinder_incidents_oldest_unacknowledged_age_seconds") == 0


def test_a_standing_incident_is_written_once_a_minute_and_everything_at_close(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    fields = rig.run([ORPHAN], [], [ORPHAN])
    incident_id = fields[ORPHAN.key]["incident_id"]
    path = tmp_path / "incidents.db"

    def stored_last_seen() -> int:
        reader = SqliteIncidentStore(path, readonly=True)
        rec = reader.get(incident_id)
        reader.close()
        assert rec is not None
        return rec.last_seen_ms

    for _ in range(5):  # runs 10 s apart: nothing to write yet
        rig.clock.advance(10_000)
        rig.run([], [], [ORPHAN])
    assert stored_last_seen() == T0
    rig.clock.advance(10_000)
    rig.run([], [], [ORPHAN])  # a minute since the last write
    assert stored_last_seen() == T0 + 60_000
    rig.clock.advance(10_000)
    rig.run([], [], [ORPHAN])
    assert stored_last_seen() == T0 + 60_000
    rig.close()  # the service stops: what is newer in memory is written
    assert stored_last_seen() == T0 + 70_000
