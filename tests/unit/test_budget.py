"""Budget: per-run and per-UTC-day limits, the atomic write-ahead state file, the stale warning."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grinder.budget.ledger import (
    MAX_CLOCK_SKEW_MS,
    BudgetState,
    BudgetStateError,
    RunBudget,
    from_the_future,
    future_warning,
    kept_for_today,
    utc_day,
)
from grinder.budget.lifecycle import stale_warning
from grinder.budget.stores import FileBudgetStore, write_json_atomic
from grinder.budget.tracker import BudgetTracker
from grinder.clock import ManualClock
from grinder.exchange.fake import FakePort
from grinder.exchange.port import Authorize, CancelOutcome, ExchangeError
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.labels import BlockReason, ResultStatus
from grinder.reconcile.routing import ActionKind, Routed
from grinder.reconcile.types import Mismatch, MismatchType
from grinder.remediation.executor import RemediationExecutor

BR = BlockReason
# 2024-01-01 12:00:00 UTC
NOW = 1_704_110_400_000
DAY_MS = 86_400_000
OURS = "grinder_d_BTCUSDT_1_1704067200_1"


def ms(text: str) -> int:
    """Milliseconds since the epoch of an ISO UTC time like '2024-01-01T23:59:59.999'."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def cfg(**overrides: Any) -> ReconcileConfig:
    return ReconcileConfig(**overrides)


def tracker(
    config: ReconcileConfig, clock: ManualClock, store: FileBudgetStore | None = None
) -> Any:
    return BudgetTracker(config=config, store=store, clock=clock)


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# --- per-run and per-day limits -------------------------------------------------------------


def test_fresh_tracker_allows_a_call_and_starts_at_zero() -> None:
    clock = ManualClock(NOW)
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
    clock = ManualClock(NOW)
    t = tracker(cfg(max_calls_per_run=2), clock)
    run = RunBudget()
    for _ in range(2):
        assert t.check(run, Decimal(0), NOW) is None
        t.reserve(run, Decimal(0), NOW)
    assert t.check(run, Decimal(0), NOW) is BR.MAX_CALLS_PER_RUN
    assert t.check(RunBudget(), Decimal(0), NOW) is None


def test_max_notional_per_run_allows_exactly_the_limit_and_blocks_beyond() -> None:
    clock = ManualClock(NOW)
    t = tracker(cfg(max_notional_per_run=Decimal(1000)), clock)
    run = RunBudget()
    t.reserve(run, Decimal(600), NOW)
    assert t.check(run, Decimal(400), NOW) is None
    assert t.check(run, Decimal("400.01"), NOW) is BR.MAX_NOTIONAL_PER_RUN
    assert run.notional == Decimal(600)
    assert run.calls == 1


def test_max_calls_per_day_accumulates_across_runs() -> None:
    clock = ManualClock(NOW)
    t = tracker(cfg(max_calls_per_day=3), clock)
    for _ in range(3):
        run = RunBudget()
        assert t.check(run, Decimal(0), NOW) is None
        t.reserve(run, Decimal(0), NOW)
    assert t.check(RunBudget(), Decimal(0), NOW) is BR.MAX_CALLS_PER_DAY
    assert t.calls_remaining_day(NOW) == 0


def test_max_notional_per_day_accumulates_across_runs() -> None:
    clock = ManualClock(NOW)
    t = tracker(cfg(max_notional_per_day=Decimal(1000)), clock)
    t.reserve(RunBudget(), Decimal(700), NOW)
    assert t.check(RunBudget(), Decimal(300), NOW) is None
    assert t.check(RunBudget(), Decimal(301), NOW) is BR.MAX_NOTIONAL_PER_DAY
    assert t.notional_remaining_day(NOW) == Decimal(300)


def test_budget_checks_in_contract_order_calls_run_notional_run_calls_day_notional_day() -> None:
    clock = ManualClock(NOW)
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
    clock = ManualClock(NOW)
    c = cfg()
    t = tracker(c, clock)
    t.state = BudgetState(day="2024-01-01", calls_used_day=50, notional_used_day=Decimal(900))
    c.max_calls_per_day = 10
    c.max_notional_per_day = Decimal(100)
    assert t.calls_remaining_day(NOW) == 0
    assert t.notional_remaining_day(NOW) == Decimal(0)


def test_limits_changed_at_run_time_take_effect_on_next_check() -> None:
    clock = ManualClock(NOW)
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
    clock = ManualClock(before)
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
    clock = ManualClock(NOW)
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
    clock = ManualClock(NOW)
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
    clock = ManualClock(NOW)
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
    clock = ManualClock(NOW)
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
    clock = ManualClock(NOW)
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
    clock = ManualClock(NOW)
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
        self,
        symbol: str,
        client_order_id: str,
        *,
        is_algo: bool = False,
        authorize: Authorize | None = None,
    ) -> CancelOutcome:
        mode, self.crash = self.crash, "none"
        if mode == "before_send":
            raise SimulatedCrash
        try:
            out = await super().cancel_order(
                symbol, client_order_id, is_algo=is_algo, authorize=authorize
            )
        finally:
            self.sent += 1  # reached the exchange, whether or not it answered
        if mode == "after_send":
            raise SimulatedCrash
        return out


def _executor(path: Path, port: FakePort, clock: ManualClock) -> RemediationExecutor:
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
    ex = _executor(path, port, ManualClock(NOW))
    result = await ex.execute(_cancel_routed(), ex.begin_run())
    assert result.status is ResultStatus.FAILED
    assert _persisted_calls(path) == 1


async def test_crash_during_the_port_call_leaves_the_call_counted_in_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "budget.json"
    clock = ManualClock(NOW)
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
            self,
            symbol: str,
            client_order_id: str,
            *,
            is_algo: bool = False,
            authorize: Authorize | None = None,
        ) -> CancelOutcome:
            seen_in_file.append(_persisted_calls(path))
            return await super().cancel_order(
                symbol, client_order_id, is_algo=is_algo, authorize=authorize
            )

    clock = ManualClock(NOW)
    ex = _executor(path, SpyPort(), clock)
    for _ in range(3):
        await ex.execute(_cancel_routed(), ex.begin_run())
    assert seen_in_file == [1, 2, 3]


CRASH_POINTS = ["none", "port_error", "save_fails", "crash_in_save", "before_send", "after_send"]


async def _step(path: Path, clock: ManualClock, ex: RemediationExecutor, point: str) -> bool:
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
        clock = ManualClock(NOW)
        port = CrashPort()
        ex = _executor(path, port, clock)
        sent_total = 0
        for point in points:
            clock.advance(1_000)
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
        BudgetTracker(config=cfg(), store=FileBudgetStore(path), clock=ManualClock(NOW))


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


# --- paths that are no regular file, absurd numbers, a file dated in the future -------------


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "budget.json"
    os.mkfifo(path)
    return path


def _returns_within(seconds: float, call: Any) -> Any:
    """``call()``'s result or exception, failing the test if it has not returned in time
    (a FIFO opened for reading would wait for a writer forever)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still blocked after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.mark.parametrize("action", ["load", "save", "reset", "tracker"])
def test_a_fifo_is_refused_at_once_naming_it_and_left_in_place(tmp_path: Path, action: str) -> None:
    path = _fifo(tmp_path)
    store = FileBudgetStore(path)
    calls = {
        "load": store.load,
        "save": lambda: store.save(BudgetState(day="2024-01-01")),
        "reset": store.reset,
        "tracker": lambda: BudgetTracker(config=cfg(), store=store, clock=ManualClock(NOW)),
    }
    with pytest.raises(BudgetStateError) as exc:
        _returns_within(5, calls[action])
    assert str(exc.value) == f"{path}: cannot read budget state: it is a FIFO, not a regular file"
    assert stat.S_ISFIFO(path.lstat().st_mode)


def test_a_fifo_put_in_place_after_the_check_is_still_never_waited_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second line of defence: the file is opened without blocking and checked again."""
    path = _fifo(tmp_path)
    monkeypatch.setattr(FileBudgetStore, "check", lambda _self: True)
    with pytest.raises(BudgetStateError, match="it is a FIFO, not a regular file"):
        _returns_within(5, FileBudgetStore(path).load)


def test_a_folder_a_device_and_a_socket_are_refused_naming_what_they_are(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(BudgetStateError, match=r"folder: cannot read budget state: it is a folder"):
        FileBudgetStore(folder).load()
    with pytest.raises(BudgetStateError, match=r"/dev/null: .* it is a character device"):
        FileBudgetStore(Path("/dev/null")).load()
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(BudgetStateError, match="it is a socket"):
            FileBudgetStore(sock_path).load()
        with pytest.raises(BudgetStateError, match="it is a socket"):
            FileBudgetStore(sock_path).reset()
        assert sock_path.exists()


def test_a_symlink_to_a_regular_file_is_read(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text(_with())
    link = tmp_path / "budget.json"
    link.symlink_to(target)
    state = FileBudgetStore(link).load()
    assert state is not None
    assert state.calls_used_day == 3


HUGE = "9" * 5000


@pytest.mark.parametrize(
    ("field", "raw", "needle"),
    [
        (
            "calls_used_day",
            HUGE,
            "calls_used_day must be an integer from 0 to 10000000, got a number of 5000 digits",
        ),
        ("calls_used_day", "-" + HUGE, "calls_used_day must be an integer"),
        ("calls_used_day", "10000001", "calls_used_day must be an integer from 0 to 10000000"),
        ("calls_used_day", "3.0", "calls_used_day must be an integer"),
        ("calls_used_day", "1e3", "calls_used_day must be an integer"),
        ("calls_used_day", "NaN", "calls_used_day must be an integer"),
        ("notional_used_day", HUGE, "notional_used_day must be a number from 0 to"),
        ("notional_used_day", f'"{HUGE}"', "notional_used_day must be a number from 0 to"),
        ("notional_used_day", '"1E+999"', "notional_used_day must be a number from 0 to"),
        ("notional_used_day", "Infinity", "notional_used_day must be a number from 0 to"),
        ("notional_used_day", "-Infinity", "notional_used_day must be a number"),
        ("notional_used_day", "1e999", "notional_used_day must be a number"),
        ("updated_ts_ms", HUGE, "updated_ts_ms must be an integer from 0 to"),
        ("updated_ts_ms", "-1", "updated_ts_ms must be an integer from 0 to"),
        ("schema_version", HUGE, "unsupported budget state schema_version a number of 5000"),
        ("day", '"2024-1-5"', "day must be a date YYYY-MM-DD"),
        ("day", f'"{"2" * 5000}"', "day must be a date YYYY-MM-DD"),
    ],
)
def test_absurd_numbers_are_refused_naming_the_file_and_the_field(
    tmp_path: Path, field: str, raw: str, needle: str
) -> None:
    path = tmp_path / "budget.json"
    text = _with(**{field: "@@"}).replace('"@@"', raw)
    path.write_text(text)
    with pytest.raises(BudgetStateError) as exc:
        FileBudgetStore(path).load()
    message = str(exc.value)
    assert message.startswith(f"{path}: ")
    assert needle in message
    assert "\n" not in message
    assert len(message) < 300
    assert path.read_text() == text  # nothing rewritten


def test_a_file_far_larger_than_a_budget_state_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    path.write_text(_with() + " " * 100_000)
    with pytest.raises(BudgetStateError, match=r"budget state is 100\d+ bytes"):
        FileBudgetStore(path).load()


def test_json_numbers_are_read_exactly(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    path.write_text(_with(notional_used_day="@@").replace('"@@"', "10.10"))
    state = FileBudgetStore(path).load()
    assert state is not None
    assert state.notional_used_day == Decimal("10.10")


def _future(path: Path, **kv: Any) -> BudgetState:
    state = BudgetState(
        day="2024-01-03", calls_used_day=7, notional_used_day=Decimal("12.5"), updated_ts_ms=NOW
    )
    state = replace(state, **kv)
    FileBudgetStore(path).save(state)
    return state


def test_a_file_dated_after_today_keeps_its_counts_for_today(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    on_file = _future(path, updated_ts_ms=NOW + 2 * DAY_MS)
    t = tracker(cfg(max_calls_per_day=8), ManualClock(NOW), FileBudgetStore(path))
    assert t.from_the_future == on_file
    assert (t.state.day, t.state.calls_used_day, t.state.notional_used_day) == (
        "2024-01-01",
        7,
        Decimal("12.5"),
    )
    assert t.state.updated_ts_ms == NOW
    t.reserve(RunBudget(), Decimal(1), NOW)
    assert t.check(RunBudget(), Decimal(0), NOW) is BR.MAX_CALLS_PER_DAY
    data = json.loads(path.read_text())
    assert (data["day"], data["calls_used_day"], data["notional_used_day"]) == (
        "2024-01-01",
        8,
        "13.5",
    )


def test_an_update_time_ahead_of_the_clock_beyond_the_skew_counts_as_the_future(
    tmp_path: Path,
) -> None:
    path = tmp_path / "budget.json"
    _future(path, day="2024-01-01", updated_ts_ms=NOW + MAX_CLOCK_SKEW_MS + 1)
    t = tracker(cfg(), ManualClock(NOW), FileBudgetStore(path))
    assert t.from_the_future is not None
    assert t.state.calls_used_day == 7
    # Within the skew, and a file of yesterday: nothing to say.
    _future(path, day="2024-01-01", updated_ts_ms=NOW + MAX_CLOCK_SKEW_MS)
    assert tracker(cfg(), ManualClock(NOW), FileBudgetStore(path)).from_the_future is None
    _future(path, day="2023-12-31", updated_ts_ms=NOW - DAY_MS)
    fresh = tracker(cfg(), ManualClock(NOW), FileBudgetStore(path))
    assert fresh.from_the_future is None
    assert fresh.calls_remaining_day(NOW) == 100  # yesterday's use does not count today


def test_a_future_dated_file_is_never_written_back_lower(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    on_file = _future(path, updated_ts_ms=NOW + DAY_MS)
    store = FileBudgetStore(path)
    t = tracker(cfg(), ManualClock(NOW), store)
    assert store.save_unless_behind(t.state) is False  # the file's later day wins
    assert store.load() == on_file


def test_the_future_warning_is_one_line_naming_the_file_and_the_counts(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    state = _future(path, updated_ts_ms=NOW + DAY_MS)
    text = future_warning(path, state, NOW)
    assert "\n" not in text
    assert text.startswith(f"WARNING: budget state {path} is dated in the future (day 2024-01-03")
    assert "calls_used_day=7, notional_used_day=12.5" in text
    assert from_the_future(state, NOW)
    assert kept_for_today(state, NOW).day == "2024-01-01"
