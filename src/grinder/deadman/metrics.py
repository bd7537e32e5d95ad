"""The dead-man switch's metrics (``grinder_deadman_*``).

Per symbol, as this instance knows its own renewals: ``armed`` (1 while the countdown
of its last accepted renewal runs), the time of that renewal, the countdown left by
it. Counters: renewals sent by outcome, due renewals withheld by reason.
``uncovered_conditional_orders``: open conditional orders (the Algo Service's) on the
switch's symbols, which the countdown is not documented to cancel.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class DeadmanMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.enabled = Gauge(
            "grinder_deadman_enabled", "1 when [deadman] enabled is in force", registry=r
        )
        self.countdown = Gauge(
            "grinder_deadman_countdown_seconds",
            "The countdown each renewal sets ([deadman] countdown_s)",
            registry=r,
        )
        self.armed = Gauge(
            "grinder_deadman_armed",
            "1 while the countdown set by this instance's last accepted renewal runs",
            ["symbol"],
            registry=r,
        )
        self.last_renewal = Gauge(
            "grinder_deadman_last_renewal_timestamp_seconds",
            "When this instance's last accepted renewal was sent (Unix time)",
            ["symbol"],
            registry=r,
        )
        self.countdown_left = Gauge(
            "grinder_deadman_countdown_remaining_seconds",
            "Countdown left by this instance's last accepted renewal (0: ended)",
            ["symbol"],
            registry=r,
        )
        self.renewals = Counter(
            "grinder_deadman_renewals",
            "Renewals sent to the exchange, by outcome (accepted, rejected, unknown, failed)",
            ["outcome"],
            registry=r,
        )
        self.withheld = Counter(
            "grinder_deadman_renewals_withheld",
            "Due renewals not sent, by the first reason (the countdown keeps running)",
            ["reason"],
            registry=r,
        )
        self.uncovered = Gauge(
            "grinder_deadman_uncovered_conditional_orders",
            "Open conditional (algo) orders on the switch's symbols: not cancelled by it",
            ["symbol"],
            registry=r,
        )
