"""An incident's record, frozen, and its one JSON form (what every store keeps).

An incident is one mismatch from the run it appeared in to the run it cleared in
(``Mismatch.key``: type, symbol, client order id or position side). Its record
holds when it was first and last seen and when it cleared, its cause with the
evidence that decided it, every remediation step taken for it, and an
operator's acknowledgement. The acknowledgement is kept apart from the rest by
every store (an operator may acknowledge while the service writes the record).

Its JSON form, and the checks that read it back, are in ``record_json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from grinder.reconcile.labels import IncidentCause, ResultStatus
from grinder.reconcile.types import MismatchType

IncidentKey = tuple[str, str, str]
"""``Mismatch.key``: (type, symbol, client order id or position side)."""

SCHEMA = 1
"""The version of the JSON form (``"v"``). Fields added later are optional within it: a
record written before ``trades`` existed is read as one without trades, and a reader
that predates a field ignores it."""


class LedgerError(Exception):
    """The ledger cannot do what was asked: one line naming what and where."""


class LedgerCorrupt(LedgerError):
    """A stored record, or the store itself, cannot be read as a ledger."""


class UnknownIncident(LedgerError):
    """No incident has that id."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """One fact behind a cause: what it is (``kind``), when (the exchange's or the
    service's time), a one-line ``summary`` and its ``facts`` as text pairs."""

    kind: str
    summary: str
    ts_ms: int | None = None
    facts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    """One remediation outcome for the incident (``REMEDIATE_RESULT``). A step that
    repeats the last one (same status, action, mode, reason and failing gates: a gate
    that stays closed run after run) is counted in it (``repeats``, ``last_ts_ms``)."""

    ts_ms: int
    run_id: str
    status: ResultStatus
    action: str
    mode: str
    reason: str | None = None
    gates: tuple[str, ...] = ()
    """The failing gates of a blocked step."""
    qty: str | None = None
    notional: str | None = None
    remediation_order_id: str | None = None
    error: str | None = None
    attempts: tuple[str, ...] = ()
    """Each attempt's outcome at the wire (the exchange's answer: accepted, rejected, …)."""
    repeats: int = 1
    last_ts_ms: int | None = None

    def same_as(self, other: Step) -> bool:
        return (self.status, self.action, self.mode, self.reason, self.gates) == (
            other.status,
            other.action,
            other.mode,
            other.reason,
            other.gates,
        ) and self.status in (ResultStatus.BLOCKED, ResultStatus.SKIPPED)


@dataclass(frozen=True, slots=True)
class TradeRow:
    """One of the account's fills behind a position incident (a ``userTrades`` row), its
    numbers as the exchange wrote them."""

    trade_id: int
    order_id: int
    side: str
    qty: str
    price: str
    commission: str
    commission_asset: str
    time_ms: int
    position_side: str = "BOTH"


@dataclass(frozen=True, slots=True)
class TradesEvidence:
    """The account's trades fetched for a position incident, and whether they make up its
    difference (observed - expected) fully. ``trades`` are the run that explains it when
    ``explained``, else every trade the window held; ``unexplained`` is what they leave."""

    fetched_ms: int
    start_ms: int
    end_ms: int
    difference: str
    explained: bool
    signed_sum: str
    unexplained: str
    trades: tuple[TradeRow, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    """Who acknowledged the incident, when, and why."""

    by: str
    ts_ms: int
    note: str


class IncidentSummary(NamedTuple):
    """What ``grinder incidents list`` shows of one incident (a tuple: a list of 10,000 is
    built in a few milliseconds, where a frozen dataclass takes several times as long)."""

    id: str
    type: MismatchType
    symbol: str
    subject: str
    cause: IncidentCause
    first_seen_ms: int
    last_seen_ms: int
    cleared_ms: int | None
    ack_by: str | None = None
    ack_ts_ms: int | None = None

    @property
    def is_open(self) -> bool:
        return self.cleared_ms is None


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """Everything known of one incident (see the module doc)."""

    id: str
    type: MismatchType
    symbol: str
    subject: str
    first_seen_ms: int
    last_seen_ms: int
    opened_run_id: str
    client_order_id: str | None = None
    position_side: str | None = None
    cleared_ms: int | None = None
    cause: IncidentCause = IncidentCause.UNKNOWN
    evidence: tuple[Evidence, ...] = ()
    steps: tuple[Step, ...] = ()
    steps_dropped: int = 0
    """Steps forgotten to keep the record bounded (the oldest after the first)."""
    facts: tuple[tuple[str, str], ...] = field(default=())
    """The mismatch as first seen (``Mismatch.as_dict``), as text pairs."""
    ack: Ack | None = None
    trades: TradesEvidence | None = None
    """The account's trades behind a position incident, once fetched (D67)."""

    @property
    def key(self) -> IncidentKey:
        return (self.type.value, self.symbol, self.subject)

    @property
    def is_open(self) -> bool:
        return self.cleared_ms is None

    def summary(self) -> IncidentSummary:
        ack = self.ack
        return IncidentSummary(
            id=self.id,
            type=self.type,
            symbol=self.symbol,
            subject=self.subject,
            cause=self.cause,
            first_seen_ms=self.first_seen_ms,
            last_seen_ms=self.last_seen_ms,
            cleared_ms=self.cleared_ms,
            ack_by=None if ack is None else ack.by,
            ack_ts_ms=None if ack is None else ack.ts_ms,
        )
