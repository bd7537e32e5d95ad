"""Klines built from what the simulator saw: its mark prices and the account's own fills.

Every heartbeat (and every mark set through the control API) records each symbol's mark
into that minute's candle (open, high, low, close); every fill of the account adds its
quantity, quote quantity and one trade (taker buys also to the taker-buy volumes). Longer
intervals are the 1-minute candles grouped by their open time (``1M``: by calendar month,
UTC). Minutes the venue did not live through have no candle; at most ``KEEP_MINUTES`` are
kept per symbol.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from grinder.exchange.simulator.ledger import Trade
from grinder.exchange.simulator.number_text import ZERO, fixed
from grinder.exchange.simulator.symbols import SymbolSpec

MINUTE_MS = 60_000
KEEP_MINUTES = 50_000
_M = MINUTE_MS
INTERVALS: dict[str, int] = {
    "1m": _M,
    "3m": 3 * _M,
    "5m": 5 * _M,
    "15m": 15 * _M,
    "30m": 30 * _M,
    "1h": 60 * _M,
    "2h": 120 * _M,
    "4h": 240 * _M,
    "6h": 360 * _M,
    "8h": 480 * _M,
    "12h": 720 * _M,
    "1d": 1440 * _M,
    "3d": 3 * 1440 * _M,
    "1w": 7 * 1440 * _M,
    "1M": 0,
}
_WEEK_OFFSET_MS = 4 * 1440 * _M
"""Weeks open on Monday 00:00 UTC; the epoch was a Thursday."""


@dataclass(slots=True)
class Candle:
    open_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = ZERO
    quote_volume: Decimal = ZERO
    trades: int = 0
    taker_buy_volume: Decimal = ZERO
    taker_buy_quote: Decimal = ZERO

    def add_price(self, price: Decimal) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price

    def merge(self, later: Candle) -> None:
        self.add_price(later.high)
        self.add_price(later.low)
        self.close = later.close
        self.volume += later.volume
        self.quote_volume += later.quote_volume
        self.trades += later.trades
        self.taker_buy_volume += later.taker_buy_volume
        self.taker_buy_quote += later.taker_buy_quote


def bucket_open(interval: str, time_ms: int) -> int:
    """The open time of the ``interval`` candle that holds ``time_ms``."""
    if interval == "1M":
        moment = datetime.fromtimestamp(time_ms / 1000, tz=UTC)
        return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp() * 1000)
    step = INTERVALS[interval]
    offset = _WEEK_OFFSET_MS if interval == "1w" else 0
    return (time_ms - offset) // step * step + offset


def bucket_close(interval: str, open_ms: int) -> int:
    if interval == "1M":
        moment = datetime.fromtimestamp(open_ms / 1000, tz=UTC)
        year, month = (
            (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
        )
        return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000) - 1
    return open_ms + INTERVALS[interval] - 1


class CandleStore:
    """1-minute candles per symbol."""

    def __init__(self, specs: dict[str, SymbolSpec]) -> None:
        self.specs = specs
        self.reset()

    def reset(self) -> None:
        self._minutes: dict[str, OrderedDict[int, Candle]] = {s: OrderedDict() for s in self.specs}

    def _candle(self, symbol: str, time_ms: int, price: Decimal) -> Candle:
        minutes = self._minutes[symbol]
        start = time_ms // MINUTE_MS * MINUTE_MS
        candle = minutes.get(start)
        if candle is None:
            candle = minutes[start] = Candle(start, price, price, price, price)
            while len(minutes) > KEEP_MINUTES:
                minutes.popitem(last=False)
        return candle

    def observe(self, symbol: str, price: Decimal, now_ms: int) -> None:
        self._candle(symbol, now_ms, price).add_price(price)

    def trade(self, trade: Trade) -> None:
        candle = self._candle(trade.symbol, trade.time_ms, trade.price)
        candle.add_price(trade.price)
        quote = trade.price * trade.qty
        candle.volume += trade.qty
        candle.quote_volume += quote
        candle.trades += 1
        if trade.side == "BUY" and not trade.maker:
            candle.taker_buy_volume += trade.qty
            candle.taker_buy_quote += quote

    def klines(
        self, symbol: str, interval: str, start: int | None, end: int | None, limit: int
    ) -> list[list[Any]]:
        """``GET /fapi/v1/klines`` rows, oldest first: from ``start`` when given (the first
        ``limit``), else the newest ``limit`` up to ``end``."""
        grouped: dict[int, Candle] = {}
        for candle in self._minutes[symbol].values():
            key = bucket_open(interval, candle.open_ms)
            if start is not None and bucket_close(interval, key) < start:
                continue
            if end is not None and key > end:
                continue
            into = grouped.get(key)
            if into is None:
                grouped[key] = Candle(key, candle.open, candle.high, candle.low, candle.close)
                grouped[key].merge(candle)
            else:
                into.merge(candle)
        rows = sorted(grouped.values(), key=lambda c: c.open_ms)
        rows = rows[:limit] if start is not None else rows[-limit:]
        return [self._row(symbol, interval, c) for c in rows]

    def _row(self, symbol: str, interval: str, c: Candle) -> list[Any]:
        spec = self.specs[symbol]
        pp, qp = spec.price_precision, spec.quantity_precision
        return [
            c.open_ms,
            fixed(c.open, pp),
            fixed(c.high, pp),
            fixed(c.low, pp),
            fixed(c.close, pp),
            fixed(c.volume, qp),
            bucket_close(interval, c.open_ms),
            fixed(c.quote_volume, min(pp + qp, 8)),
            c.trades,
            fixed(c.taker_buy_volume, qp),
            fixed(c.taker_buy_quote, min(pp + qp, 8)),
            "0",
        ]
