"""Prometheus metrics of the exchange connection, on a registry passed in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from grinder.exchange.binance.stream import StreamState

STREAM_EVENT_TYPES = (
    "ORDER_TRADE_UPDATE",
    "ACCOUNT_UPDATE",
    "ALGO_UPDATE",
    "listenKeyExpired",
    "other",
)


class ExchangeMetrics:
    """Request weight, user-data stream state and event counts."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.request_weight_used = Gauge(
            "grinder_exchange_request_weight_used_1m",
            "X-MBX-USED-WEIGHT-1M from the last REST response (limit 2400)",
            registry=r,
        )
        self.request_weight_spent = Counter(
            "grinder_exchange_request_weight_spent",
            "Request weight of every REST request sent (documented endpoint weights)",
            registry=r,
        )
        self.stream_state = Gauge(
            "grinder_stream_state",
            "User-data stream: 0 disconnected, 1 connecting, 2 resyncing, 3 live",
            registry=r,
        )
        self.stream_connected = Gauge(
            "grinder_stream_connected", "1 while the user-data stream is live", registry=r
        )
        self.stream_events = Counter(
            "grinder_stream_events",
            "User-data stream events received, by event type",
            ["type"],
            registry=r,
        )
        self.stream_parse_errors = Counter(
            "grinder_stream_parse_errors",
            "User-data stream messages that could not be parsed",
            registry=r,
        )
        self.stream_reconnects = Counter(
            "grinder_stream_reconnects", "User-data stream reconnects", registry=r
        )
        for t in STREAM_EVENT_TYPES:
            self.stream_events.labels(type=t)

    def observe_weight(self, used: int) -> None:
        self.request_weight_used.set(used)

    def observe_spend(self, weight: int) -> None:
        self.request_weight_spent.inc(weight)

    def observe_state(self, state: StreamState) -> None:
        self.stream_state.set(int(state))
        self.stream_connected.set(1 if state is StreamState.LIVE else 0)
        if state is StreamState.CONNECTING:
            self.stream_reconnects.inc()

    def observe_event(self, event_type: str) -> None:
        label = event_type if event_type in STREAM_EVENT_TYPES else "other"
        self.stream_events.labels(type=label).inc()
