"""Public market data: order book, book ticker, prices, 24-hour tickers, klines, funding.

There is no third-party order book: the book is drawn around the mark, deterministically
(best bid one tick below the mark, best ask one tick above, then one tick apart; level
``k`` holds ``k`` times the symbol's base size, the smallest step-size multiple worth at
least 1,000 USDT). The account's own resting orders are not shown in it; a taker still
trades at the mark (``book.py``). Klines come from ``candles.py``, funding rates from
``funding.py``.
"""

from __future__ import annotations

from decimal import ROUND_UP, Decimal
from typing import TYPE_CHECKING, Any

from grinder.exchange.simulator import auth, views
from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator.candles import INTERVALS
from grinder.exchange.simulator.endpoint import Endpoint
from grinder.exchange.simulator.number_text import fixed
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.symbols import SymbolSpec
from grinder.exchange.simulator.validation import lookup_symbol

if TYPE_CHECKING:
    from grinder.exchange.simulator.exchange import Simulator

DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
LEVEL_NOTIONAL = Decimal(1000)
DAY_MS = 24 * 60 * 60 * 1000


def base_size(spec: SymbolSpec, mark: Decimal) -> Decimal:
    """The smallest step multiple worth at least ``LEVEL_NOTIONAL`` at ``mark``."""
    steps = (LEVEL_NOTIONAL / mark / spec.step_size).to_integral_value(rounding=ROUND_UP)
    return max(steps, Decimal(1)) * spec.step_size


def levels(spec: SymbolSpec, mark: Decimal, count: int) -> tuple[list[list[str]], list[list[str]]]:
    """``count`` bid and ask levels around ``mark`` (bids above the minimum price only)."""
    pp, qp = spec.price_precision, spec.quantity_precision
    size = base_size(spec, mark)
    bids: list[list[str]] = []
    asks: list[list[str]] = []
    for k in range(1, count + 1):
        qty = fixed(size * k, qp)
        bid = mark - spec.tick_size * k
        if bid >= spec.min_price:
            bids.append([fixed(bid, pp), qty])
        asks.append([fixed(mark + spec.tick_size * k, pp), qty])
    return bids, asks


def _symbol(sim: Simulator, params: Params) -> SymbolSpec:
    return lookup_symbol(sim.specs, params.required_text("symbol"))


def depth(sim: Simulator, params: Params) -> Any:
    spec = _symbol(sim, params)
    limit = params.limit(500, 1000)
    if limit not in DEPTH_LIMITS:
        raise E.invalid_value("limit")
    bids, asks = levels(spec, sim.book.mark(spec.symbol), limit)
    now = sim.server_time()
    return {"lastUpdateId": sim.heartbeats, "E": now, "T": now, "bids": bids, "asks": asks}


def _book_ticker(sim: Simulator, spec: SymbolSpec) -> dict[str, Any]:
    bids, asks = levels(spec, sim.book.mark(spec.symbol), 1)
    return {
        "symbol": spec.symbol,
        "bidPrice": bids[0][0] if bids else fixed(spec.min_price, spec.price_precision),
        "bidQty": bids[0][1] if bids else "0",
        "askPrice": asks[0][0],
        "askQty": asks[0][1],
        "time": sim.server_time(),
        "lastUpdateId": sim.heartbeats,
    }


def book_ticker(sim: Simulator, params: Params) -> Any:
    if params.sent("symbol"):
        return _book_ticker(sim, _symbol(sim, params))
    return [_book_ticker(sim, spec) for spec in sim.specs.values()]


def ticker_price_v2(sim: Simulator, params: Params) -> Any:
    symbol = params.text("symbol")
    now = sim.server_time()
    if symbol is not None:
        lookup_symbol(sim.specs, symbol)
        return views.ticker_price(sim.account, symbol, now)
    return [views.ticker_price(sim.account, s, now) for s in sim.specs]


def _day_ticker(sim: Simulator, spec: SymbolSpec) -> dict[str, Any]:
    """The 24-hour statistics of ``/fapi/v1/ticker/24hr``, from the candles and own trades."""
    now = sim.server_time()
    start = now - DAY_MS
    rows = sim.candles.klines(spec.symbol, "1m", start, now, 1500)
    mark = sim.book.mark(spec.symbol)
    pp, qp = spec.price_precision, spec.quantity_precision
    open_price = Decimal(rows[0][1]) if rows else mark
    high = max([Decimal(r[2]) for r in rows] + [mark])
    low = min([Decimal(r[3]) for r in rows] + [mark])
    volume = sum((Decimal(r[5]) for r in rows), Decimal(0))
    quote = sum((Decimal(r[7]) for r in rows), Decimal(0))
    trades = [
        t for t in sim.account.ledger.trades if t.symbol == spec.symbol and t.time_ms >= start
    ]
    change = mark - open_price
    return {
        "symbol": spec.symbol,
        "priceChange": fixed(change, pp),
        "priceChangePercent": fixed(change / open_price * 100, 3),
        "weightedAvgPrice": fixed(quote / volume if volume else mark, pp),
        "lastPrice": fixed(mark, pp),
        "lastQty": fixed(trades[-1].qty if trades else Decimal(0), qp),
        "openPrice": fixed(open_price, pp),
        "highPrice": fixed(high, pp),
        "lowPrice": fixed(low, pp),
        "volume": fixed(volume, qp),
        "quoteVolume": fixed(quote, min(pp + qp, 8)),
        "openTime": rows[0][0] if rows else start,
        "closeTime": now,
        "firstId": trades[0].trade_id if trades else -1,
        "lastId": trades[-1].trade_id if trades else -1,
        "count": len(trades),
    }


def ticker_24hr(sim: Simulator, params: Params) -> Any:
    if params.sent("symbol"):
        return _day_ticker(sim, _symbol(sim, params))
    return [_day_ticker(sim, spec) for spec in sim.specs.values()]


def klines(sim: Simulator, params: Params) -> Any:
    spec = _symbol(sim, params)
    interval = params.required_text("interval")
    if interval not in INTERVALS:
        raise E.err(E.BAD_INTERVAL)
    limit = params.limit(500, 1500)
    start, end = params.window()
    return sim.candles.klines(spec.symbol, interval, start, end, limit)


def funding_rate(sim: Simulator, params: Params) -> Any:
    symbol = params.text("symbol")
    if symbol is not None:
        lookup_symbol(sim.specs, symbol)
    limit = params.limit(100, 1000)
    start, end = params.window()
    return sim.funding.rates(symbol, start, end, limit)


_N = auth.NONE

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/fapi/v1/depth", _N, depth),
    Endpoint("GET", "/fapi/v1/ticker/bookTicker", _N, book_ticker),
    Endpoint("GET", "/fapi/v2/ticker/price", _N, ticker_price_v2),
    Endpoint("GET", "/fapi/v1/ticker/24hr", _N, ticker_24hr),
    Endpoint("GET", "/fapi/v1/klines", _N, klines),
    Endpoint("GET", "/fapi/v1/fundingRate", _N, funding_rate),
)
