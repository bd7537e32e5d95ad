"""Number text as Binance writes it: decimals are strings, at fixed or natural precision."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

ZERO = Decimal(0)
_QUANTS: dict[int, Decimal] = {}


def _quant(places: int) -> Decimal:
    q = _QUANTS.get(places)
    if q is None:
        q = Decimal(1).scaleb(-places)
        _QUANTS[places] = q
    return q


def fixed(value: Decimal, places: int) -> str:
    """``value`` with exactly ``places`` decimals (``"0.00000000"`` style)."""
    if places <= 0:
        return format(value.quantize(Decimal(1), rounding=ROUND_HALF_UP), "f")
    return format(value.quantize(_quant(places), rounding=ROUND_HALF_UP), "f")


def plain(value: Decimal) -> str:
    """``value`` without trailing zeros or exponent (``"0"``, ``"0.05"``, ``"3113.87"``)."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def fixed_or_zero(value: Decimal, places: int) -> str:
    """``"0"`` for zero, else ``value`` at ``places`` decimals (event prices)."""
    return "0" if value == 0 else fixed(value, places)


def decimals_of(value: Decimal) -> int:
    """How many decimals ``value`` is written with (``Decimal("0.010")`` -> 3)."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def quantize_down(value: Decimal, step: Decimal) -> Decimal:
    """``value`` rounded down to a multiple of ``step``."""
    return (value // step) * step
