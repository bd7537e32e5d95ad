"""Pure parsers from Binance USDⓈ-M wire JSON to the core's domain types.

Everything here takes already-decoded JSON (``dict`` / ``list``; the user-data
parser also takes the raw text) and returns :mod:`grinder.reconcile.types`
objects, or raises :class:`WireFormatError`. Nothing does I/O.

Wire rules these parsers rely on (see ``exchange-corpus/binance-usdm/SOURCES.md``):

* Prices and quantities arrive as decimal strings and become ``Decimal``; a
  JSON float is refused (it may already have lost digits), an integer is
  accepted. ``NaN``/``Infinity``, exponents, blanks and strings longer than
  64 characters are refused.
* Ids and millisecond times arrive as JSON integers or as digit strings (the
  docs' ``listenKeyExpired`` and some captures quote them); both are accepted
  and kept as ``int`` (order ids exceed 2**53). They must fit in a signed
  64-bit integer and be non-negative.
* Unknown keys are ignored; a missing optional key and ``null`` mean the same.
* Key order never matters.

Errors: every malformed input raises :class:`WireFormatError` (a
``ValueError``) with a one-line message naming the message kind and the field,
e.g. ``ORDER_TRADE_UPDATE: field o.q: expected a decimal string, got 'abc'``.
No other exception type escapes, and no partly-built object is returned.

Modules
-------
``wire``       the error type, JSON decoding and the field readers (numbers,
               ids, strings, flags, sides) every parser is built from;
``statuses``   order and algo order statuses → ``OrderStatus`` (the mapping
               table is in its module doc);
``responses``  REST bodies: orders, algo orders, positions, exchangeInfo,
               error bodies;
``events``     user-data stream events.

Everything public is importable from this package.
"""

from __future__ import annotations

from grinder.exchange.binance.parsing.events import (
    AccountUpdate,
    AlgoUpdate,
    ListenKeyExpired,
    OrderUpdate,
    OtherEvent,
    UserEvent,
    parse_user_event,
)
from grinder.exchange.binance.parsing.responses import (
    SymbolFilters,
    parse_algo_order,
    parse_algo_orders,
    parse_countdown,
    parse_error,
    parse_exchange_info,
    parse_order,
    parse_orders,
    parse_position,
    parse_positions,
)
from grinder.exchange.binance.parsing.statuses import (
    algo_status_to_order_status as algo_status_to_order_status,
)
from grinder.exchange.binance.parsing.wire import WireFormatError, decode_json

__all__ = [
    "AccountUpdate",
    "AlgoUpdate",
    "ListenKeyExpired",
    "OrderUpdate",
    "OtherEvent",
    "SymbolFilters",
    "UserEvent",
    "WireFormatError",
    "decode_json",
    "parse_algo_order",
    "parse_algo_orders",
    "parse_countdown",
    "parse_error",
    "parse_exchange_info",
    "parse_order",
    "parse_orders",
    "parse_position",
    "parse_positions",
    "parse_user_event",
]
