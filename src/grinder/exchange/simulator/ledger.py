"""The account's books: every fill (``userTrades``) and every wallet movement (``income``).

The starting balance is a TRANSFER into the wallet when the venue starts (or is reset);
each fill is one trade and moves the wallet by ``realizedPnl - commission``; each funding
settlement moves it by its ``FUNDING_FEE``. The ledger writes one income entry per movement,
as Binance does (REALIZED_PNL only when non-zero, COMMISSION for every fill with a fee,
FUNDING_FEE per position and settlement), so that for any account::

    wallet == sum(income)
    sum(COMMISSION income) == -sum(userTrades commission)
    sum(REALIZED_PNL income) == sum(userTrades realizedPnl)

Times are the simulator clock's; ids are counters seeded from the config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from grinder.exchange.simulator.events import Fill
from grinder.exchange.simulator.number_text import ZERO, fixed
from grinder.exchange.simulator.orders import Order
from grinder.exchange.simulator.symbols import SymbolSpec

TRANSFER = "TRANSFER"
REALIZED_PNL = "REALIZED_PNL"
COMMISSION = "COMMISSION"
FUNDING_FEE = "FUNDING_FEE"
INCOME_TYPES = (TRANSFER, REALIZED_PNL, COMMISSION, FUNDING_FEE)
"""The income types the simulator produces (the venue has more; a filter on another type is
accepted and matches nothing)."""


def _amount(value: Decimal) -> str:
    """Income and PnL amounts: 8 decimals, ``"0"`` for zero (as the captures write them)."""
    return "0" if value == 0 else fixed(value, 8)


@dataclass(frozen=True, slots=True)
class Trade:
    """One fill of one order."""

    trade_id: int
    order_id: int
    spec: SymbolSpec
    side: str
    position_side: str
    price: Decimal
    qty: Decimal
    realized: Decimal
    commission: Decimal
    maker: bool
    time_ms: int

    @classmethod
    def of(cls, order: Order, fill: Fill, now_ms: int) -> Trade:
        return cls(
            fill.trade_id,
            order.order_id,
            order.spec,
            order.side,
            order.position_side,
            fill.price,
            fill.qty,
            fill.realized,
            fill.commission,
            fill.maker,
            now_ms,
        )

    @property
    def symbol(self) -> str:
        return self.spec.symbol

    def view(self) -> dict[str, Any]:
        """A row of ``GET /fapi/v1/userTrades``."""
        pp, qp = self.spec.price_precision, self.spec.quantity_precision
        return {
            "symbol": self.symbol,
            "id": self.trade_id,
            "orderId": self.order_id,
            "side": self.side,
            "price": fixed(self.price, pp),
            "qty": fixed(self.qty, qp),
            "realizedPnl": _amount(self.realized),
            "marginAsset": self.spec.quote_asset,
            "quoteQty": fixed(self.price * self.qty, min(pp + qp, 8)),
            "commission": fixed(self.commission, 8),
            "commissionAsset": self.spec.quote_asset,
            "time": self.time_ms,
            "positionSide": self.position_side,
            "buyer": self.side == "BUY",
            "maker": self.maker,
        }


@dataclass(frozen=True, slots=True)
class Income:
    """One movement of the wallet."""

    tran_id: int
    symbol: str
    income_type: str
    amount: Decimal
    asset: str
    time_ms: int
    trade_id: str = ""

    def view(self) -> dict[str, Any]:
        """A row of ``GET /fapi/v1/income``."""
        return {
            "symbol": self.symbol,
            "incomeType": self.income_type,
            "income": fixed(self.amount, 8),
            "asset": self.asset,
            "info": self.income_type,
            "time": self.time_ms,
            "tranId": self.tran_id,
            "tradeId": self.trade_id,
        }


class Ledger:
    """Trades and income entries of the account, oldest first."""

    def __init__(self, tran_id_start: int) -> None:
        self._tran_id_start = tran_id_start
        self.on_trade: Callable[[Trade], None] | None = None
        self.reset()

    def reset(self) -> None:
        self.trades: list[Trade] = []
        self.incomes: list[Income] = []
        self._next_tran_id = self._tran_id_start

    def _income(
        self, symbol: str, kind: str, amount: Decimal, asset: str, now_ms: int, trade: str = ""
    ) -> None:
        self.incomes.append(Income(self._next_tran_id, symbol, kind, amount, asset, now_ms, trade))
        self._next_tran_id += 1

    def record_fill(self, trade: Trade) -> None:
        """Book one fill: the trade, its realized PnL (if any) and its commission (if any)."""
        self.trades.append(trade)
        asset = trade.spec.quote_asset
        ref = str(trade.trade_id)
        if trade.realized != 0:
            self._income(trade.symbol, REALIZED_PNL, trade.realized, asset, trade.time_ms, ref)
        if trade.commission != 0:
            self._income(trade.symbol, COMMISSION, -trade.commission, asset, trade.time_ms, ref)
        if self.on_trade is not None:
            self.on_trade(trade)

    def record_transfer(self, amount: Decimal, asset: str, now_ms: int) -> None:
        """The starting balance, as a transfer into the futures wallet."""
        self._income("", TRANSFER, amount, asset, now_ms)

    def record_funding(self, symbol: str, amount: Decimal, asset: str, now_ms: int) -> None:
        self._income(symbol, FUNDING_FEE, amount, asset, now_ms)

    def total_income(self) -> Decimal:
        return sum((i.amount for i in self.incomes), ZERO)


def in_window(time_ms: int, start: int | None, end: int | None) -> bool:
    """``start <= time_ms <= end``, each bound optional (both INCLUSIVE, as the docs say)."""
    return (start is None or time_ms >= start) and (end is None or time_ms <= end)


def newest(items: Iterable[Any], limit: int) -> list[Any]:
    """The last ``limit`` items, oldest first."""
    rows = list(items)
    return rows[-limit:] if limit < len(rows) else rows
