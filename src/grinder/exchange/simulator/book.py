"""The market side of each symbol: a mark price that walks, and how much trades.

The mark price moves by a seeded random walk (one step per tick: a Gaussian
move of ``volatility`` times the price, rounded to the tick size and kept
inside the PRICE_FILTER band). The walk can be frozen, stepped by hand, or
overridden. There is no third-party order book: the mark is the market. A
taker trades at the mark; a resting LIMIT order trades at its own price once
the mark crosses it. ``liquidity`` caps how much of one order can trade per
matching pass (``None`` = all of it), which is how partial fills happen. A ``Depth``
set for a symbol replaces that for takers with a thin book of levels (``depth.py``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from grinder.exchange.simulator.depth import Depth
from grinder.exchange.simulator.symbols import SymbolSpec


@dataclass(slots=True)
class _Market:
    spec: SymbolSpec
    mark: Decimal
    frozen: bool = False
    liquidity: Decimal | None = None
    depth: Depth | None = None


class MarketBook:
    """Mark prices and liquidity for every symbol of the simulator."""

    def __init__(
        self,
        specs: Mapping[str, SymbolSpec],
        *,
        seed: int,
        volatility: float = 0.0005,
        frozen: bool = False,
    ) -> None:
        self._specs = dict(specs)
        self._seed = seed
        self.volatility = volatility
        self.frozen = frozen
        self._rng = random.Random(seed)
        self._markets: dict[str, _Market] = {}
        self.reset(seed)
        self.frozen = frozen

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._seed = seed
        self._rng = random.Random(self._seed)
        self._markets = {
            name: _Market(spec=spec, mark=spec.initial_mark) for name, spec in self._specs.items()
        }

    @property
    def symbols(self) -> list[str]:
        return list(self._markets)

    def spec(self, symbol: str) -> SymbolSpec:
        return self._markets[symbol].spec

    def mark(self, symbol: str) -> Decimal:
        return self._markets[symbol].mark

    def set_mark(self, symbol: str, price: Decimal) -> Decimal:
        """Put the mark at ``price`` (rounded to the tick, clamped to the price filter)."""
        market = self._markets[symbol]
        market.mark = self._clamp(market.spec, price)
        return market.mark

    def freeze(self, frozen: bool, symbol: str | None = None) -> None:
        if symbol is None:
            self.frozen = frozen
        else:
            self._markets[symbol].frozen = frozen

    def is_frozen(self, symbol: str) -> bool:
        return self.frozen or self._markets[symbol].frozen

    def liquidity(self, symbol: str) -> Decimal | None:
        return self._markets[symbol].liquidity

    def set_liquidity(self, symbol: str | None, qty: Decimal | None) -> None:
        targets = self._markets.values() if symbol is None else [self._markets[symbol]]
        for market in targets:
            market.liquidity = qty

    def depth(self, symbol: str) -> Depth | None:
        """The thin book a taker walks (``depth.py``); None: the mark, as deep as
        ``liquidity``."""
        return self._markets[symbol].depth

    def set_depth(self, symbol: str | None, depth: Depth | None) -> None:
        targets = self._markets.values() if symbol is None else [self._markets[symbol]]
        for market in targets:
            market.depth = depth

    def step(self, *, force: bool = False) -> list[str]:
        """One walk step for every unfrozen symbol; the symbols whose mark changed.

        The random draws happen for every symbol in a fixed order even when
        frozen, so freezing one symbol does not change another's path.
        """
        changed: list[str] = []
        for name in sorted(self._markets):
            market = self._markets[name]
            move = self._rng.gauss(0.0, self.volatility)
            if (self.frozen or market.frozen) and not force:
                continue
            new = self._clamp(market.spec, market.mark * (Decimal(1) + Decimal(move)))
            if new != market.mark:
                market.mark = new
                changed.append(name)
        return changed

    def snapshot(self) -> dict[str, str]:
        return {name: str(m.mark) for name, m in sorted(self._markets.items())}

    @staticmethod
    def _clamp(spec: SymbolSpec, price: Decimal) -> Decimal:
        ticks = (price / spec.tick_size).to_integral_value(rounding=ROUND_HALF_UP)
        rounded = ticks * spec.tick_size
        if rounded < spec.min_price:
            rounded = spec.min_price
        if rounded > spec.max_price:
            rounded = spec.max_price
        return rounded.quantize(spec.tick_size)
