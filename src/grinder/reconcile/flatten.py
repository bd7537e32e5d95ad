"""What a flatten sends: a reduce-only order for the position read just now, and what a
further attempt of it may send (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

from grinder.reconcile.types import ZERO, ObservedPosition, PositionSide, Side

BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class FlattenOrder:
    """What a flatten sends for a position read just now: a reduce-only order of ``qty``
    on ``side`` (the position's size rounded down to the market step), worth ``notional``
    at the mark price (None without a mark price). ``limit_price``: an IOC LIMIT at that
    price instead of a MARKET order (a bounded flatten); its notional is then valued at
    the worse of the mark and the limit."""

    qty: Decimal
    side: Side
    notional: Decimal | None
    limit_price: Decimal | None = None

    def retry_qty(self, position_qty: Decimal, step: Decimal | None) -> Decimal:
        """What a further attempt sends for the position read again: what is left, never
        more than this order, and nothing once the position is gone or on the other side."""
        if position_qty == ZERO or (position_qty > 0) != (self.side is Side.SELL):
            return ZERO
        return min(flatten_quantity(position_qty, step), self.qty)

    def rest_qty(
        self,
        position_qty: Decimal,
        step: Decimal | None,
        filled: Decimal,
        price: Decimal | None,
    ) -> Decimal:
        """What a later request of the same action may send once ``filled`` of this order
        has filled: what is left of the position, never more than this order's unfilled
        rest, nor more than the unspent part of its reservation (``notional``) is worth at
        ``price`` (the worse of the mark and the limit now; None: unknown, no cap)."""
        qty = min(self.retry_qty(position_qty, step), self.qty - filled)
        if qty <= ZERO:
            return ZERO
        if self.notional is not None and price is not None and price > 0:
            unspent = self.notional * (self.qty - filled) / self.qty
            qty = min(qty, flatten_quantity(unspent / price, step))
        return qty


def flatten_order(
    position_qty: Decimal,
    step: Decimal | None,
    mark_price: Decimal | None,
    *,
    max_slippage_bps: Decimal | None = None,
    tick: Decimal | None = None,
) -> FlattenOrder | None:
    """The order that flattens a position of ``position_qty``; None when there is nothing
    to flatten (the position is gone, or smaller than one step). With
    ``max_slippage_bps``, an IOC LIMIT bounded that far from the mark (no mark: no price,
    and no notional, which gate 9 refuses)."""
    qty = flatten_quantity(position_qty, step)
    if qty == ZERO:
        return None
    side = Side.SELL if position_qty > 0 else Side.BUY
    if mark_price is None or mark_price <= 0:
        return FlattenOrder(qty, side, None)
    if max_slippage_bps is None:
        return FlattenOrder(qty, side, qty * mark_price)
    limit = bounded_price(side, mark_price, max_slippage_bps, tick)
    return FlattenOrder(qty, side, qty * max(mark_price, limit), limit)


def bounded_price(side: Side, mark: Decimal, bps: Decimal, tick: Decimal | None) -> Decimal:
    """The limit of a bounded flatten: a SELL never below ``mark x (1 - bps)``, a BUY never
    above ``mark x (1 + bps)``, rounded to the tick toward the mark (never past the
    bound), and never below one tick."""
    if side is Side.SELL:
        raw = mark * (1 - bps / BPS)
        rounding = ROUND_CEILING
    else:
        raw = mark * (1 + bps / BPS)
        rounding = ROUND_FLOOR
    if tick is None or tick <= 0:
        return raw
    ticks = (raw / tick).to_integral_value(rounding=rounding)
    return max(ticks, Decimal(1)) * tick


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
