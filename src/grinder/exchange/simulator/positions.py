"""Positions per (symbol, positionSide): amounts, entry prices, PnL and their views.

Amounts are signed (short < 0) in both modes: one-way uses ``BOTH``; hedge
mode keeps ``LONG`` (>= 0) and ``SHORT`` (<= 0) apart. The entry price is the
quantity-weighted average of the fills that opened the position; reducing
fills realize ``(price - entry) * qty`` and leave the entry unchanged; a
one-way fill through zero opens the remainder at the fill price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from grinder.exchange.simulator.number_text import ZERO, fixed, plain
from grinder.exchange.simulator.symbols import SymbolSpec

_ENTRY_QUANT = Decimal("1e-8")
MAINT_MARGIN_RATE = Decimal("0.004")
MAX_NOTIONAL = "1000000"


def price_text(value: Decimal) -> str:
    """Entry and break-even prices: natural precision, ``"0.0"`` when flat."""
    return "0.0" if value == 0 else plain(value.quantize(_ENTRY_QUANT))


@dataclass(slots=True)
class Position:
    spec: SymbolSpec
    position_side: str
    amt: Decimal = ZERO
    entry: Decimal = ZERO
    realized: Decimal = ZERO
    fees: Decimal = ZERO
    update_time_ms: int = 0

    @property
    def symbol(self) -> str:
        return self.spec.symbol

    def apply_fill(
        self, side: str, qty: Decimal, price: Decimal, fee: Decimal, now_ms: int
    ) -> Decimal:
        """Book one fill; returns the PnL it realized (before fees)."""
        signed = qty if side == "BUY" else -qty
        realized = ZERO
        if self.amt == 0 or (self.amt > 0) == (signed > 0):
            new_amt = self.amt + signed
            self.entry = ((self.entry * abs(self.amt) + price * qty) / abs(new_amt)).quantize(
                _ENTRY_QUANT
            )
            self.amt = new_amt
        else:
            closing = min(qty, abs(self.amt))
            direction = Decimal(1) if self.amt > 0 else Decimal(-1)
            realized = (price - self.entry) * closing * direction
            self.amt += signed
            if self.amt == 0:
                self.entry = ZERO
            elif (self.amt > 0) != (direction > 0):
                self.entry = price
        self.realized += realized
        self.fees = ZERO if self.amt == 0 else self.fees + fee
        self.update_time_ms = now_ms
        return realized

    def set(self, amt: Decimal, entry: Decimal, now_ms: int) -> None:
        self.amt = amt
        self.entry = ZERO if amt == 0 else entry
        self.fees = ZERO
        self.update_time_ms = now_ms

    def break_even(self) -> Decimal:
        if self.amt == 0:
            return ZERO
        return self.entry + self.fees / self.amt

    def unrealized(self, mark: Decimal) -> Decimal:
        return (mark - self.entry) * self.amt if self.amt else ZERO

    # --- views ------------------------------------------------------------------------------

    def _margins(
        self, mark: Decimal, leverage: int, bid_notional: Decimal, ask_notional: Decimal
    ) -> tuple[Decimal, Decimal, Decimal]:
        """The notional at ``mark``, its initial margin and the open orders' initial margin."""
        notional = self.amt * mark
        return notional, abs(notional) / leverage, (bid_notional + ask_notional) / leverage

    def v3_row(
        self, mark: Decimal, leverage: int, bid_notional: Decimal, ask_notional: Decimal
    ) -> dict[str, Any]:
        """A row of ``GET /fapi/v3/positionRisk``."""
        notional, initial, order_margin = self._margins(mark, leverage, bid_notional, ask_notional)
        return {
            "symbol": self.symbol,
            "positionSide": self.position_side,
            "positionAmt": fixed(self.amt, self.spec.quantity_precision),
            "entryPrice": price_text(self.entry),
            "breakEvenPrice": price_text(self.break_even()),
            "markPrice": fixed(mark, 8),
            "unRealizedProfit": fixed(self.unrealized(mark), 8),
            "liquidationPrice": "0",
            "isolatedMargin": "0",
            "notional": fixed(notional, 8),
            "marginAsset": self.spec.quote_asset,
            "isolatedWallet": "0",
            "initialMargin": fixed(initial + order_margin, 8),
            "maintMargin": fixed(abs(notional) * MAINT_MARGIN_RATE, 8),
            "positionInitialMargin": fixed(initial, 8),
            "openOrderInitialMargin": plain(order_margin.quantize(_ENTRY_QUANT)),
            "adl": 0 if self.amt == 0 else 1,
            "bidNotional": plain(bid_notional),
            "askNotional": plain(ask_notional),
            "updateTime": self.update_time_ms,
        }

    def v2_row(
        self, mark: Decimal, leverage: int, *, isolated: bool = False, max_notional: int = 0
    ) -> dict[str, Any]:
        """A row of ``GET /fapi/v2/positionRisk``."""
        return {
            "symbol": self.symbol,
            "positionAmt": fixed(self.amt, self.spec.quantity_precision),
            "entryPrice": price_text(self.entry),
            "breakEvenPrice": price_text(self.break_even()),
            "markPrice": fixed(mark, 8),
            "unRealizedProfit": fixed(self.unrealized(mark), 8),
            "liquidationPrice": "0",
            "leverage": str(leverage),
            "maxNotionalValue": str(max_notional) if max_notional else MAX_NOTIONAL,
            "marginType": "isolated" if isolated else "cross",
            "isolatedMargin": "0.00000000",
            "isAutoAddMargin": "false",
            "positionSide": self.position_side,
            "notional": fixed(self.amt * mark, 8),
            "isolatedWallet": "0",
            "updateTime": self.update_time_ms,
        }

    def account_v2_row(
        self, mark: Decimal, leverage: int, bid_notional: Decimal, ask_notional: Decimal
    ) -> dict[str, Any]:
        notional, initial, order_margin = self._margins(mark, leverage, bid_notional, ask_notional)
        return {
            "symbol": self.symbol,
            "initialMargin": plain((initial + order_margin).quantize(_ENTRY_QUANT)),
            "maintMargin": plain((abs(notional) * MAINT_MARGIN_RATE).quantize(_ENTRY_QUANT)),
            "unrealizedProfit": fixed(self.unrealized(mark), 8),
            "positionInitialMargin": plain(initial.quantize(_ENTRY_QUANT)),
            "openOrderInitialMargin": plain(order_margin.quantize(_ENTRY_QUANT)),
            "leverage": str(leverage),
            "isolated": False,
            "entryPrice": price_text(self.entry),
            "breakEvenPrice": price_text(self.break_even()),
            "maxNotional": MAX_NOTIONAL,
            "positionSide": self.position_side,
            "positionAmt": fixed(self.amt, self.spec.quantity_precision),
            "notional": plain(notional.quantize(_ENTRY_QUANT)),
            "isolatedWallet": "0",
            "updateTime": self.update_time_ms,
            "bidNotional": plain(bid_notional),
            "askNotional": plain(ask_notional),
        }

    def account_v3_row(self, mark: Decimal, leverage: int) -> dict[str, Any]:
        notional = self.amt * mark
        return {
            "symbol": self.symbol,
            "positionSide": self.position_side,
            "positionAmt": fixed(self.amt, self.spec.quantity_precision),
            "unrealizedProfit": fixed(self.unrealized(mark), 8),
            "isolatedMargin": "0",
            "notional": fixed(notional, 8),
            "isolatedWallet": "0",
            "initialMargin": fixed(abs(notional) / leverage, 8),
            "maintMargin": fixed(abs(notional) * MAINT_MARGIN_RATE, 8),
            "updateTime": self.update_time_ms,
        }

    def event_row(self, mark: Decimal) -> dict[str, Any]:
        """A row of ``ACCOUNT_UPDATE``'s ``P`` list."""
        return {
            "s": self.symbol,
            "pa": plain(self.amt),
            "ep": fixed(self.entry, 8),
            "bep": plain(self.break_even().quantize(_ENTRY_QUANT)),
            "cr": fixed(self.realized, 8),
            "up": fixed(self.unrealized(mark), 8),
            "mt": "cross",
            "iw": "0",
            "ps": self.position_side,
        }

    def dump(self, mark: Decimal) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "positionSide": self.position_side,
            "positionAmt": plain(self.amt),
            "entryPrice": plain(self.entry),
            "markPrice": plain(mark),
            "unRealizedProfit": plain(self.unrealized(mark).quantize(_ENTRY_QUANT)),
            "realizedProfit": plain(self.realized),
            "updateTime": self.update_time_ms,
        }
