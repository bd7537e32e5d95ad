"""What the classifier reads about one mismatch (``causes.classify``), frozen.

The service gathers these (``grinder.incidents.evidence.EvidenceBook``) from the stream
events it received, triage's lookups, its stream's reconnect windows and the bot's
heartbeat; tests build them from recorded messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from grinder.exchange.binance.stream_windows import ReconnectWindow
from grinder.reconcile.labels import TriageOutcome
from grinder.reconcile.types import Mismatch


@dataclass(frozen=True, slots=True)
class OrderEventFact:
    """One stream event about an order (``ORDER_TRADE_UPDATE`` or ``ALGO_UPDATE``)."""

    event: str
    client_order_id: str
    symbol: str
    position_side: str
    status: str
    ts_ms: int
    execution_type: str | None = None
    expiry_reason: str | None = None
    time_in_force: str | None = None
    stp_mode: str | None = None
    reject_reason: str | None = None
    filled_qty: str = "0"
    order_id: int | None = None


@dataclass(frozen=True, slots=True)
class FillFact:
    """One fill on a position, and whether the order that made it is one the bot records."""

    client_order_id: str
    symbol: str
    position_side: str
    side: str
    qty: str
    execution_type: str
    ts_ms: int
    recorded_by_bot: bool = False


@dataclass(frozen=True, slots=True)
class TriggerRejectFact:
    """``CONDITIONAL_ORDER_TRIGGER_REJECT``: the triggered order was rejected."""

    symbol: str
    reason: str
    ts_ms: int
    order_id: int | None = None
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class TriageFact:
    """What triage's lookup by client order id found."""

    client_order_id: str
    outcome: TriageOutcome
    ts_ms: int
    status: str | None = None
    update_ts_ms: int | None = None


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """Everything the classifier reads about one mismatch."""

    mismatch: Mismatch
    now_ms: int
    prefix: str
    strategy_allowlist: frozenset[str]
    order_events: tuple[OrderEventFact, ...] = ()
    fills: tuple[FillFact, ...] = ()
    trigger_rejects: tuple[TriggerRejectFact, ...] = ()
    triage: TriageFact | None = None
    windows: tuple[ReconnectWindow, ...] = ()
    heartbeat_age_s: float | None = None
    """Seconds since the bot last wrote its expected state (None: no source; inf: never)."""
    max_heartbeat_age_s: float = 30.0
    position_changed_ms: int | None = None
