"""Metrics of the live service: readiness, settings in force, detection latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.types import MismatchType

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.up = Gauge("grinder_reconcile_up", "1 while the reconcile loop runs", registry=r)
        self.ready = Gauge(
            "grinder_reconcile_ready", "1 once the first REST snapshot is in", registry=r
        )
        self.run_errors = Counter(
            "grinder_reconcile_run_errors",
            "Reconcile runs that failed with an unexpected error (the service carries on)",
            registry=r,
        )
        self.snapshots = Counter(
            "grinder_reconcile_snapshots",
            "REST snapshots of open orders and positions",
            ["outcome"],
            registry=r,
        )
        self.snapshot_interval = Gauge(
            "grinder_reconcile_snapshot_interval_seconds",
            "Interval between periodic snapshots, chosen from request weight",
            registry=r,
        )
        self.detection_latency = Histogram(
            "grinder_reconcile_detection_latency_seconds",
            "From the moment a mismatch became certain (grace period over) to its detection",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.control_changes = Counter(
            "grinder_reconcile_control_changes",
            "Runtime changes of settings in force (control: a command on this instance; "
            "operator: a word read from the deployment's operator state; sighup)",
            ["source"],
            registry=r,
        )
        self.dry_run = Gauge("grinder_reconcile_dry_run", "1 when dry_run is in force", registry=r)
        self.allow_active = Gauge(
            "grinder_reconcile_allow_active_remediation",
            "1 when allow_active_remediation is in force",
            registry=r,
        )
        self.armed = Gauge("grinder_reconcile_armed", "1 when the executor is armed", registry=r)
        self.allow_mainnet = Gauge(
            "grinder_reconcile_allow_mainnet_trade",
            "1 when ALLOW_MAINNET_TRADE=1 is in force for this process",
            registry=r,
        )
        self.action = Gauge(
            "grinder_reconcile_action",
            "1 for the RemediationAction in force",
            ["action"],
            registry=r,
        )
        self.whitelist_size = Gauge(
            "grinder_reconcile_symbol_whitelist_size", "Symbols in the whitelist", registry=r
        )
        self.expected_heartbeat_max_age = Gauge(
            "grinder_reconcile_expected_heartbeat_max_age_seconds",
            "expected_heartbeat_max_age_s in force: an older bot heartbeat blocks remediation",
            registry=r,
        )
        for kind in MismatchType:
            self.detection_latency.labels(type=kind.value)
        for outcome in ("ok", "error"):
            self.snapshots.labels(outcome=outcome)
        for source in ("control", "sighup", "operator"):
            self.control_changes.labels(source=source)
        for a in RemediationAction:
            self.action.labels(action=a.value)

    def observe_settings(
        self, config: ReconcileConfig, *, armed: bool, allow_mainnet: bool, whitelist: int
    ) -> None:
        self.dry_run.set(1 if config.dry_run else 0)
        self.allow_active.set(1 if config.allow_active_remediation else 0)
        self.armed.set(1 if armed else 0)
        self.allow_mainnet.set(1 if allow_mainnet else 0)
        for a in RemediationAction:
            self.action.labels(action=a.value).set(1 if config.action is a else 0)
        self.whitelist_size.set(whitelist)
        self.expected_heartbeat_max_age.set(config.expected_heartbeat_max_age_s)
