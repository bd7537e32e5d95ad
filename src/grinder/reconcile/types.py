"""Domain types of reconciliation: orders, positions and mismatches.

Money and quantities are ``Decimal``; times are integer milliseconds since the
Unix epoch. Every enum value that reaches a metric label or an audit line is a
stable string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

ZERO = Decimal(0)


class OrderStatus(StrEnum):
    """Order status as Binance USDⓈ-M reports it."""

    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"
    REJECTED = "REJECTED"

    @property
    def is_open(self) -> bool:
        return self in OPEN_STATUSES

    @property
    def is_terminal(self) -> bool:
        return self not in OPEN_STATUSES

    @property
    def ended_without_fill(self) -> bool:
        """Terminal for a reason other than being filled."""
        return self in _ENDED_UNFILLED


OPEN_STATUSES = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})
"""The statuses of an order still working on the exchange (the one definition of "open";
as ``StrEnum`` members they also match the plain strings ``"NEW"``, ``"PARTIALLY_FILLED"``)."""
_ENDED_UNFILLED = frozenset(
    {
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.EXPIRED_IN_MATCH,
        OrderStatus.REJECTED,
    }
)

# Progression rank: an update with a lower rank never replaces a higher one.
STATUS_RANK: dict[OrderStatus, int] = {
    OrderStatus.NEW: 0,
    OrderStatus.PARTIALLY_FILLED: 1,
    OrderStatus.FILLED: 2,
    OrderStatus.CANCELED: 2,
    OrderStatus.EXPIRED: 2,
    OrderStatus.EXPIRED_IN_MATCH: 2,
    OrderStatus.REJECTED: 2,
}


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class PositionSide(StrEnum):
    """One-way mode uses BOTH; hedge mode LONG and SHORT."""

    BOTH = "BOTH"
    LONG = "LONG"
    SHORT = "SHORT"


class MismatchType(StrEnum):
    """The five mismatch types; values are metric label values."""

    ORDER_MISSING_ON_EXCHANGE = "ORDER_MISSING_ON_EXCHANGE"
    ORDER_EXISTS_UNEXPECTED = "ORDER_EXISTS_UNEXPECTED"
    ORDER_STATUS_DIVERGENCE = "ORDER_STATUS_DIVERGENCE"
    POSITION_NONZERO_UNEXPECTED = "POSITION_NONZERO_UNEXPECTED"
    POSITION_QTY_DIVERGENCE = "POSITION_QTY_DIVERGENCE"


PositionKey = tuple[str, PositionSide]


@dataclass(frozen=True, slots=True)
class ExpectedOrder:
    """An order the bot placed, as the bot believes it to be (a value: a change is a new
    one, ``dataclasses.replace``).

    ``ended_ts_ms`` is set when the bot considers the order over: it sent a
    cancel (``cancel_requested``) or booked a terminal status.
    """

    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal | None = None
    order_type: str = "LIMIT"
    position_side: PositionSide = PositionSide.BOTH
    status: OrderStatus = OrderStatus.NEW
    created_ts_ms: int = 0
    updated_ts_ms: int = 0
    cancel_requested: bool = False
    ended_ts_ms: int | None = None
    is_algo: bool = False

    def __post_init__(self) -> None:
        # An order the bot asked to cancel, or booked as terminal, has ended for the bot.
        if self.ended_ts_ms is None and (self.cancel_requested or self.status.is_terminal):
            object.__setattr__(self, "ended_ts_ms", self.updated_ts_ms or self.created_ts_ms)

    @property
    def expected_open(self) -> bool:
        """The bot believes this order is live on the exchange."""
        return self.ended_ts_ms is None


@dataclass(slots=True)
class ObservedOrder:
    """An order as the exchange reported it (snapshot, stream event or query).

    ``update_ts_ms`` is the exchange's own update time; ``seen_ts_ms`` is the
    local time at which this state was learned (or, for a snapshot, the time
    its request was sent), which is what snapshot authority compares.
    """

    client_order_id: str
    symbol: str
    side: Side
    status: OrderStatus
    qty: Decimal
    executed_qty: Decimal = ZERO
    price: Decimal | None = None
    order_type: str = "LIMIT"
    position_side: PositionSide = PositionSide.BOTH
    order_id: int | None = None
    created_ts_ms: int = 0
    update_ts_ms: int = 0
    seen_ts_ms: int = 0
    reduce_only: bool = False
    is_algo: bool = False


@dataclass(slots=True)
class ExpectedPosition:
    """The position the bot intends to hold; ``qty`` is signed (short < 0)."""

    symbol: str
    qty: Decimal
    position_side: PositionSide = PositionSide.BOTH
    updated_ts_ms: int = 0

    @property
    def key(self) -> PositionKey:
        return (self.symbol, self.position_side)


@dataclass(slots=True)
class ObservedPosition:
    """A position as the exchange reported it; ``qty`` is signed (short < 0).

    ``changed_ts_ms`` is when the quantity last changed (the exchange's update
    time when it gave one, else the local time it was learned): the start of
    the position grace period.
    """

    symbol: str
    qty: Decimal
    position_side: PositionSide = PositionSide.BOTH
    entry_price: Decimal = ZERO
    mark_price: Decimal | None = None
    update_ts_ms: int = 0
    seen_ts_ms: int = 0
    changed_ts_ms: int = 0

    @property
    def key(self) -> PositionKey:
        return (self.symbol, self.position_side)


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One difference between expected and observed state."""

    type: MismatchType
    symbol: str
    client_order_id: str | None = None
    position_side: PositionSide | None = None
    expected_status: str | None = None
    observed_status: str | None = None
    expected_qty: Decimal | None = None
    observed_qty: Decimal | None = None
    is_algo: bool = False
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of the incident: the same key in consecutive runs is one incident."""
        subject = self.client_order_id or (self.position_side or PositionSide.BOTH).value
        return (self.type.value, self.symbol, subject)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type.value, "symbol": self.symbol}
        if self.client_order_id is not None:
            out["client_order_id"] = self.client_order_id
        if self.position_side is not None:
            out["position_side"] = self.position_side.value
        for name in ("expected_status", "observed_status"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.expected_qty is not None:
            out["expected_qty"] = str(self.expected_qty)
        if self.observed_qty is not None:
            out["observed_qty"] = str(self.observed_qty)
        if self.is_algo:
            out["is_algo"] = True
        return out
