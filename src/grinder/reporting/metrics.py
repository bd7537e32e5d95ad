"""Prometheus metrics of reconciliation and remediation, on a registry passed in.

Every label value the product knows is created at start-up with value 0, so
"no executions" reads as ``0`` rather than as an absent series.

``grinder_reconcile_action_planned_last_hour{action}`` is the number of plans in
the last hour, counted by the process itself (``RecentCount``) and evaluated at
each scrape: runbook 13's "more than 10 plans per hour" without a Prometheus
server, and without diluting a recent burst over the whole uptime.

Three gauges must not read 0 before the first run: the snapshot age is ``+Inf`` until a
snapshot exists (0 would read as perfectly fresh; ``+Inf`` is older than any
threshold, so the stale-snapshot alert still fires when snapshots never
succeed), the expected state's heartbeat age is ``+Inf`` until a bot has written it
(the service then reports the age at every scrape), and the budget gauges are set
from the budget tracker as soon as the runner (or the service) is built (0
remaining would read as used up).

``exposition`` is the text every output of a registry uses (``/metrics``, ``metrics.prom``,
the summary): without the ``_created`` series prometheus_client adds beside every counter
and histogram (a third of the lines, of no use to the runbooks; the library's own switch,
``disable_created_metrics``, is process-wide, so they are left out here, for the registries
this project serves), and with a millisecond timestamp (``…_ts_ms``) written as the integer
it is, not as ``1.796662474179e+12``.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from grinder.budget.tracker import BudgetTracker
from grinder.clock import Clock, wall_clock_ms
from grinder.reconcile.labels import (
    ActionLabel,
    AttemptOutcome,
    BlockReason,
    FailReason,
    SkipReason,
    TriageOutcome,
)
from grinder.reconcile.types import MismatchType

HOUR_MS = 3_600_000
_TS_MS_LINE = re.compile(rb"^([a-zA-Z_:][a-zA-Z0-9_:]*_ts_ms(?:\{[^}]*\})?) (\S+)$", re.MULTILINE)


class _WithoutCreated(Collector):
    """A registry's metric families without their ``_created`` samples."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self.registry.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            created = family.name + "_created"
            kept.samples = [s for s in family.samples if s.name != created]
            yield kept


def _integer_ms(match: re.Match[bytes]) -> bytes:
    value = float(match.group(2))
    if not (math.isfinite(value) and value == int(value)):
        return match.group(0)
    return match.group(1) + b" " + str(int(value)).encode()


def exposition(registry: CollectorRegistry) -> bytes:
    """``registry`` in Prometheus text format, as this project serves and saves it (see the
    module docstring)."""
    return _TS_MS_LINE.sub(_integer_ms, generate_latest(_WithoutCreated(registry)))


class RecentCount:
    """How many events happened in the last ``window_ms``: a sliding window.

    Events are kept as per-second buckets, so memory stays bounded (at most one
    bucket per second of the window) however many there are. An event counts from
    its second until ``window_ms`` after the end of that second: up to one second
    longer than exactly, never shorter.
    """

    def __init__(self, window_ms: int = HOUR_MS) -> None:
        self.window_ms = window_ms
        self._buckets: deque[list[int]] = deque()  # [second, events], oldest first

    def add(self, ts_ms: int, n: int = 1) -> None:
        second = ts_ms // 1000
        last = self._buckets[-1] if self._buckets else None
        if last is None or second > last[0]:
            self._buckets.append([second, n])
            self._prune(ts_ms)
        elif (second + 1) * 1000 + self.window_ms > last[0] * 1000:
            # The same second, or an earlier one still in the window (a clock that stepped
            # back): counted with the newest, so it stays counted rather than too briefly.
            last[1] += n

    def count(self, now_ms: int) -> int:
        self._prune(now_ms)
        return sum(n for _, n in self._buckets)

    def _prune(self, now_ms: int) -> None:
        while self._buckets and (self._buckets[0][0] + 1) * 1000 + self.window_ms <= now_ms:
            self._buckets.popleft()


NO_SNAPSHOT_AGE_S = math.inf
"""``grinder_reconcile_last_snapshot_age_seconds`` before the first snapshot."""

NEVER_WRITTEN_AGE_S = math.inf
"""``grinder_reconcile_expected_heartbeat_age_seconds`` of a state no bot has written."""


class ReconcileMetrics:
    """The CONTRACT §7 metrics, plus triage, skip, failure and audit counters.

    ``clock`` (ms) is what the last-hour plan count is evaluated against at each
    scrape; it should be the clock that stamps the results reported here.
    """

    def __init__(self, registry: CollectorRegistry, *, clock: Clock = wall_clock_ms) -> None:
        self.registry = registry
        self.clock = clock
        self._planned_recent = {a.value: RecentCount() for a in ActionLabel}
        self._last_remediation_ms = 0
        self._blocked_reasons: set[str] = {b.value for b in BlockReason}
        r = registry
        self.runs = Counter("grinder_reconcile_runs", "Reconcile runs completed", registry=r)
        self.last_snapshot_age = Gauge(
            "grinder_reconcile_last_snapshot_age_seconds",
            "Age of the last REST snapshot of orders and positions (+Inf: none yet)",
            registry=r,
        )
        self.last_snapshot_age.set(NO_SNAPSHOT_AGE_S)
        self.mismatch = Counter(
            "grinder_reconcile_mismatch",
            "Mismatch incidents detected, counted once when first detected",
            ["type"],
            registry=r,
        )
        self.mismatch_active = Gauge(
            "grinder_reconcile_mismatch_active",
            "Mismatches standing at the end of the last run",
            ["type"],
            registry=r,
        )
        self.runs_with_mismatch = Counter(
            "grinder_reconcile_runs_with_mismatch",
            "Runs that saw at least one mismatch",
            registry=r,
        )
        self.runs_with_remediation = Counter(
            "grinder_reconcile_runs_with_remediation",
            "Runs that executed at least one remediation",
            ["action"],
            registry=r,
        )
        self.last_remediation_ts_ms = Gauge(
            "grinder_reconcile_last_remediation_ts_ms",
            "Unix time in ms of the last executed remediation (0: never); with HA, of any "
            "instance (the shared cooldown anchor)",
            registry=r,
        )
        self.planned = Counter(
            "grinder_reconcile_action_planned",
            "Remediation actions planned in dry-run",
            ["action"],
            registry=r,
        )
        self.planned_last_hour = Gauge(
            "grinder_reconcile_action_planned_last_hour",
            "Remediation actions planned in dry-run in the last hour (sliding window, "
            "counted since this process started)",
            ["action"],
            registry=r,
        )
        self.executed = Counter(
            "grinder_reconcile_action_executed",
            "Remediation actions executed on the exchange",
            ["action"],
            registry=r,
        )
        self.blocked = Counter(
            "grinder_reconcile_action_blocked",
            "Remediation actions blocked, by the first gate that failed",
            ["reason"],
            registry=r,
        )
        self.blocked_candidates = Gauge(
            "grinder_reconcile_action_blocked_candidates",
            "Remediation candidates the last run blocked, each counted under every gate that "
            "failed it (grinder_reconcile_action_blocked_total: the first gate only)",
            ["reason"],
            registry=r,
        )
        self.failed = Counter(
            "grinder_reconcile_action_failed",
            "Remediation actions the exchange refused or that failed",
            ["action", "reason"],
            registry=r,
        )
        self.write_attempts = Counter(
            "grinder_reconcile_write_attempts",
            "Requests remediation actions sent or withheld at the wire, by outcome "
            "(an action makes at most 3; the budget counts actions)",
            ["action", "outcome"],
            registry=r,
        )
        self.skipped = Counter(
            "grinder_reconcile_action_skipped",
            "Mismatches that got no remediation attempt, by reason",
            ["reason"],
            registry=r,
        )
        self.triage = Counter(
            "grinder_reconcile_triage",
            "Lookups of missing orders by client order id, by outcome",
            ["outcome"],
            registry=r,
        )
        self.foreign_open_orders = Gauge(
            "grinder_reconcile_foreign_open_orders",
            "Open orders on the exchange that are not ours (left alone)",
            registry=r,
        )
        self.audit_write_errors = Counter(
            "grinder_reconcile_audit_write_errors",
            "Audit records that could not be written",
            registry=r,
        )
        self.budget_calls_used_day = Gauge(
            "grinder_reconcile_budget_calls_used_day",
            "Remediation calls used today (UTC)",
            registry=r,
        )
        self.budget_notional_used_day = Gauge(
            "grinder_reconcile_budget_notional_used_day",
            "Remediation notional (USDT) used today (UTC)",
            registry=r,
        )
        self.budget_calls_remaining_day = Gauge(
            "grinder_reconcile_budget_calls_remaining_day",
            "Remediation calls left today (UTC)",
            registry=r,
        )
        self.budget_notional_remaining_day = Gauge(
            "grinder_reconcile_budget_notional_remaining_day",
            "Remediation notional (USDT) left today (UTC)",
            registry=r,
        )
        self.ha_is_leader = Gauge(
            "grinder_ha_is_leader",
            "1 when this instance may remediate (HA leader or HA off)",
            registry=r,
        )
        self.expected_heartbeat_age = Gauge(
            "grinder_reconcile_expected_heartbeat_age_seconds",
            "Seconds since a bot last wrote the expected state detection reads (+Inf: never); "
            "above expected_heartbeat_max_age_s remediation is blocked (expected_state_stale)",
            registry=r,
        )
        self.expected_heartbeat_age.set(NEVER_WRITTEN_AGE_S)
        self._init_labels()

    def _init_labels(self) -> None:
        for t in MismatchType:
            self.mismatch.labels(type=t.value)
            self.mismatch_active.labels(type=t.value)
        for a in ActionLabel:
            self.runs_with_remediation.labels(action=a.value)
            self.planned.labels(action=a.value)
            self.planned_last_hour.labels(action=a.value).set_function(
                self._recent_count(self._planned_recent[a.value])
            )
            self.executed.labels(action=a.value)
            for f in FailReason:
                self.failed.labels(action=a.value, reason=f.value)
            for w in AttemptOutcome:
                self.write_attempts.labels(action=a.value, outcome=w.value)
        for b in BlockReason:
            self.blocked.labels(reason=b.value)
            self.blocked_candidates.labels(reason=b.value)
        for s in SkipReason:
            self.skipped.labels(reason=s.value)
        for o in TriageOutcome:
            self.triage.labels(outcome=o.value)

    def _recent_count(self, recent: RecentCount) -> Callable[[], float]:
        return lambda: recent.count(self.clock())

    def observe_planned(self, action: str, ts_ms: int) -> None:
        """One plan (dry-run) of ``action`` at ``ts_ms``: the counter and the last hour."""
        self.planned.labels(action=action).inc()
        self._planned_recent[action].add(ts_ms)

    def planned_in_last_hour(self) -> dict[str, int]:
        """Plans in the last hour, by action (what the ``_last_hour`` gauge shows now)."""
        now = self.clock()
        return {a: recent.count(now) for a, recent in self._planned_recent.items()}

    def observe_last_remediation(self, ts_ms: int | None) -> None:
        """A remediation write at ``ts_ms`` (this instance's, or with HA any instance's):
        the gauge only moves forward."""
        if ts_ms is not None and ts_ms > self._last_remediation_ms:
            self._last_remediation_ms = ts_ms
            self.last_remediation_ts_ms.set(ts_ms)

    def set_blocked_candidates(self, by_gate: Mapping[str, int]) -> None:
        """The last run's blocked candidates under every gate that blocked them; every
        other reason reads 0."""
        self._blocked_reasons.update(by_gate)
        for reason in self._blocked_reasons:
            self.blocked_candidates.labels(reason=reason).set(by_gate.get(reason, 0))

    def set_budget(self, budget: BudgetTracker, now_ms: int) -> None:
        """The four daily-budget gauges, from ``budget`` as of ``now_ms`` (UTC day)."""
        calls_left = budget.calls_remaining_day(now_ms)  # first: rolls the day over if due
        notional_left = budget.notional_remaining_day(now_ms)
        self.budget_calls_used_day.set(budget.state.calls_used_day)
        self.budget_notional_used_day.set(float(budget.state.notional_used_day))
        self.budget_calls_remaining_day.set(calls_left)
        self.budget_notional_remaining_day.set(float(notional_left))

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (``exposition``)."""
        return exposition(self.registry)
