"""The service's incident ledger: which store, and what the classifier reads from the service.

Alone with ``--ledger-db FILE`` the ledger is that SQLite file (kept across restarts);
alone without it, in memory (kept until the service exits); under HA, in Redis in the
deployment's namespace (kept across a failover: only the leader writes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grinder.clock import Clock
from grinder.incidents.control import add_incident_routes
from grinder.incidents.ledger import DAY_MS, Retention
from grinder.incidents.metrics import IncidentMetrics
from grinder.incidents.redis_store import RedisIncidentStore
from grinder.incidents.sink import IncidentLedger, LedgerInputs
from grinder.incidents.sqlite_store import SqliteIncidentStore
from grinder.incidents.store import IncidentStore, MemoryIncidentStore
from grinder.incidents.trades import TradesFetcher
from grinder.incidents.trades_plan import TradesPolicy
from grinder.reconcile.types import PositionKey
from grinder.service.options import ServiceConfig
from grinder.service.venue import VenueConnection

__all__ = [
    "IncidentLedger",
    "TradesFetcher",
    "add_incident_routes",
    "open_incident_store",
    "open_ledger",
    "open_trades",
]

if TYPE_CHECKING:
    from grinder.service.app import ReconcileService


def open_incident_store(service: ReconcileService) -> IncidentStore:
    opts = service.opts
    if service.ha is not None:
        return RedisIncidentStore(service.ha.conn)
    if opts.ledger_db is not None:
        return SqliteIncidentStore(opts.ledger_db)
    return MemoryIncidentStore()


def open_ledger(service: ReconcileService) -> IncidentLedger:
    """The ledger of a starting service (its expected state and engine are in place)."""
    svc = service.opts.service
    ha = service.ha

    def recorded_by_bot(cid: str) -> bool:
        expected = service.expected
        return expected is not None and expected.store.get_order(cid) is not None

    def position_changed_ms(key: PositionKey) -> int | None:
        pos = service.observed.get_position(key)
        return None if pos is None else pos.changed_ts_ms

    ledger = IncidentLedger(
        open_incident_store(service),
        service.config,
        clock=service.clock,
        inputs=LedgerInputs(
            heartbeat_age_s=service.expected_heartbeat_age,
            windows=lambda: service.stream.windows.windows() if service.stream else (),
            recorded_by_bot=recorded_by_bot,
            position_changed_ms=position_changed_ms,
        ),
        audit=service.audit,
        metrics=IncidentMetrics(service.registry),
        may_write=(lambda: ha.elector.is_leader()) if ha is not None else (lambda: True),
        retention=Retention(
            max_age_ms=int(svc.incident_retention_days * DAY_MS),
            max_count=svc.incident_max_count,
        ),
    )
    ledger.load()
    if service.venue is not None:
        fetcher = open_trades(ledger, service.venue, svc, service.clock)
        ledger.trades_pass = fetcher.after_run
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
