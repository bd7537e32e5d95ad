"""The error type, JSON decoding and field readers the Binance parsers are built from.

The readers keep a leading underscore: they are internal to
:mod:`grinder.exchange.binance.parsing` and shared by its modules only.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, NoReturn

from grinder.reconcile.types import ZERO, PositionSide, Side

# --- the one exception ---------------------------------------------------------------------


class WireFormatError(ValueError):
    """A wire message that cannot be parsed: missing field, wrong type, bad number, bad JSON.

    ``kind`` names the message (``ORDER_TRADE_UPDATE``, ``order``, ``exchangeInfo``…),
    ``field`` the dotted path of the offending field inside it (``o.q``,
    ``[3].origQty``, ``a.P[0].pa``), or ``None`` when the message as a whole is
    wrong; ``problem`` says what is wrong. ``str()`` is always a single line.
    """

    def __init__(self, kind: str, field: str | None, problem: str) -> None:
        self.kind = kind
        self.field = field
        self.problem = problem
        text = f"{kind}: field {field}: {problem}" if field else f"{kind}: {problem}"
        super().__init__(text.replace("\r", "\\r").replace("\n", "\\n"))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.kind, self.field, self.problem))

    def with_prefix(self, prefix: str) -> WireFormatError:
        """The same error with ``prefix`` put in front of the field path (``[3].`` …)."""
        path = prefix + self.field if self.field else prefix.rstrip(".")
        return WireFormatError(self.kind, path, self.problem)


def _describe(value: object) -> str:
    """A short, single-line description of a JSON value for error messages."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        if len(value) > 40:
            return f"{value[:40]!r}... ({len(value)} characters)"
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 128:
            return f"an integer of {value.bit_length()} bits"
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _field_error(
    obj: dict[str, Any], key: str, kind: str, parent: str, expected: str
) -> WireFormatError:
    if key not in obj:
        return WireFormatError(kind, parent + key, "missing")
    return WireFormatError(kind, parent + key, f"expected {expected}, got {_describe(obj[key])}")


def _not_object(kind: str, path: str | None, value: object) -> WireFormatError:
    if value is None and path is not None:
        return WireFormatError(kind, path, "missing")
    return WireFormatError(kind, path, f"expected a JSON object, got {_describe(value)}")


# --- JSON text -------------------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_json(text: str | bytes | bytearray, kind: str = "message") -> Any:
    """Decode JSON text (UTF-8 bytes or str); any failure is a ``WireFormatError``.

    ``NaN``/``Infinity`` literals, truncated text, bad UTF-8, absurdly deep
    nesting and integers beyond Python's digit limit are all refused.
    """
    try:
        if not isinstance(text, str):
            text = bytes(text).decode("utf-8")
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        detail = str(exc) or type(exc).__name__
        if len(detail) > 120:
            detail = detail[:120] + "..."
        raise WireFormatError(kind, None, f"invalid JSON: {detail}") from None


# --- field readers ---------------------------------------------------------------------------
#
# Each takes (object, key, message kind, path of the object) and either returns a
# value of the right type or raises WireFormatError naming ``parent + key``. The
# path is only concatenated on the error path, which keeps the hot path cheap.

_DECIMAL_MATCH = re.compile(r"-?[0-9]+(?:\.[0-9]+)?").fullmatch
_MAX_DECIMAL_CHARS = 64
_INT_DECIMAL_LIMIT = 10**30
_INT64_LIMIT = 2**63
_MAX_INT_DIGITS = 19

# Decoded decimal strings, shared (Decimal is immutable). Streams repeat the same
# texts ("0", "0.000", the current price) constantly; the cache is dropped whole
# when full so it follows moving prices without growing.
_DECIMAL_CACHE: dict[str, Decimal] = {}
_DECIMAL_CACHE_MAX = 4096


def _to_decimal(value: object) -> Decimal | None:
    if type(value) is str:
        cached = _DECIMAL_CACHE.get(value)
        if cached is not None:
            return cached
        if len(value) <= _MAX_DECIMAL_CHARS and _DECIMAL_MATCH(value) is not None:
            result = Decimal(value)
            if len(_DECIMAL_CACHE) >= _DECIMAL_CACHE_MAX:
                _DECIMAL_CACHE.clear()
            _DECIMAL_CACHE[value] = result
            return result
        return None
    if type(value) is int:
        if -_INT_DECIMAL_LIMIT < value < _INT_DECIMAL_LIMIT:
            return Decimal(value)
        return None
    if type(value) is Decimal and value.is_finite() and -64 <= value.adjusted() <= 64:
        # Only when the caller decoded with parse_float=Decimal.
        return value
    return None


def _req_decimal(obj: dict[str, Any], key: str, kind: str, parent: str) -> Decimal:
    result = _to_decimal(obj.get(key))
    if result is None:
        raise _field_error(obj, key, kind, parent, "a decimal string")
    return result


def _opt_decimal(obj: dict[str, Any], key: str, kind: str, parent: str) -> Decimal | None:
    value = obj.get(key)
    if value is None:
        return None
    result = _to_decimal(value)
    if result is None:
        raise _field_error(obj, key, kind, parent, "a decimal string")
    return result


def _decimal_or_zero(obj: dict[str, Any], key: str, kind: str, parent: str) -> Decimal:
    result = _opt_decimal(obj, key, kind, parent)
    return ZERO if result is None else result


def _price(obj: dict[str, Any], key: str, kind: str, parent: str) -> Decimal | None:
    """A price; absent, null and zero ("no limit price", "no mark price") are ``None``."""
    result = _opt_decimal(obj, key, kind, parent)
    if result is None or not result:
        return None
    return result


def _to_int(value: object) -> int | None:
    if type(value) is int:
        return value if 0 <= value < _INT64_LIMIT else None
    if (
        type(value) is str
        and 0 < len(value) <= _MAX_INT_DIGITS
        and value.isascii()
        and value.isdigit()
    ):
        number = int(value)
        return number if number < _INT64_LIMIT else None
    return None


_INT_EXPECTED = "a non-negative 64-bit integer"


def _req_int(obj: dict[str, Any], key: str, kind: str, parent: str) -> int:
    result = _to_int(obj.get(key))
    if result is None:
        raise _field_error(obj, key, kind, parent, _INT_EXPECTED)
    return result


def _opt_int(obj: dict[str, Any], key: str, kind: str, parent: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    result = _to_int(value)
    if result is None:
        raise _field_error(obj, key, kind, parent, _INT_EXPECTED)
    return result


def _req_str(obj: dict[str, Any], key: str, kind: str, parent: str) -> str:
    value = obj.get(key)
    if type(value) is str and value:
        return value
    raise _field_error(obj, key, kind, parent, "a non-empty string")


def _opt_str(obj: dict[str, Any], key: str, kind: str, parent: str) -> str | None:
    value = obj.get(key)
    if value is None or type(value) is str:
        return value
    raise _field_error(obj, key, kind, parent, "a string")


_BOOLS = {"true": True, "false": False}


def _bool(obj: dict[str, Any], key: str, kind: str, parent: str) -> bool:
    """A flag; absent or null is ``False``; the strings "true"/"false" are accepted."""
    value = obj.get(key)
    if value is None:
        return False
    if value is True or value is False:
        return value
    if type(value) is str:
        flag = _BOOLS.get(value)
        if flag is not None:
            return flag
    raise _field_error(obj, key, kind, parent, "a boolean")


_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}
_POSITION_SIDES = {
    "BOTH": PositionSide.BOTH,
    "LONG": PositionSide.LONG,
    "SHORT": PositionSide.SHORT,
}


def _side(obj: dict[str, Any], key: str, kind: str, parent: str) -> Side:
    value = obj.get(key)
    if type(value) is str:
        side = _SIDES.get(value)
        if side is not None:
            return side
    raise _field_error(obj, key, kind, parent, "BUY or SELL")


def _position_side(obj: dict[str, Any], key: str, kind: str, parent: str) -> PositionSide:
    """``positionSide``; absent or null is ``BOTH`` (one-way mode)."""
    value = obj.get(key)
    if value is None:
        return PositionSide.BOTH
    if type(value) is str:
        side = _POSITION_SIDES.get(value)
        if side is not None:
            return side
    raise _field_error(obj, key, kind, parent, "BOTH, LONG or SHORT")


def _check_position_sign(qty: Decimal, position_side: PositionSide, kind: str, path: str) -> None:
    """Hedge-mode amounts are signed too (SHORT ≤ 0); a contradiction is malformed."""
    if (position_side is PositionSide.LONG and qty < 0) or (
        position_side is PositionSide.SHORT and qty > 0
    ):
        raise WireFormatError(
            kind,
            path,
            f"amount {qty} contradicts positionSide {position_side.value} "
            "(LONG amounts are >= 0, SHORT amounts <= 0)",
        )


# --- whole messages --------------------------------------------------------------------------


def _expect_object(value: object, kind: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise _not_object(kind, None, value)


def _expect_list(value: object, kind: str) -> list[Any]:
    if isinstance(value, list):
        return value
    raise WireFormatError(kind, None, f"expected a JSON array, got {_describe(value)}")
