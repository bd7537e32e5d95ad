"""Metrics of high availability, on the service's registry.

``grinder_ha_is_leader`` itself belongs to the reconcile metrics (CONTRACT §7);
these say why it has the value it has. Every series exists from the start, HA on
or off, so an alert on ``grinder_ha_redis_up == 0`` can require
``grinder_ha_enabled == 1``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

CHANGES = ("acquired", "lost")
REFUSALS = (
    "not_leader",
    "fenced",
    "lease_expiring",
    "recovering",
    "redis_unavailable",
    "max_calls_per_day",
    "max_notional_per_day",
)
OPERATIONS = (
    "acquire",
    "renew",
    "release",
    "budget_reserve",
    "budget_load",
    "budget_restore",
    "budget_reset",
    "cooldown",
    "expected_refresh",
    "expected_write",
    "ping",
    "other",
)


class HaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.enabled = Gauge(
            "grinder_ha_enabled", "1 when the service runs with a Redis URL (HA)", registry=r
        )
        self.redis_up = Gauge(
            "grinder_ha_redis_up",
            "1 when the last Redis operation succeeded (0 with HA off)",
            registry=r,
        )
        self.lease_held = Gauge(
            "grinder_ha_lease_held",
            "1 while this instance holds the lease (before its local deadline)",
            registry=r,
        )
        self.fencing_token = Gauge(
            "grinder_ha_fencing_token",
            "Fencing token of this instance's current leadership (0 when not leader)",
            registry=r,
        )
        self.lease_remaining = Gauge(
            "grinder_ha_lease_remaining_seconds",
            "Time left before this instance's lease runs out unless renewed (0 when not leader)",
            registry=r,
        )
        self.leadership_changes = Counter(
            "grinder_ha_leadership_changes",
            "Leaderships acquired and lost by this instance",
            ["change"],
            registry=r,
        )
        self.renew_failures = Counter(
            "grinder_ha_lease_renew_failures",
            "Acquire or renew attempts that could not reach Redis",
            registry=r,
        )
        self.redis_errors = Counter(
            "grinder_ha_redis_errors",
            "Redis operations that failed or timed out, by operation",
            ["op"],
            registry=r,
        )
        self.reservations_refused = Counter(
            "grinder_ha_budget_reservations_refused",
            "Remediation writes the shared budget refused (fenced, lease expiring, "
            "Redis recovering or unreachable, limits)",
            ["reason"],
            registry=r,
        )
        self.expected_refresh_failures = Counter(
            "grinder_ha_expected_refresh_failures",
            "Refreshes of the Redis expected-state mirror that failed (the last mirror is kept)",
            registry=r,
        )
        for change in CHANGES:
            self.leadership_changes.labels(change=change)
        for reason in REFUSALS:
            self.reservations_refused.labels(reason=reason)
        for op in OPERATIONS:
            self.redis_errors.labels(op=op)

    def redis_error(self, op: str) -> None:
        self.redis_errors.labels(op=op if op in OPERATIONS else "other").inc()
