"""A thin order book: what a taker meets when the market is not infinitely deep.

By default the simulator's market is its mark price, as deep as ``liquidity`` allows
(``book.py``). With a ``Depth`` set for a symbol, a taker instead walks a ladder of
third-party levels -- ``levels`` of ``level_qty`` each, ``spacing_ticks`` apart, the
first at the mark -- together with the account's own resting orders on the other side,
best price first (at one price, the third party's level first). What a MARKET order
cannot fill on the ladder expires (expiry reason 9), as does an IOC order's rest
(reason 2); a GTC order rests.

Meeting an order of its own account is a self-trade, prevented by the taker's
``selfTradePreventionMode`` (Binance USDⓈ-M: the taker's mode decides):
``EXPIRE_TAKER`` expires the taker's rest, ``EXPIRE_MAKER`` (the default) expires the
resting order and goes on, ``EXPIRE_BOTH`` both; each expired order ends
``EXPIRED_IN_MATCH`` with expiry reason 1 (3 for an IOC taker). ``NONE`` trades.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from grinder.exchange.simulator.orders import Order

if TYPE_CHECKING:
    from grinder.exchange.simulator.account import Account

EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"
REASON_STP = 1
REASON_IOC = 2
REASON_IOC_STP = 3
REASON_MARKET = 9
REASON_FOK = 10
MAX_LEVELS = 1000


@dataclass(frozen=True, slots=True)
class Depth:
    levels: int
    level_qty: Decimal
    spacing_ticks: int

    def __post_init__(self) -> None:
        if not 1 <= self.levels <= MAX_LEVELS:
            raise ValueError(f"levels must be between 1 and {MAX_LEVELS}")
        if not self.level_qty > 0:
            raise ValueError("level quantity must be > 0")
        if self.spacing_ticks < 1:
            raise ValueError("spacingTicks must be >= 1")

    def ladder(self, mark: Decimal, tick: Decimal, taker_side: str) -> list[Decimal]:
        """The level prices a taker of ``taker_side`` meets, best first (all > 0)."""
        sign = 1 if taker_side == "BUY" else -1
        step = self.spacing_ticks * tick
        prices = (mark + sign * i * step for i in range(self.levels))
        return [p for p in prices if p > 0]


def _worse(side: str, price: Decimal, limit: Decimal) -> bool:
    return price > limit if side == "BUY" else price < limit


def _book(account: Account, order: Order, depth: Depth) -> list[tuple[Decimal, Order | None]]:
    """What ``order`` meets, best price first: the ladder's levels (``None``) and the
    account's own resting orders of the other side."""
    mark = account.book.mark(order.symbol)
    entries: list[tuple[Decimal, int, Order | None]] = [
        (price, 0, None) for price in depth.ladder(mark, order.spec.tick_size, order.side)
    ]
    other = "SELL" if order.side == "BUY" else "BUY"
    for resting in account.open_by_symbol[order.symbol].values():
        if resting is not order and resting.side == other and resting.type == "LIMIT":
            entries.append((resting.price, 1, resting))
    sign = 1 if order.side == "BUY" else -1
    entries.sort(key=lambda e: (sign * e[0], e[1]))
    return [(price, resting) for price, _, resting in entries]


def available(
    depth: Depth, mark: Decimal, tick: Decimal, side: str, limit: Decimal | None
) -> Decimal:
    """How much third-party quantity the ladder offers a taker of ``side`` within
    ``limit`` (a FOK order's check)."""
    prices = depth.ladder(mark, tick, side)
    within = [p for p in prices if limit is None or not _worse(side, p, limit)]
    return depth.level_qty * len(within)


def take(account: Account, order: Order, depth: Depth, limit: Decimal | None) -> None:
    """Match a marketable ``order`` against the ladder and the account's own orders."""
    for price, resting in _book(account, order, depth):
        if not order.is_open or (limit is not None and _worse(order.side, price, limit)):
            return
        if resting is None:
            account.fill(order, depth.level_qty, price, maker=False)
            continue
        if not resting.is_open:
            continue
        mode = order.stp_mode
        if mode == "NONE":
            traded = account.fill(order, resting.remaining, price, maker=False)
            account.fill(resting, traded, price, maker=True)
            continue
        if mode in ("EXPIRE_MAKER", "EXPIRE_BOTH"):
            account.expire(resting, status=EXPIRED_IN_MATCH, reason=REASON_STP)
        if mode in ("EXPIRE_TAKER", "EXPIRE_BOTH"):
            reason = REASON_IOC_STP if order.time_in_force == "IOC" else REASON_STP
            account.expire(order, status=EXPIRED_IN_MATCH, reason=reason)
            return
