"""Prometheus metrics of reconciliation and remediation, on a registry passed in.

Every label value the product knows is created at start-up with value 0, so
"no executions" reads as ``0`` rather than as an absent series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from grinder.reconcile.labels import ActionLabel, BlockReason, FailReason, SkipReason, TriageOutcome
from grinder.reconcile.types import MismatchType


class ReconcileMetrics:
    """The CONTRACT §7 metrics, plus triage, skip, failure and audit counters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._last_remediation_ms = 0
        r = registry
        self.runs = Counter("grinder_reconcile_runs", "Reconcile runs completed", registry=r)
        self.last_snapshot_age = Gauge(
            "grinder_reconcile_last_snapshot_age_seconds",
            "Age of the last REST snapshot of orders and positions",
            registry=r,
        )
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
        self.failed = Counter(
            "grinder_reconcile_action_failed",
            "Remediation actions the exchange refused or that failed",
            ["action", "reason"],
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
        self._init_labels()

    def _init_labels(self) -> None:
        for t in MismatchType:
            self.mismatch.labels(type=t.value)
            self.mismatch_active.labels(type=t.value)
        for a in ActionLabel:
            self.runs_with_remediation.labels(action=a.value)
            self.planned.labels(action=a.value)
            self.executed.labels(action=a.value)
            for f in FailReason:
                self.failed.labels(action=a.value, reason=f.value)
        for b in BlockReason:
            self.blocked.labels(reason=b.value)
        for s in SkipReason:
            self.skipped.labels(reason=s.value)
        for o in TriageOutcome:
            self.triage.labels(outcome=o.value)

    def observe_last_remediation(self, ts_ms: int | None) -> None:
        """A remediation write at ``ts_ms`` (this instance's, or with HA any instance's):
        the gauge only moves forward."""
        if ts_ms is not None and ts_ms > self._last_remediation_ms:
            self._last_remediation_ms = ts_ms
            self.last_remediation_ts_ms.set(ts_ms)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
