"""What several benchmarks share: percentiles, Binance-style numbers, our client ids and a
resting LIMIT order for the simulator's ``POST /_sim/orders``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from grinder.exchange.simulator import SymbolSpec
from grinder.reconcile.identity import ClientOrderIdError, generate_client_order_id


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks."""
    data = sorted(values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def plain(value: Decimal) -> str:
    """A decimal as Binance writes it: fixed-point, never exponent notation."""
    return format(value, "f")


def our_client_id(symbol: str, seq: int, ts_seconds: int) -> str:
    """One of our client order ids; a shorter timestamp field where the symbol is long."""
    try:
        return generate_client_order_id(
            strategy_id="d", symbol=symbol, level_id=1, ts_seconds=ts_seconds, seq=seq
        )
    except ClientOrderIdError:
        return generate_client_order_id(
            strategy_id="d", symbol=symbol, level_id=1, ts_seconds=ts_seconds % 100_000, seq=seq
        )


def min_qty(spec: SymbolSpec, price: Decimal) -> Decimal:
    """A quantity 1.5x the symbol's MIN_NOTIONAL at ``price``, on the step."""
    steps = (spec.min_notional * Decimal("1.5") / price / spec.step_size).to_integral_value(
        rounding=ROUND_CEILING
    )
    return max(steps * spec.step_size, spec.min_qty)


def resting_order(
    spec: SymbolSpec, mark: Decimal, side: str, away: Decimal, client_id: str
) -> dict[str, Any]:
    """A GTC LIMIT order ``away`` (a fraction) from the mark on its passive side, on the tick,
    1.5x the minimum notional: it rests and does not fill while the mark stays near."""
    raw = mark * (1 - away) if side == "BUY" else mark * (1 + away)
    price = (raw / spec.tick_size).to_integral_value(rounding=ROUND_HALF_UP) * spec.tick_size
    return {
        "symbol": spec.symbol,
        "side": side,
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": plain(min_qty(spec, price)),
        "price": plain(price),
        "clientOrderId": client_id,
    }
