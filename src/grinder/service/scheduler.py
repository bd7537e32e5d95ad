"""When the service snapshots and checks: the due times and the decisions over them (pure).

The service does three things on a schedule: a periodic REST snapshot (its interval chosen
from what the last regular one cost in request weight; now and then an all-symbols one),
a periodic full pass, and the checks asked for (``Checks``: a stream event that may create
a mismatch asks for one when its grace period ends, every snapshot for one now, a triage
that could not find an order for a retry). ``DueTimes`` holds the times; ``next_step``
says, given now, what to do (stop, wait until when, snapshot, full snapshot),
``run_due`` whether a run is due, and ``after_snapshot``/``after_run`` the times that
follow. Nothing here reads a clock or sleeps: ``grinder.service.loop`` carries it out.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace
from typing import Protocol

MAX_CHECKS = 10_000
"""Checks asked for and not yet due, at most; past it the earliest ``KEPT_CHECKS`` stay."""
KEPT_CHECKS = 1000


class Pacing(Protocol):
    """The pacing settings the schedule reads (``grinder.service.options.ServiceConfig``)."""

    @property
    def full_pass_interval_s(self) -> float: ...

    @property
    def min_snapshot_interval_s(self) -> float: ...

    @property
    def max_snapshot_interval_s(self) -> float: ...

    @property
    def snapshot_weight_per_minute(self) -> float: ...

    @property
    def full_snapshot_interval_s(self) -> float: ...


def snapshot_interval_s(pacing: Pacing, last_weight: int) -> float:
    """Interval to the next snapshot, from what the last regular one cost in request weight:
    ``max(min, min(max, weight / weight_per_minute * 60))``."""
    wanted = last_weight / pacing.snapshot_weight_per_minute * 60
    return max(pacing.min_snapshot_interval_s, min(pacing.max_snapshot_interval_s, wanted))


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


@dataclass(frozen=True)
class DueTimes:
    """When the next snapshot, all-symbols snapshot and full pass are due, and when the
    service stops of itself (``--duration``; None: never). Epoch milliseconds."""

    next_snapshot: int
    next_full_snapshot: int
    next_full_pass: int
    stop_at: int | None

    @classmethod
    def first(
        cls, start: int, pacing: Pacing, last_weight: int, duration_s: float | None
    ) -> DueTimes:
        """At the loop's start: a full pass at once, the rest after their intervals."""
        return cls(
            next_snapshot=start + _ms(snapshot_interval_s(pacing, last_weight)),
            next_full_snapshot=start + _ms(pacing.full_snapshot_interval_s),
            next_full_pass=start,
            stop_at=None if duration_s is None else start + _ms(duration_s),
        )


@dataclass(frozen=True)
class Step:
    """What the loop does now: stop; wait until ``wait_until``; or snapshot (``full``: the
    all-symbols form) and then ask ``run_due``."""

    stop: bool = False
    wait_until: int | None = None
    snapshot: bool = False
    full: bool = False


def next_step(times: DueTimes, now: int, earliest_check: int | None) -> Step:
    """Given now and the earliest check asked for: stop, wait, or act (see ``Step``)."""
    if times.stop_at is not None and now >= times.stop_at:
        return Step(stop=True)
    due = min(times.next_snapshot, times.next_full_pass)
    if earliest_check is not None:
        due = min(due, earliest_check)
    if times.stop_at is not None:
        due = min(due, times.stop_at)
    if due > now:
        return Step(wait_until=due)
    snap = now >= times.next_snapshot
    return Step(snapshot=snap, full=snap and now >= times.next_full_snapshot)


def after_snapshot(
    times: DueTimes, step: Step, now: int, done_at: int, pacing: Pacing, last_weight: int
) -> DueTimes:
    """The times after a step's snapshot (tried at ``now``, over at ``done_at``, whether it
    succeeded or not): the next one an interval after it ended, the next all-symbols one an
    interval after this one began, when this one was."""
    return replace(
        times,
        next_snapshot=done_at + _ms(snapshot_interval_s(pacing, last_weight)),
        next_full_snapshot=(
            now + _ms(pacing.full_snapshot_interval_s) if step.full else times.next_full_snapshot
        ),
    )


def run_due(times: DueTimes, now: int, earliest_check: int | None) -> bool:
    """A run is due: the full pass's time has come, or a check's."""
    return now >= times.next_full_pass or (earliest_check is not None and earliest_check <= now)


def after_run(times: DueTimes, done_at: int, pacing: Pacing) -> DueTimes:
    """The next full pass an interval after this run ended (whether it succeeded or not)."""
    return replace(times, next_full_pass=done_at + _ms(pacing.full_pass_interval_s))


class Checks:
    """The checks asked for (epoch ms), earliest first, bounded (``MAX_CHECKS``)."""

    def __init__(self) -> None:
        self._due: list[int] = []

    def add(self, at_ms: int) -> None:
        heapq.heappush(self._due, at_ms)
        if len(self._due) > MAX_CHECKS:  # bounded: keep the earliest ones
            self._due = heapq.nsmallest(KEPT_CHECKS, self._due)
            heapq.heapify(self._due)

    def earliest(self) -> int | None:
        return self._due[0] if self._due else None

    def take_due(self, now: int) -> int:
        """Remove every check due by ``now`` (one run answers them all); how many."""
        taken = 0
        while self._due and self._due[0] <= now:
            heapq.heappop(self._due)
            taken += 1
        return taken

    def __len__(self) -> int:
        return len(self._due)
