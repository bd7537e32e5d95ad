"""What a flatten sends: a reduce-only order for the position read just now, and what a
further attempt of it may send (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from grinder.reconcile.types import ZERO, ObservedPosition, PositionSide, Side


@dataclass(frozen=True, slots=True)
class FlattenOrder:
    """What a flatten sends for a position read just now: a reduce-only order of ``qty``
    on ``side`` (the position's size rounded down to the market step), worth ``notional``
    at the mark price (None without a mark price)."""

    qty: Decimal
    side: Side
    notional: Decimal | None

    def retry_qty(self, position_qty: Decimal, step: Decimal | None) -> Decimal:
        """What a further attempt sends for the position read again: what is left, never
        more than this order, and nothing once the position is gone or on the other side."""
        if position_qty == ZERO or (position_qty > 0) != (self.side is Side.SELL):
            return ZERO
        return min(flatten_quantity(position_qty, step), self.qty)


def flatten_order(
    position_qty: Decimal, step: Decimal | None, mark_price: Decimal | None
) -> FlattenOrder | None:
    """The order that flattens a position of ``position_qty``; None when there is nothing
    to flatten (the position is gone, or smaller than one step)."""
    qty = flatten_quantity(position_qty, step)
    if qty == ZERO:
        return None
    side = Side.SELL if position_qty > 0 else Side.BUY
    notional = None if mark_price is None or mark_price <= 0 else qty * mark_price
    return FlattenOrder(qty, side, notional)


def position_qty(positions: Iterable[ObservedPosition], symbol: str, side: PositionSide) -> Decimal:
    """The signed quantity of one position among ``positions`` (zero when absent)."""
    return next((p.qty for p in positions if p.symbol == symbol and p.position_side == side), ZERO)


def flatten_quantity(position_qty: Decimal, step: Decimal | None) -> Decimal:
    """The quantity a flatten sends for a position: its size rounded down to the market
    step (never more than is there)."""
    qty = abs(position_qty)
    if step is not None and step > 0:
        qty = (qty / step).to_integral_value(rounding=ROUND_DOWN) * step
    return qty
