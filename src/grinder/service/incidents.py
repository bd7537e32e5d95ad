"""The service's incident ledger: which store, and what the classifier reads from the service.

Alone with ``--ledger-db FILE`` the ledger is that SQLite file (kept across restarts);
alone without it, in memory (kept until the service exits); under HA, in Redis in the
deployment's namespace (kept across a failover: only the leader writes).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from grinder.clock import Clock
from grinder.ha.runtime import HaRuntime
from grinder.incidents.control import add_incident_routes
from grinder.incidents.ledger import DAY_MS, Retention
from grinder.incidents.metrics import IncidentMetrics
from grinder.incidents.redis_store import RedisIncidentStore
from grinder.incidents.sink import IncidentLedger, LedgerInputs
from grinder.incidents.sqlite_store import SqliteIncidentStore
from grinder.incidents.store import IncidentStore, MemoryIncidentStore
from grinder.incidents.trades import TradesFetcher
from grinder.incidents.trades_plan import TradesPolicy
from grinder.reporting.audit import AuditWriter
from grinder.service.options import ServiceConfig, ServiceOptions
from grinder.service.venue import VenueConnection

__all__ = [
    "IncidentLedger",
    "TradesFetcher",
    "add_incident_routes",
    "open_incident_store",
    "open_ledger",
    "open_trades",
]


def open_incident_store(opts: ServiceOptions, ha: HaRuntime | None) -> IncidentStore:
    if ha is not None:
        return RedisIncidentStore(ha.conn)
    if opts.ledger_db is not None:
        return SqliteIncidentStore(opts.ledger_db)
    return MemoryIncidentStore()


def open_ledger(
    opts: ServiceOptions,
    ha: HaRuntime | None,
    *,
    inputs: LedgerInputs,
    clock: Clock,
    audit: AuditWriter | None,
    registry: CollectorRegistry,
) -> IncidentLedger:
    """The ledger of a starting service; ``inputs``: what the classifier reads from the
    running service (the bot's heartbeat, the stream's reconnect windows, the expected
    orders, the observed positions)."""
    svc = opts.service
    ledger = IncidentLedger(
        open_incident_store(opts, ha),
        opts.reconcile,
        clock=clock,
        inputs=inputs,
        audit=audit,
        metrics=IncidentMetrics(registry),
        may_write=(lambda: ha.elector.is_leader()) if ha is not None else (lambda: True),
        retention=Retention(
            max_age_ms=int(svc.incident_retention_days * DAY_MS),
            max_count=svc.incident_max_count,
        ),
    )
    ledger.load()
    return ledger


def open_trades(
    ledger: IncidentLedger, venue: VenueConnection, pacing: ServiceConfig, clock: Clock
) -> TradesFetcher:
    """The trades fetch of a started service's position incidents: it fetches only while the
    ledger may be written (under HA: the leader)."""
    every_ms = int(pacing.incident_trades_every_s * 1000)
    return TradesFetcher(
        ledger,
        venue.port,
        clock=clock,
        limits=venue.rest.limits,
        may_fetch=ledger.may_write,
        metrics=ledger.metrics,
        policy=TradesPolicy(
            margin_ms=int(pacing.incident_trades_margin_s * 1000),
            every_ms=every_ms,
            backoff_max_ms=30 * every_ms,
        ),
    )
