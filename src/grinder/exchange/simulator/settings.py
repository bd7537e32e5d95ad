"""The account's settings: leverage and margin type per symbol, multi-assets mode, brackets.

Leverage is bounded by the symbol's notional brackets (``GET /fapi/v1/leverageBracket``):
one ladder for every symbol, the shape of Binance's BTCUSDT ladder. A leverage ``L`` allows a
position notional up to the cap of the last bracket whose ``initialLeverage`` is at least
``L`` (``maxNotionalValue``); raising the leverage above what the open position allows is
-2027, as on the venue. Margin type and multi-assets mode are recorded and reported (and
refused as Binance refuses them: -4046/-4047/-4048, -4167/-4168); isolated margin changes no
figure: margin stays computed as cross.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator.symbols import SymbolSpec

CROSSED = "CROSSED"
ISOLATED = "ISOLATED"
MARGIN_TYPES = (CROSSED, ISOLATED)


@dataclass(frozen=True, slots=True)
class Bracket:
    """One notional bracket: up to ``cap`` of notional at up to ``leverage``."""

    number: int
    leverage: int
    floor: int
    cap: int
    maint_ratio: Decimal
    cum: Decimal

    def view(self) -> dict[str, Any]:
        return {
            "bracket": self.number,
            "initialLeverage": self.leverage,
            "notionalCap": self.cap,
            "notionalFloor": self.floor,
            "maintMarginRatio": float(self.maint_ratio),
            "cum": float(self.cum),
        }


def _ladder(rows: list[tuple[int, int, str]]) -> tuple[Bracket, ...]:
    """Brackets from (leverage, cap, maintenance ratio); ``cum`` as Binance defines it."""
    out: list[Bracket] = []
    floor = 0
    cum = Decimal(0)
    previous_ratio = Decimal(0)
    for number, (leverage, cap, ratio_text) in enumerate(rows, start=1):
        ratio = Decimal(ratio_text)
        cum += floor * (ratio - previous_ratio)
        out.append(Bracket(number, leverage, floor, cap, ratio, cum))
        floor, previous_ratio = cap, ratio
    return tuple(out)


BRACKETS: tuple[Bracket, ...] = _ladder(
    [
        (125, 50_000, "0.004"),
        (100, 600_000, "0.005"),
        (75, 3_000_000, "0.0065"),
        (50, 12_000_000, "0.01"),
        (25, 70_000_000, "0.02"),
        (20, 100_000_000, "0.025"),
        (10, 230_000_000, "0.05"),
        (5, 480_000_000, "0.1"),
        (4, 600_000_000, "0.125"),
        (3, 800_000_000, "0.15"),
        (2, 1_200_000_000, "0.25"),
        (1, 1_800_000_000, "0.5"),
    ]
)
MAX_LEVERAGE = BRACKETS[0].leverage


def max_notional(leverage: int) -> int:
    """The largest position notional ``leverage`` allows."""
    return max(b.cap for b in BRACKETS if b.leverage >= leverage)


def brackets_view(symbol: str) -> dict[str, Any]:
    return {"symbol": symbol, "brackets": [b.view() for b in BRACKETS]}


class AccountSettings:
    """Leverage and margin type of each symbol, and the multi-assets mode."""

    def __init__(self, specs: Mapping[str, SymbolSpec], default_leverage: int) -> None:
        self.leverage: dict[str, int] = dict.fromkeys(specs, default_leverage)
        self.margin_type: dict[str, str] = dict.fromkeys(specs, CROSSED)
        self.multi_assets = False

    def leverage_of(self, symbol: str) -> int:
        return self.leverage[symbol]

    def set_leverage(self, symbol: str, leverage: int, position_notional: Decimal) -> int:
        """Change one symbol's leverage; returns the max notional it allows."""
        if not 1 <= leverage <= MAX_LEVERAGE:
            raise E.ErrorReply(-4028, f"Leverage {leverage} is not valid")
        allowed = max_notional(leverage)
        if abs(position_notional) > allowed:
            raise E.err(E.MAX_LEVERAGE_RATIO)
        self.leverage[symbol] = leverage
        return allowed

    def set_margin_type(
        self, symbol: str, margin_type: str, *, orders: bool, position: bool
    ) -> None:
        if margin_type == self.margin_type[symbol]:
            raise E.err(E.NO_NEED_MARGIN_TYPE)
        if margin_type == ISOLATED and self.multi_assets:
            raise E.err(E.ISOLATED_IN_MULTI_ASSETS)
        if orders:
            raise E.err(E.MARGIN_TYPE_OPEN_ORDERS)
        if position:
            raise E.err(E.MARGIN_TYPE_POSITION)
        self.margin_type[symbol] = margin_type

    def set_multi_assets(self, on: bool) -> None:
        if on and ISOLATED in self.margin_type.values():
            raise E.err(E.MULTI_ASSETS_WITH_ISOLATED)
        self.multi_assets = on

    def symbol_config(self, symbol: str) -> dict[str, Any]:
        """A row of ``GET /fapi/v1/symbolConfig`` (leverage a string, as the capture has it)."""
        leverage = self.leverage[symbol]
        return {
            "symbol": symbol,
            "marginType": self.margin_type[symbol],
            "isAutoAddMargin": False,
            "leverage": str(leverage),
            "maxNotionalValue": str(max_notional(leverage)),
        }
