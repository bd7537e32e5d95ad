"""The ledger's decisions (pure) and the record's JSON form."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

import pytest

from grinder.incidents import ledger as core
from grinder.incidents.causes import CauseVerdict
from grinder.incidents.record_json import (
    ack_from_json,
    ack_to_json,
    full_json,
    record_from_json,
    record_to_json,
)
from grinder.incidents.records import (
    Evidence,
    IncidentRecord,
    LedgerCorrupt,
    LedgerError,
)
from grinder.reconcile.actions import ActionResult
from grinder.reconcile.labels import AttemptOutcome, BlockReason, IncidentCause, Mode, ResultStatus
from grinder.reconcile.routing import ActionKind
from tests.support.mismatches import ORPHAN, UNEXPECTED_POSITION

T0 = 1_800_000_000_000
ORDER = ORPHAN
POSITION = UNEXPECTED_POSITION
MANUAL = CauseVerdict(
    IncidentCause.MANUAL,
    (
        Evidence(
            "fill", "BUY 0.05 ETHUSDT BOTH by web_x", T0 - 3_000, (("client_order_id", "web_x"),)
        ),
    ),
)


def result(
    status: ResultStatus, reason: str | None = None, ts: int = T0, **kw: object
) -> ActionResult:
    return ActionResult(
        run_id=f"run-{ts}",
        kind=ActionKind.FLATTEN,
        mismatch=POSITION,
        status=status,
        mode=Mode.LIVE,
        reason=reason,
        ts_ms=ts,
        **kw,  # type: ignore[arg-type]
    )


def test_an_incident_opens_with_its_key_cause_and_evidence() -> None:
    rec = core.opened(POSITION, T0, "run-1", MANUAL)
    assert rec.key == POSITION.key
    assert (rec.first_seen_ms, rec.last_seen_ms, rec.cleared_ms) == (T0, T0, None)
    assert rec.cause is IncidentCause.MANUAL
    assert rec.evidence == MANUAL.evidence
    assert dict(rec.facts)["observed_qty"] == "0.05"
    assert rec.id.startswith("INC-")
    assert len(rec.id) == 14


def test_the_id_is_stable_for_one_incident_and_differs_between_incidents() -> None:
    a = core.incident_id(ORDER.key, T0)
    assert a == core.incident_id(ORDER.key, T0)
    assert a != core.incident_id(ORDER.key, T0 + 1)
    assert a != core.incident_id(POSITION.key, T0)
    ids = {core.incident_id(ORDER.key, T0 + i) for i in range(10_000)}
    assert len(ids) == 10_000


def test_seen_and_cleared_move_forward_only() -> None:
    rec = core.opened(ORDER, T0, "run-1", CauseVerdict(IncidentCause.UNKNOWN))
    assert core.seen(rec, T0 - 5).last_seen_ms == T0
    rec = core.seen(rec, T0 + 10_000)
    assert rec.last_seen_ms == T0 + 10_000
    done = core.cleared(rec, T0 + 5_000)  # a clock that stepped back
    assert done.cleared_ms == T0 + 10_000
    assert not done.is_open
    assert core.cleared(done, T0 + 99_000) is done
    assert core.seen(done, T0 + 99_000) is done


def test_a_cause_once_decided_is_kept_and_unknown_takes_a_later_one() -> None:
    unknown = core.opened(POSITION, T0, "run-1", CauseVerdict(IncidentCause.UNKNOWN))
    assert core.reclassified(unknown, CauseVerdict(IncidentCause.UNKNOWN)) is unknown
    found = core.reclassified(unknown, MANUAL)
    assert found.cause is IncidentCause.MANUAL
    assert found.evidence == MANUAL.evidence
    other = CauseVerdict(IncidentCause.LIQUIDATION)
    assert core.reclassified(found, other) is found


def test_steps_record_each_outcome_and_count_a_repeated_block() -> None:
    rec = core.opened(POSITION, T0, "run-1", MANUAL)
    blocked = BlockReason.ACTION_IS_NONE.value
    for i in range(5):
        rec = core.with_step(rec, core.step_of(result(ResultStatus.BLOCKED, blocked, T0 + i)))
    assert len(rec.steps) == 1
    assert (rec.steps[0].repeats, rec.steps[0].last_ts_ms) == (5, T0 + 4)
    assert rec.steps[0].gates == (blocked,)
    done = result(
        ResultStatus.EXECUTED,
        ts=T0 + 9,
        qty=Decimal("0.05"),
        notional=Decimal("150"),
        remediation_order_id="grinder_d_ETHUSDT_R_1800000000_1",
        attempts=(AttemptOutcome.UNKNOWN, AttemptOutcome.ACCEPTED),
    )
    rec = core.with_step(rec, core.step_of(done))
    last = rec.steps[-1]
    assert last.status is ResultStatus.EXECUTED
    assert last.attempts == ("unknown", "accepted")
    assert (last.qty, last.notional, last.repeats) == ("0.05", "150", 1)
    # An executed step is never folded into the one before, even when it repeats.
    rec = core.with_step(rec, core.step_of(done))
    assert len(rec.steps) == 3


def test_steps_stay_bounded_keeping_the_first_and_the_latest() -> None:
    rec = core.opened(POSITION, T0, "run-1", MANUAL)
    reasons = [BlockReason.ACTION_IS_NONE.value, BlockReason.NOT_ARMED.value]
    for i in range(core.MAX_STEPS + 30):
        rec = core.with_step(
            rec, core.step_of(result(ResultStatus.BLOCKED, reasons[i % 2], T0 + i))
        )
    assert len(rec.steps) == core.MAX_STEPS
    assert rec.steps[0].ts_ms == T0
    assert rec.steps[-1].ts_ms == T0 + core.MAX_STEPS + 29
    assert rec.steps_dropped == 30


@pytest.mark.parametrize(
    ("by", "note", "error"),
    [
        ("alice", "", "needs a note"),
        ("alice", " \n\t ", "needs a note"),
        ("", "done", "must not be empty"),
        ("alice", "x" * 501, "at most 500"),
        ("a" * 65, "done", "at most 64"),
    ],
)
def test_an_acknowledgement_needs_a_note_and_a_name(by: str, note: str, error: str) -> None:
    rec = core.opened(ORDER, T0, "run-1", MANUAL)
    with pytest.raises(LedgerError, match=error):
        core.acknowledged(rec, by, note, T0)


def test_an_acknowledgement_is_one_line() -> None:
    rec = core.opened(ORDER, T0, "run-1", MANUAL)
    acked = core.acknowledged(rec, " alice ", "cancelled\nby  hand", T0 + 1)
    assert acked.ack is not None
    assert (acked.ack.by, acked.ack.note, acked.ack.ts_ms) == ("alice", "cancelled by hand", T0 + 1)


def entry(i: int, first: int, cleared: int | None) -> core.RetentionEntry:
    return core.RetentionEntry(f"I{i}", first, cleared)


def test_retention_drops_old_cleared_incidents_then_the_oldest_past_the_count() -> None:
    day = core.DAY_MS
    now = T0 + 100 * day
    retention = core.Retention(max_age_ms=30 * day, max_count=3)
    entries = [
        entry(1, T0, T0 + 1),  # cleared 100 days ago: too old
        entry(2, T0 + 80 * day, T0 + 80 * day),
        entry(3, T0 + 81 * day, None),  # open: always kept
        entry(4, T0 + 82 * day, T0 + 82 * day),
        entry(5, T0 + 83 * day, T0 + 83 * day),
        entry(6, T0 + 84 * day, None),
    ]
    assert core.to_drop(entries, now, retention) == ["I1", "I2", "I4"]
    only_open = [entry(i, T0 + i, None) for i in range(5)]
    assert core.to_drop(only_open, now, retention) == []
    with pytest.raises(ValueError, match="must be >= 1"):
        core.Retention(max_age_ms=0)


# --- the JSON form -------------------------------------------------------------------------------


def full_record() -> IncidentRecord:
    rec = core.opened(POSITION, T0, "run-1", MANUAL)
    rec = core.with_step(rec, core.step_of(result(ResultStatus.BLOCKED, "not_armed")))
    rec = core.seen(rec, T0 + 60_000)
    rec = core.cleared(rec, T0 + 70_000)
    return core.acknowledged(rec, "alice", "flattened by hand", T0 + 80_000)


def test_the_json_form_reads_back_the_same_record() -> None:
    rec = full_record()
    text = json.dumps(record_to_json(rec))
    assert rec.ack is not None
    back = record_from_json(json.loads(text), "test", ack_from_json(ack_to_json(rec.ack), "test"))
    assert back == rec
    assert "ack" not in record_to_json(rec)
    assert full_json(rec)["ack"] == {
        "by": "alice",
        "ts_ms": T0 + 80_000,
        "note": "flattened by hand",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 2}, "record version 2"),
        ({"type": "NOT_A_TYPE"}, "field 'type'"),
        ({"cause": "aliens"}, "field 'cause'"),
        ({"first_seen_ms": -1}, "field 'first_seen_ms'"),
        ({"first_seen_ms": True}, "field 'first_seen_ms'"),
        ({"evidence": "x"}, "field 'evidence'"),
        ({"steps": [{"ts_ms": 1}]}, "steps[0]"),
        ({"facts": {"a": 1}}, "field 'facts'"),
    ],
)
def test_a_damaged_record_is_refused_naming_the_field(
    change: dict[str, object], message: str
) -> None:
    obj = {**record_to_json(full_record()), **change}
    with pytest.raises(LedgerCorrupt, match=message.replace("[", r"\[").replace("]", r"\]")):
        record_from_json(obj, "ledger X")
    with pytest.raises(LedgerCorrupt, match="expected a JSON object"):
        record_from_json([1, 2], "ledger X")


def test_a_record_keeps_what_it_was_given() -> None:
    rec = full_record()
    assert replace(rec, ack=None).summary().ack_by is None
    assert rec.summary().ack_by == "alice"
