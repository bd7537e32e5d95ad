"""The account's trades behind a position difference, and whether they explain it (pure).

``GET /fapi/v1/userTrades`` gives the account's fills of one symbol (``AccountTrade``).
``account_for`` walks them from the newest back and keeps the shortest run of the most
recent trades whose signed quantities (a buy +, a sell -) add up to the difference
(observed - expected): those trades make up the difference exactly. When no such run
exists the verdict lists every trade read and says by how much they fall short.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from grinder.reconcile.types import PositionSide, Side

ZERO = Decimal(0)

TRADES_WEIGHT = 5
"""``GET /fapi/v1/userTrades``: request weight 5 (one symbol)."""
TRADES_LIMIT = 1000
"""The most trades one request returns (``limit`` ≤ 1000)."""
TRADES_MAX_WINDOW_MS = 7 * 24 * 60 * 60 * 1000
"""``endTime - startTime`` may not exceed 7 days."""


@dataclass(frozen=True, slots=True)
class AccountTrade:
    """One fill of the account (a row of ``userTrades``)."""

    symbol: str
    trade_id: int
    order_id: int
    side: Side
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    position_side: PositionSide = PositionSide.BOTH
    realized_pnl: Decimal = ZERO

    @property
    def signed_qty(self) -> Decimal:
        return self.qty if self.side is Side.BUY else -self.qty


@dataclass(frozen=True, slots=True)
class TradesVerdict:
    """The trades that make up a difference, and whether they explain it fully."""

    difference: Decimal
    trades: tuple[AccountTrade, ...]
    """Oldest first: the explaining run when ``explained``, else every trade read."""
    explained: bool
    accounted: Decimal
    """The signed sum of ``trades``."""

    @property
    def remainder(self) -> Decimal:
        """What the trades leave unexplained (``difference - accounted``)."""
        return self.difference - self.accounted

    def summary(self) -> str:
        n = len(self.trades)
        if self.explained:
            return (
                f"{n} trade(s) explain the difference {_text(self.difference)} fully "
                f"(signed sum {_text(self.accounted)})"
            )
        return (
            f"{n} trade(s) read do not explain the difference {_text(self.difference)}: "
            f"signed sum {_text(self.accounted)}, {_text(self.remainder)} unexplained"
        )

    def facts(self) -> tuple[tuple[str, str], ...]:
        head = (
            ("difference", _text(self.difference)),
            ("explained", "yes" if self.explained else "no"),
            ("signed_sum", _text(self.accounted)),
            ("unexplained", _text(self.remainder)),
        )
        rows = tuple(
            (
                f"trade {t.trade_id}",
                f"{t.side.value} {_text(t.qty)} @ {_text(t.price)} fee {_text(t.commission)} "
                f"{t.commission_asset} time {t.time_ms} order {t.order_id}",
            )
            for t in self.trades
        )
        return head + rows


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def account_for(
    trades: Sequence[AccountTrade],
    difference: Decimal,
    position_side: PositionSide = PositionSide.BOTH,
) -> TradesVerdict:
    """Which of ``trades`` (any order; one symbol) make up ``difference`` (see the module
    doc). Only trades of ``position_side`` count."""
    rows = sorted(
        (t for t in trades if t.position_side is position_side),
        key=lambda t: (t.time_ms, t.trade_id),
    )
    total = ZERO
    for i in range(len(rows) - 1, -1, -1):
        total += rows[i].signed_qty
        if total == difference and difference != ZERO:
            return TradesVerdict(difference, tuple(rows[i:]), True, total)
    return TradesVerdict(difference, tuple(rows), False, total)
