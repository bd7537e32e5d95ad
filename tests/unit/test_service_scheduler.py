"""The service's scheduler (pure): given now and the due times, what the loop does next."""

from __future__ import annotations

from grinder.service.options import ServiceConfig
from grinder.service.scheduler import (
    KEPT_CHECKS,
    MAX_CHECKS,
    Checks,
    DueTimes,
    Step,
    after_run,
    after_snapshot,
    next_step,
    run_due,
    snapshot_interval_s,
)

PACING = ServiceConfig(
    full_pass_interval_s=10.0,
    min_snapshot_interval_s=30.0,
    max_snapshot_interval_s=110.0,
    snapshot_weight_per_minute=60,
    full_snapshot_interval_s=900.0,
)
T0 = 1_700_000_000_000


def test_snapshot_interval_follows_the_weight_within_its_bounds() -> None:
    assert snapshot_interval_s(PACING, 1) == 30.0  # cheap: never more often than the minimum
    assert snapshot_interval_s(PACING, 45) == 45.0  # 45 weight at 60 a minute: every 45 s
    assert snapshot_interval_s(PACING, 10_000) == 110.0  # dear: never rarer than the maximum


def test_first_times_a_full_pass_at_once() -> None:
    times = DueTimes.first(T0, PACING, 45, None)
    assert times == DueTimes(T0 + 45_000, T0 + 900_000, T0, None)
    assert next_step(times, T0, None) == Step()  # act now: no snapshot yet
    assert run_due(times, T0, None)
    assert DueTimes.first(T0, PACING, 45, 2.5).stop_at == T0 + 2500


def test_waits_until_the_earliest_of_snapshot_full_pass_check_and_stop() -> None:
    times = DueTimes(T0 + 30_000, T0 + 900_000, T0 + 10_000, None)
    assert next_step(times, T0, None) == Step(wait_until=T0 + 10_000)
    assert next_step(times, T0, T0 + 250) == Step(wait_until=T0 + 250)
    stopping = DueTimes(T0 + 30_000, T0 + 900_000, T0 + 10_000, T0 + 5)
    assert next_step(stopping, T0, T0 + 250) == Step(wait_until=T0 + 5)
    assert next_step(stopping, T0 + 5, T0) == Step(stop=True)  # the stop before a due check
    assert not run_due(times, T0, T0 + 1)
    assert run_due(times, T0 + 1, T0 + 1)  # a check due: a run, before the full pass's time


def test_snapshot_due_and_the_all_symbols_one_now_and_then() -> None:
    times = DueTimes(T0, T0 + 900_000, T0 + 10_000, None)
    step = next_step(times, T0, None)
    assert step == Step(snapshot=True, full=False)
    after = after_snapshot(times, step, T0, T0 + 120, PACING, 45)
    assert after.next_snapshot == T0 + 120 + 45_000  # from its end
    assert after.next_full_snapshot == T0 + 900_000  # unchanged
    assert not run_due(after, T0, None)  # the full pass is not due yet

    late = DueTimes(T0 + 900_000, T0 + 900_000, T0 + 905_000, None)
    step = next_step(late, T0 + 900_000, None)
    assert step == Step(snapshot=True, full=True)
    after = after_snapshot(late, step, T0 + 900_000, T0 + 900_300, PACING, 10_000)
    assert after.next_full_snapshot == T0 + 1_800_000  # from its start
    assert after.next_snapshot == T0 + 900_300 + 110_000


def test_the_full_pass_after_the_run_ends() -> None:
    times = DueTimes(T0 + 30_000, T0 + 900_000, T0, None)
    assert after_run(times, T0 + 700, PACING).next_full_pass == T0 + 10_700


def test_checks_earliest_first_one_run_answers_every_due_one() -> None:
    checks = Checks()
    assert checks.earliest() is None
    for at in (T0 + 300, T0 + 100, T0 + 200):
        checks.add(at)
    assert checks.earliest() == T0 + 100
    assert checks.take_due(T0 + 200) == 2
    assert checks.earliest() == T0 + 300
    assert checks.take_due(T0 + 200) == 0
    assert len(checks) == 1


def test_checks_bounded_keeping_the_earliest() -> None:
    checks = Checks()
    for i in range(MAX_CHECKS + 1):
        checks.add(T0 + MAX_CHECKS - i)  # latest first
    assert len(checks) == KEPT_CHECKS
    assert checks.earliest() == T0
    assert checks.take_due(T0 + 10 * MAX_CHECKS) == KEPT_CHECKS
