"""The ledger's Prometheus metrics, on the service's registry.

* ``grinder_incidents_open{type,cause}`` -- open incidents, every pair present from the
  start at 0;
* ``grinder_incidents_oldest_unacknowledged_age_seconds`` -- how long the oldest open
  incident nobody has acknowledged has stood (0: none), evaluated at each scrape;
* ``grinder_incidents_opened_total{cause}`` -- incidents opened by this instance;
* ``grinder_incidents_store_errors_total`` -- ledger writes or reads that failed
  (reconciliation goes on without them);
* ``grinder_incidents_trade_fetches_total{outcome}`` -- ``userTrades`` fetches for position
  incidents: ``explained``, ``not_explained`` (attached, short of the difference),
  ``failed`` (nothing attached; tried again later), ``withheld`` (not sent: the IP's weight
  share, a 429's pause or a ban);
* ``grinder_incidents_trade_fetch_weight_total`` -- the request weight those fetches sent.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from grinder.incidents.records import IncidentRecord
from grinder.reconcile.labels import IncidentCause
from grinder.reconcile.types import MismatchType

TRADE_FETCH_OUTCOMES = ("explained", "not_explained", "failed", "withheld")


class IncidentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.open = Gauge(
            "grinder_incidents_open",
            "Open mismatch incidents, by mismatch type and cause",
            ["type", "cause"],
            registry=r,
        )
        self.oldest_unacknowledged_age = Gauge(
            "grinder_incidents_oldest_unacknowledged_age_seconds",
            "Seconds the oldest open incident nobody has acknowledged has stood (0: none)",
            registry=r,
        )
        self.opened = Counter(
            "grinder_incidents_opened",
            "Incidents opened by this instance, by cause",
            ["cause"],
            registry=r,
        )
        self.store_errors = Counter(
            "grinder_incidents_store_errors",
            "Incident ledger reads or writes that failed (reconciliation went on)",
            registry=r,
        )
        self.trade_fetches = Counter(
            "grinder_incidents_trade_fetches",
            "Account-trade fetches for position incidents, by outcome",
            ["outcome"],
            registry=r,
        )
        self.trade_fetch_weight = Counter(
            "grinder_incidents_trade_fetch_weight",
            "Request weight sent by account-trade fetches for incidents",
            registry=r,
        )
        for outcome in TRADE_FETCH_OUTCOMES:
            self.trade_fetches.labels(outcome=outcome)
        for t in MismatchType:
            for c in IncidentCause:
                self.open.labels(type=t.value, cause=c.value).set(0)
        for c in IncidentCause:
            self.opened.labels(cause=c.value)
        self._shown: Tally[tuple[str, str]] = Tally()

    def set_open(self, records: Iterable[IncidentRecord]) -> None:
        """The open gauge from ``records``; only the pairs that changed are set (a run costs
        nothing when nothing opened or cleared)."""
        counts = Tally((r.type.value, r.cause.value) for r in records)
        if counts == self._shown:
            return
        for pair in set(counts) | set(self._shown):
            self.open.labels(type=pair[0], cause=pair[1]).set(counts.get(pair, 0))
        self._shown = counts

    def watch_oldest(self, oldest_s: Callable[[], float]) -> None:
        self.oldest_unacknowledged_age.set_function(oldest_s)
