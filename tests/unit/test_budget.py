"""Budget: per-run and per-UTC-day limits, the atomic write-ahead state file, the stale warning."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grinder.exchange.fake import FakePort
from grinder.exchange.port import CancelOutcome, ExchangeError
from grinder.reconcile.budget import (
    BudgetState,
    BudgetStateError,
    BudgetTracker,
    FileBudgetStore,
    RunBudget,
    stale_warning,
    utc_day,
    write_json_atomic,
)
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.labels import BlockReason, ResultStatus
from grinder.reconcile.remediation import RemediationExecutor
from grinder.reconcile.routing import ActionKind, Routed
from grinder.reconcile.types import Mismatch, MismatchType

BR = BlockReason
# 2024-01-01 12:00:00 UTC
NOW = 1_704_110_400_000
DAY_MS = 86_400_000
OURS = "grinder_d_BTCUSDT_1_1704067200_1"


class Clock:
    def __init__(self, t: int = NOW) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def ms(text: str) -> int:
    """Milliseconds since the epoch of an ISO UTC time like '2024-01-01T23:59:59.999'."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def cfg(**overrides: Any) -> ReconcileConfig:
    return ReconcileConfig(**overrides)


def tracker(config: ReconcileConfig, clock: Clock, store: FileBudgetStore | None = None) -> Any:
    return BudgetTracker(config=config, store=store, clock=clock)


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# --- per-run and per-day limits -------------------------------------------------------------


def test_fresh_tracker_allows_a_call_and_starts_at_zero() -> None:
    clock = Clock()
    t = tracker(cfg(), clock)
    assert t.check(RunBudget(), Decimal(0), NOW) is None
    assert t.state.day == "2024-01-01"
    assert t.state.calls_used_day == 0
    assert t.calls_remaining_day(NOW) == 100
    assert t.notional_remaining_day(NOW) == Decimal(5000)


def test_default_limits_match_contract() -> None:
    c = cfg()
    assert (c.max_calls_per_run, c.max_notional_per_run) == (10, Decimal(1000))
    assert (c.max_calls_per_day, c.max_notional_per_day) == (100, Decimal(5000))


def test_max_calls_per_run_blocks_after_limit_and_resets_with_a_new_run() -> None:
    clock = Clock()
    t = tracker(cfg(max_calls_per_run=2), clock)
    run = RunBudget()
    for _ in range(2):
        assert t.check(run, Decimal(0), NOW) is None
        t.reserve(run, Decimal(0), NOW)
    assert t.check(run, Decimal(0), NOW) is BR.MAX_CALLS_PER_RUN
    assert t.check(RunBudget(), Decimal(0), NOW) is None


def test_max_notional_per_run_allows_exactly_the_limit_and_blocks_beyond() -> None:
    clock = Clock()
    t = tracker(cfg(max_notional_per_run=Decimal(1000)), clock)
    run = RunBudget()
    t.reserve(run, Decimal(600), NOW)
    assert t.check(run, Decimal(400), NOW) is None
    assert t.check(run, Decimal("400.01"), NOW) is BR.MAX_NOTIONAL_PER_RUN
    assert run.notional == Decimal(600)
    assert run.calls == 1


def test_max_calls_per_day_accumulates_across_runs() -> None:
    clock = Clock()
    t = tracker(cfg(max_calls_per_day=3), clock)
    for _ in range(3):
        run = RunBudget()
        assert t.check(run, Decimal(0), NOW) is None
        t.reserve(run, Decimal(0), NOW)
    assert t.check(RunBudget(), Decimal(0), NOW) is BR.MAX_CALLS_PER_DAY
    assert t.calls_remaining_day(NOW) == 0


def test_max_notional_per_day_accumulates_across_runs() -> None:
    clock = Clock()
    t = tracker(cfg(max_notional_per_day=Decimal(1000)), clock)
    t.reserve(RunBudget(), Decimal(700), NOW)
    assert t.check(RunBudget(), Decimal(300), NOW) is None
    assert t.check(RunBudget(), Decimal(301), NOW) is BR.MAX_NOTIONAL_PER_DAY
    assert t.notional_remaining_day(NOW) == Decimal(300)


def test_budget_checks_in_contract_order_calls_run_notional_run_calls_day_notional_day() -> None:
    clock = Clock()
    c = cfg(
        max_calls_per_run=0,
        max_notional_per_run=Decimal(0),
        max_calls_per_day=0,
        max_notional_per_day=Decimal(0),
    )
    t = tracker(c, clock)
    order = []
    for field, value in [
        ("max_calls_per_run", 1),
        ("max_notional_per_run", Decimal(10)),
        ("max_calls_per_day", 1),
        ("max_notional_per_day", Decimal(10)),
    ]:
        order.append(t.check(RunBudget(), Decimal(10), NOW))
        setattr(c, field, value)
    assert order == [
        BR.MAX_CALLS_PER_RUN,
        BR.MAX_NOTIONAL_PER_RUN,
        BR.MAX_CALLS_PER_DAY,
        BR.MAX_NOTIONAL_PER_DAY,
    ]
    assert t.check(RunBudget(), Decimal(10), NOW) is None


def test_remaining_never_goes_negative_when_usage_exceeds_a_lowered_limit() -> None:
    clock = Clock()
    c = cfg()
    t = tracker(c, clock)
    t.state = BudgetState(day="2024-01-01", calls_used_day=50, notional_used_day=Decimal(900))
    c.max_calls_per_day = 10
    c.max_notional_per_day = Decimal(100)
    assert t.calls_remaining_day(NOW) == 0
    assert t.notional_remaining_day(NOW) == Decimal(0)


def test_limits_changed_at_run_time_take_effect_on_next_check() -> None:
    clock = Clock()
    c = cfg(max_calls_per_day=5)
    t = tracker(c, clock)
    t.reserve(RunBudget(), Decimal(0), NOW)
    c.max_calls_per_day = 1
    assert t.check(RunBudget(), Decimal(0), NOW) is BR.MAX_CALLS_PER_DAY


# --- UTC day rollover -----------------------------------------------------------------------


def test_utc_day_is_the_utc_calendar_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: local date differs from UTC
    time.tzset()
    try:
        assert utc_day(ms("2024-01-01T23:59:59.999")) == "2024-01-01"
        assert utc_day(ms("2024-01-02T00:00:00.000")) == "2024-01-02"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_daily_counters_reset_at_utc_midnight() -> None:
    before = ms("2024-01-01T23:59:59.999")
    after = ms("2024-01-02T00:00:00.000")
    clock = Clock(before)
    t = tracker(cfg(max_calls_per_day=2, max_notional_per_day=Decimal(100)), clock)
    for _ in range(2):
        t.reserve(RunBudget(), Decimal(50), before)
    assert t.check(RunBudget(), Decimal(0), before) is BR.MAX_CALLS_PER_DAY
    assert t.check(RunBudget(), Decimal(0), after) is None
    assert t.state.day == "2024-01-02"
    assert t.state.calls_used_day == 0
    assert t.state.notional_used_day == 0
    assert t.calls_remaining_day(after) == 2
    assert t.notional_remaining_day(after) == Decimal(100)


def test_yesterdays_state_file_does_not_count_against_today(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    FileBudgetStore(path).save(
        BudgetState(day="2023-12-31", calls_used_day=100, notional_used_day=Decimal(5000))
    )
    clock = Clock()
    t = tracker(cfg(), clock, FileBudgetStore(path))
    assert t.check(RunBudget(), Decimal(10), NOW) is None
    t.reserve(RunBudget(), Decimal(10), NOW)
    data = json.loads(path.read_text())
    assert (data["day"], data["calls_used_day"], data["notional_used_day"]) == (
        "2024-01-01",
        1,
        "10",
    )


def test_daily_usage_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    clock = Clock()
    c = cfg(max_calls_per_day=3)
    t1 = tracker(c, clock, FileBudgetStore(path))
    t1.reserve(RunBudget(), Decimal("12.5"), NOW)
    t1.reserve(RunBudget(), Decimal("0.25"), NOW)
    t2 = tracker(c, clock, FileBudgetStore(path))
    assert t2.state.calls_used_day == 2
    assert t2.state.notional_used_day == Decimal("12.75")
    t2.reserve(RunBudget(), Decimal(0), NOW)
    assert t2.check(RunBudget(), Decimal(0), NOW) is BR.MAX_CALLS_PER_DAY


def test_shadow_budget_spends_in_memory_only(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    clock = Clock()
    real = tracker(cfg(), clock, FileBudgetStore(path))
    real.reserve(RunBudget(), Decimal(1), NOW)
    before = path.read_bytes()
    shadow = real.shadow()
    assert shadow.store is None
    shadow.reserve(RunBudget(), Decimal(5), NOW)
    assert shadow.state.calls_used_day == 2
    assert real.state.calls_used_day == 1
    assert path.read_bytes() == before


# --- the state file: atomic, valid, schema_version 1 ----------------------------------------


def test_saved_file_is_valid_json_with_schema_version_1_and_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    store = FileBudgetStore(path)
    store.save(
        BudgetState(
            day="2024-01-01",
            calls_used_day=7,
            notional_used_day=Decimal("123.4500"),
            updated_ts_ms=NOW,
        )
    )
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == {
        "schema_version": 1,
        "day": "2024-01-01",
        "calls_used_day": 7,
        "notional_used_day": "123.4500",
        "updated_ts_ms": NOW,
    }
    assert temp_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["budget.json"]


def test_state_round_trips_exactly(tmp_path: Path) -> None:
    store = FileBudgetStore(tmp_path / "b.json")
    state = BudgetState(
        day="2024-02-29", calls_used_day=3, notional_used_day=Decimal("0.1"), updated_ts_ms=5
    )
    store.save(state)
    assert store.load() == state


def test_save_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "grinder" / "budget.json"
    FileBudgetStore(path).save(BudgetState(day="2024-01-01"))
    assert json.loads(path.read_text())["schema_version"] == 1


def test_many_saves_leave_no_temp_files_and_the_last_value(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    clock = Clock()
    t = tracker(cfg(max_calls_per_day=1000), clock, FileBudgetStore(path))
    for _ in range(25):
        t.reserve(RunBudget(), Decimal("1.1"), NOW)
    assert temp_files(tmp_path) == []
    data = json.loads(path.read_text())
    assert data["calls_used_day"] == 25
    assert Decimal(data["notional_used_day"]) == Decimal("27.5")


def test_load_of_missing_file_is_none(tmp_path: Path) -> None:
    assert FileBudgetStore(tmp_path / "nope.json").load() is None


def test_reset_removes_the_file_and_tolerates_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    store = FileBudgetStore(path)
    store.save(BudgetState(day="2024-01-01", calls_used_day=9))
    store.reset()
    assert not path.exists()
    store.reset()
    clock = Clock()
    assert tracker(cfg(), clock, store).state.calls_used_day == 0


class SimulatedCrash(BaseException):
    """A process death: not an Exception, so nothing on the way catches it."""


def test_failure_during_write_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    store = FileBudgetStore(path)
    store.save(BudgetState(day="2024-01-01", calls_used_day=1))
    old = path.read_bytes()
    with (
        mock.patch.object(os, "fsync", side_effect=OSError(5, "Input/output error")),
        pytest.raises(BudgetStateError, match="cannot write budget state") as exc,
    ):
        store.save(BudgetState(day="2024-01-01", calls_used_day=2))
    assert str(path) in str(exc.value)
    assert path.read_bytes() == old
    assert temp_files(tmp_path) == []


def test_crash_before_rename_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    write_json_atomic(path, {"a": 1})
    with (
        mock.patch.object(os, "replace", side_effect=SimulatedCrash),
        pytest.raises(SimulatedCrash),
    ):
        write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert temp_files(tmp_path) == []


def test_unwritable_location_is_budget_state_error_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    path = blocker / "budget.json"
    with pytest.raises(BudgetStateError) as exc:
        FileBudgetStore(path).save(BudgetState(day="2024-01-01"))
    assert str(path) in str(exc.value)


def test_failed_save_leaves_in_memory_usage_unchanged(tmp_path: Path) -> None:
    store = FileBudgetStore(tmp_path / "budget.json")
    clock = Clock()
    t = tracker(cfg(), clock, store)
    t.reserve(RunBudget(), Decimal(1), NOW)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store.path = blocker / "budget.json"
    run = RunBudget()
    with pytest.raises(BudgetStateError):
        t.reserve(run, Decimal(1), NOW)
    assert t.state.calls_used_day == 1
    assert run.calls == 0
    assert run.notional == 0


# --- write-ahead: the call is counted before it is made --------------------------------------


def _cancel_routed(cid: str = OURS) -> Routed:
    m = Mismatch(
        type=MismatchType.ORDER_EXISTS_UNEXPECTED,
        symbol="BTCUSDT",
        client_order_id=cid,
        observed_status="NEW",
    )
    return Routed(m, ActionKind.CANCEL, 10)


def _live_config(**overrides: Any) -> ReconcileConfig:
    base: dict[str, Any] = {
        "action": RemediationAction.CANCEL_ALL,
        "dry_run": False,
        "allow_active_remediation": True,
        "cooldown_seconds": 0,
        "max_calls_per_run": 1000,
        "max_calls_per_day": 100_000,
        "max_orders_per_action": 1000,
    }
    base.update(overrides)
    return ReconcileConfig(**base)


@dataclass
class CrashPort(FakePort):
    """A FakePort whose next cancel can die before or after reaching the exchange."""

    crash: str = "none"  # "none" | "before_send" | "after_send"
    sent: int = 0

    async def cancel_order(
        self, symbol: str, client_order_id: str, *, is_algo: bool = False
    ) -> CancelOutcome:
        mode, self.crash = self.crash, "none"
        if mode == "before_send":
            raise SimulatedCrash
        try:
            out = await super().cancel_order(symbol, client_order_id, is_algo=is_algo)
        finally:
            self.sent += 1  # reached the exchange, whether or not it answered
        if mode == "after_send":
            raise SimulatedCrash
        return out


def _executor(path: Path, port: FakePort, clock: Clock) -> RemediationExecutor:
    config = _live_config()
    return RemediationExecutor(
        config=config,
        port=port,
        armed=True,
        symbol_whitelist=["BTCUSDT"],
        budget=BudgetTracker(config=config, store=FileBudgetStore(path), clock=clock),
        env={"ALLOW_MAINNET_TRADE": "1"},
        clock=clock,
        expected_heartbeat_age=lambda: 0.0,  # a bot keeps the expected state (gate E)
    )


def _persisted_calls(path: Path) -> int:
    if not path.exists():
        return 0
    return int(json.loads(path.read_text())["calls_used_day"])


async def test_exchange_error_after_reserve_leaves_the_call_counted_in_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "budget.json"
    port = FakePort()
    port.fail_once["cancel_order"] = ExchangeError("Internal error", code=-1000)
    ex = _executor(path, port, Clock())
    result = await ex.execute(_cancel_routed(), ex.begin_run())
    assert result.status is ResultStatus.FAILED
    assert _persisted_calls(path) == 1


async def test_crash_during_the_port_call_leaves_the_call_counted_in_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "budget.json"
    clock = Clock()
    port = CrashPort(crash="before_send")
    ex = _executor(path, port, clock)
    with pytest.raises(SimulatedCrash):
        await ex.execute(_cancel_routed(), ex.begin_run())
    assert _persisted_calls(path) == 1
    # After the restart the over-counted call is still there.
    ex2 = _executor(path, CrashPort(), clock)
    assert ex2.budget.state.calls_used_day == 1


async def test_budget_file_is_written_before_the_exchange_call(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    seen_in_file: list[int] = []

    @dataclass
    class SpyPort(FakePort):
        async def cancel_order(
            self, symbol: str, client_order_id: str, *, is_algo: bool = False
        ) -> CancelOutcome:
            seen_in_file.append(_persisted_calls(path))
            return await super().cancel_order(symbol, client_order_id, is_algo=is_algo)

    clock = Clock()
    ex = _executor(path, SpyPort(), clock)
    for _ in range(3):
        await ex.execute(_cancel_routed(), ex.begin_run())
    assert seen_in_file == [1, 2, 3]


CRASH_POINTS = ["none", "port_error", "save_fails", "crash_in_save", "before_send", "after_send"]


async def _step(path: Path, clock: Clock, ex: RemediationExecutor, point: str) -> bool:
    """One remediation with a failure injected at ``point``; True when the process died."""
    port = ex.port
    assert isinstance(port, CrashPort)
    routed = _cancel_routed()
    if point == "port_error":
        port.fail_once["cancel_order"] = ExchangeError("Internal error", code=-1000)
    if point in ("before_send", "after_send"):
        port.crash = point
    try:
        if point == "save_fails":
            with mock.patch.object(os, "fsync", side_effect=OSError(28, "No space left")):
                result = await ex.execute(routed, ex.begin_run())
            assert result.status is ResultStatus.FAILED
        elif point == "crash_in_save":
            with mock.patch.object(os, "replace", side_effect=SimulatedCrash):
                await ex.execute(routed, ex.begin_run())
        else:
            await ex.execute(routed, ex.begin_run())
    except SimulatedCrash:
        return True
    return False


@settings(max_examples=60, deadline=None)
@given(points=st.lists(st.sampled_from(CRASH_POINTS), min_size=1, max_size=12))
def test_persisted_calls_never_below_calls_sent_whatever_the_crash_point(
    points: Sequence[str],
) -> None:
    async def scenario(path: Path) -> None:
        clock = Clock()
        port = CrashPort()
        ex = _executor(path, port, clock)
        sent_total = 0
        for point in points:
            clock.t += 1_000
            before = port.sent
            died = await _step(path, clock, ex, point)
            sent_total += port.sent - before
            persisted = _persisted_calls(path)
            assert persisted >= sent_total, (point, persisted, sent_total)
            # In memory, too, nothing sent goes uncounted.
            assert ex.budget.state.calls_used_day >= sent_total
            assert temp_files(path.parent) == []
            if died:
                # Restart: a new process reads the budget from the file.
                port = CrashPort()
                ex = _executor(path, port, clock)
                assert ex.budget.state.calls_used_day == persisted

    with tempfile.TemporaryDirectory() as d:
        asyncio.run(scenario(Path(d) / "budget.json"))


# --- corrupt or unreadable state: an error naming the path, never a fresh budget -----------

_GOOD: dict[str, Any] = {
    "schema_version": 1,
    "day": "2024-01-01",
    "calls_used_day": 3,
    "notional_used_day": "10.5",
    "updated_ts_ms": NOW,
}


def _with(**kv: Any) -> str:
    data = dict(_GOOD)
    for k, v in kv.items():
        if v is _DROP:
            del data[k]
        else:
            data[k] = v
    return json.dumps(data)


_DROP = object()

CORRUPT: list[tuple[str, str]] = [
    ("empty", ""),
    ("truncated", '{"schema_version": 1, "day": "2024-'),
    ("not_json", "calls_used_day=3"),
    ("array", "[1, 2, 3]"),
    ("string", '"budget"'),
    ("null", "null"),
    ("schema_2", _with(schema_version=2)),
    ("schema_0", _with(schema_version=0)),
    ("schema_string", _with(schema_version="1")),
    ("schema_missing", _with(schema_version=_DROP)),
    ("day_missing", _with(day=_DROP)),
    ("day_bad", _with(day="2024-13-01")),
    ("day_int", _with(day=20240101)),
    ("calls_missing", _with(calls_used_day=_DROP)),
    ("calls_string", _with(calls_used_day="3")),
    ("calls_float", _with(calls_used_day=3.5)),
    ("calls_bool", _with(calls_used_day=True)),
    ("calls_negative", _with(calls_used_day=-1)),
    ("calls_null", _with(calls_used_day=None)),
    ("notional_missing", _with(notional_used_day=_DROP)),
    ("notional_negative", _with(notional_used_day="-0.01")),
    ("notional_negative_number", _with(notional_used_day=-5)),
    ("notional_text", _with(notional_used_day="abc")),
    ("notional_nan", _with(notional_used_day="NaN")),
    ("notional_inf", _with(notional_used_day="Infinity")),
    ("notional_list", _with(notional_used_day=[1])),
    ("updated_string", _with(updated_ts_ms="yesterday")),
    ("updated_float", _with(updated_ts_ms=1.5)),
]


@pytest.mark.parametrize(("content"), [c for _, c in CORRUPT], ids=[n for n, _ in CORRUPT])
def test_corrupt_state_file_is_budget_state_error_with_path(tmp_path: Path, content: str) -> None:
    path = tmp_path / "budget.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(BudgetStateError) as exc:
        FileBudgetStore(path).load()
    assert str(path) in str(exc.value)
    # And a tracker over that store refuses to start rather than start fresh.
    with pytest.raises(BudgetStateError):
        BudgetTracker(config=cfg(), store=FileBudgetStore(path), clock=Clock())


def test_good_state_file_fixture_is_accepted(tmp_path: Path) -> None:
    """The corrupt cases above differ from this valid file in one field only."""
    path = tmp_path / "budget.json"
    path.write_text(_with())
    state = FileBudgetStore(path).load()
    assert state == BudgetState(
        day="2024-01-01", calls_used_day=3, notional_used_day=Decimal("10.5"), updated_ts_ms=NOW
    )


def test_unreadable_state_path_is_budget_state_error_with_path(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    path.mkdir()  # a directory where the file should be: reading fails
    with pytest.raises(BudgetStateError) as exc:
        FileBudgetStore(path).load()
    assert str(path) in str(exc.value)
    assert "cannot read" in str(exc.value)


def test_non_utf8_state_file_is_budget_state_error_with_path(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BudgetStateError) as exc:
        FileBudgetStore(path).load()
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("version", [True, 1.0])
def test_wrongly_typed_schema_version_is_rejected(tmp_path: Path, version: Any) -> None:
    path = tmp_path / "budget.json"
    path.write_text(_with(schema_version=version))
    with pytest.raises(BudgetStateError):
        FileBudgetStore(path).load()


# --- the stale warning of runbook 13 --------------------------------------------------------

MTIME = datetime(2024, 1, 14, 10, 0, 0, tzinfo=UTC).timestamp()


def _aged(path: Path, *, mtime: float = MTIME) -> Path:
    path.write_text(_with())
    os.utime(path, (mtime, mtime))
    return path


def test_stale_warning_is_exactly_the_runbook_block(tmp_path: Path) -> None:
    path = _aged(tmp_path / "budget.json")
    now_ms = int((MTIME + 25.3 * 3600) * 1000)
    text = stale_warning(path, now_ms, 24)
    assert text == (
        "WARNING: Budget state is stale (25.3h old, threshold=24h)\n"
        "         Last modified: 2024-01-14 10:00:00 UTC\n"
        f"         Path: {path}\n"
        "         Consider using --reset-budget-state for a clean start."
    )
    assert text is not None
    assert len(text.splitlines()) == 4


def test_stale_warning_for_the_runbook_path_matches_the_runbook_text(tmp_path: Path) -> None:
    runbook = (
        "WARNING: Budget state is stale (25.3h old, threshold=24h)\n"
        "         Last modified: 2024-01-14 10:00:00 UTC\n"
        "         Path: /var/lib/grinder/budget.json\n"
        "         Consider using --reset-budget-state for a clean start."
    )
    path = _aged(tmp_path / "budget.json")
    text = stale_warning(path, int((MTIME + 25.3 * 3600) * 1000), 24.0)
    assert text is not None
    assert text.replace(str(path), "/var/lib/grinder/budget.json") == runbook


def test_stale_warning_uses_utc_whatever_the_local_timezone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        path = _aged(tmp_path / "budget.json")
        text = stale_warning(path, int((MTIME + 30 * 3600) * 1000), 24)
        assert text is not None
        assert "Last modified: 2024-01-14 10:00:00 UTC" in text
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("age_hours", [0, 1, 23.9, 24])
def test_no_stale_warning_when_not_older_than_threshold(tmp_path: Path, age_hours: float) -> None:
    path = _aged(tmp_path / "budget.json")
    assert stale_warning(path, int((MTIME + age_hours * 3600) * 1000), 24) is None


def test_no_stale_warning_for_a_missing_file(tmp_path: Path) -> None:
    assert stale_warning(tmp_path / "absent.json", NOW, 24) is None


def test_no_stale_warning_for_a_file_from_the_future(tmp_path: Path) -> None:
    path = _aged(tmp_path / "budget.json", mtime=MTIME + 3600)
    assert stale_warning(path, int(MTIME * 1000), 24) is None


@pytest.mark.parametrize(
    ("threshold", "shown"),
    [(1.5, "1.5"), (0.5, "0.5"), (2.25, "2.25"), (36.0, "36"), (12, "12"), (24.0, "24")],
)
def test_stale_warning_threshold_formatting(tmp_path: Path, threshold: float, shown: str) -> None:
    path = _aged(tmp_path / "budget.json")
    text = stale_warning(path, int((MTIME + 40 * 3600) * 1000), threshold)
    assert text is not None
    assert text.splitlines()[0] == (
        f"WARNING: Budget state is stale (40.0h old, threshold={shown}h)"
    )


@pytest.mark.parametrize(("age", "shown"), [(25.34, "25.3"), (100.06, "100.1"), (48, "48.0")])
def test_stale_warning_age_has_one_decimal(tmp_path: Path, age: float, shown: str) -> None:
    path = _aged(tmp_path / "budget.json")
    text = stale_warning(path, int((MTIME + age * 3600) * 1000), 24)
    assert text is not None
    assert f"({shown}h old, threshold=24h)" in text


def test_stale_warning_for_a_relative_path_prints_it_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rel = Path("state") / "budget.json"
    rel.parent.mkdir()
    _aged(rel)
    text = stale_warning(rel, int((MTIME + 25.3 * 3600) * 1000), 24)
    assert text is not None
    assert text.splitlines()[2] == "         Path: state/budget.json"


def test_at_least_raises_usage_to_the_other_and_a_later_day_wins_whole() -> None:
    day = BudgetState(day="2024-01-01", calls_used_day=2, notional_used_day=Decimal("50"))
    assert day.at_least(BudgetState(day="2024-01-01", calls_used_day=1)) is day
    more = day.at_least(
        BudgetState(day="2024-01-01", calls_used_day=3, notional_used_day=Decimal("10"))
    )
    assert (more.calls_used_day, more.notional_used_day) == (3, Decimal("50"))
    later = BudgetState(day="2024-01-02", calls_used_day=1)
    assert day.at_least(later) is later
    assert later.at_least(day) is later
