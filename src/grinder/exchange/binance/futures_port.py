"""``BinanceFuturesPort``: the core's exchange port over Binance USDⓈ-M REST.

* Open orders are the union of regular orders (``/fapi/v1/openOrders``) and
  conditional orders (``/fapi/v1/openAlgoOrders``), each fetched per symbol or
  for all symbols, whichever costs less request weight (1 per symbol, 40
  without a symbol). Per-symbol calls go out concurrently, at most
  ``snapshot_concurrency`` at a time (the weight is the same; on a real network
  the snapshot then takes a few round trips instead of one per call); when no
  weight header of the current minute has been read yet, the first call goes
  alone. One failed call fails the snapshot and cancels the calls still in flight.
* Positions come from ``/fapi/v3/positionRisk`` (weight 5), which lists only
  symbols with a position or open orders.
* A cancel goes to the endpoint the order lives on; ``-2011`` (already gone) is
  reported as ``CancelOutcome.ALREADY_GONE``. A query answered ``-2013`` is
  ``None`` ("not found" for triage).
* A response the parsers reject is a ``MalformedResponse`` (an ``ExchangeError``,
  so a run fails the one step, not itself); for the new order of a flatten it
  is a ``MalformedWriteResponse``: sent and accepted, result unknown.
* A flatten is a MARKET order (or, bounded, an IOC LIMIT) for the exact size rounded
  down to the symbol's market step size: ``reduceOnly=true`` in one-way mode,
  ``positionSide`` in hedge mode (where Binance refuses ``reduceOnly``), and
  ``selfTradePreventionMode=EXPIRE_TAKER``: meeting a resting order of the same
  account, the remediation order's rest expires, the bot's order stays.
* ``countdown_cancel_all`` sets the exchange's dead-man countdown of one symbol
  (``POST /fapi/v1/countdownCancelAll``, weight 10): a write like the others.
* Writes are sent once each, authorized at the wire (``authorize``, see
  ``grinder.exchange.port``); the executor decides any further attempt (a flatten
  only after reading the position again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from grinder.clock import Clock, wall_clock_ms
from grinder.exchange.binance.errors import (
    MalformedResponse,
    MalformedWriteResponse,
    OrderAlreadyGone,
    OrderNotFound,
)
from grinder.exchange.binance.parsing import (
    SymbolFilters,
    WireFormatError,
    parse_algo_order,
    parse_algo_orders,
    parse_countdown,
    parse_exchange_info,
    parse_order,
    parse_orders,
    parse_positions,
)
from grinder.exchange.binance.parsing.trades import parse_user_trades
from grinder.exchange.binance.rest import BinanceRestClient
from grinder.exchange.port import Authorize, CancelOutcome
from grinder.reconcile.trades import (
    TRADES_LIMIT,
    TRADES_MAX_WINDOW_MS,
    TRADES_WEIGHT,
    AccountTrade,
)
from grinder.reconcile.types import ObservedOrder, ObservedPosition, PositionSide, Side

ALL_SYMBOLS_WEIGHT = 40
SELF_TRADE_PREVENTION = "EXPIRE_TAKER"
"""A remediation order that would trade with a resting order of the same account expires
itself (Binance's default, ``EXPIRE_MAKER``, would expire the bot's order)."""
COUNTDOWN_WEIGHT = 10
"""``POST /fapi/v1/countdownCancelAll`` (the dead-man switch's renewal)."""
SNAPSHOT_CONCURRENCY = 8
EXCHANGE_INFO_TTL_MS = 3_600_000

T = TypeVar("T")


def _decimal_text(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _read(what: str, parse: Callable[[], T], *, write: bool = False) -> T:
    """``parse()``, a malformed response turned into the exchange error that names it."""
    try:
        return parse()
    except WireFormatError as exc:
        cls = MalformedWriteResponse if write else MalformedResponse
        raise cls(f"{what}: response cannot be read: {exc}") from None


class BinanceFuturesPort:
    """Implements ``grinder.exchange.port.ExchangePort`` for Binance USDⓈ-M futures."""

    def __init__(
        self,
        rest: BinanceRestClient,
        *,
        clock: Clock | None = None,
        snapshot_concurrency: int = SNAPSHOT_CONCURRENCY,
    ) -> None:
        if snapshot_concurrency < 1:
            raise ValueError(f"snapshot_concurrency must be >= 1, got {snapshot_concurrency}")
        self.rest = rest
        self.snapshot_concurrency = snapshot_concurrency
        self._clock = clock or wall_clock_ms
        self._filters: dict[str, SymbolFilters] = {}
        self._filters_ts: int | None = None
        self._hedge_mode: bool | None = None

    # --- reference data ------------------------------------------------------------------

    async def exchange_info(self, *, refresh: bool = False) -> dict[str, SymbolFilters]:
        now = self._clock()
        stale = self._filters_ts is None or now - self._filters_ts > EXCHANGE_INFO_TTL_MS
        if refresh or stale:
            body = await self.rest.request("GET", "/fapi/v1/exchangeInfo", weight=1)
            self._filters = _read("GET /fapi/v1/exchangeInfo", lambda: parse_exchange_info(body))
            self._filters_ts = now
        return self._filters

    async def get_tick_size(self, symbol: str) -> Decimal | None:
        filters = (await self.exchange_info()).get(symbol)
        return None if filters is None else filters.tick_size

    async def get_step_size(self, symbol: str) -> Decimal | None:
        filters = (await self.exchange_info()).get(symbol)
        return None if filters is None else filters.market_step

    async def hedge_mode(self, *, refresh: bool = False) -> bool:
        """``dualSidePosition`` of the account (cached; weight 30)."""
        if self._hedge_mode is None or refresh:
            body = await self.rest.request(
                "GET", "/fapi/v1/positionSide/dual", signed=True, weight=30
            )
            dual = body.get("dualSidePosition") if isinstance(body, dict) else None
            if not isinstance(dual, bool):
                raise MalformedResponse(
                    "GET /fapi/v1/positionSide/dual: response cannot be read: "
                    f"dualSidePosition is {dual!r}, not true or false"
                )
            self._hedge_mode = dual
        return self._hedge_mode

    async def get_mark_price(self, symbol: str) -> Decimal | None:
        body = await self.rest.request("GET", "/fapi/v1/premiumIndex", {"symbol": symbol}, weight=1)
        if not isinstance(body, dict):
            return None
        raw = body.get("markPrice")
        try:
            price = Decimal(str(raw))
        except ArithmeticError:
            return None
        return price if price.is_finite() and price > 0 else None

    # --- snapshots -----------------------------------------------------------------------

    async def fetch_open_orders(self, symbols: Sequence[str] | None = None) -> list[ObservedOrder]:
        seen = self._clock()
        calls = _snapshot_calls(symbols)

        async def fetch(
            path: str, params: dict[str, str] | None, weight: int
        ) -> list[ObservedOrder]:
            body = await self.rest.request("GET", path, params, signed=True, weight=weight)
            parse = parse_orders if path == "/fapi/v1/openOrders" else parse_algo_orders
            return _read(f"GET {path}", lambda: parse(body, seen_ts_ms=seen))

        jobs = [
            fetch(path, params, weight)
            for params, weight in calls
            for path in ("/fapi/v1/openOrders", "/fapi/v1/openAlgoOrders")
        ]
        # While the IP's weight this minute (other clients on it count too) is unknown, one
        # call goes alone first, so a burst never lands on a nearly spent limit unawares.
        parts = await _bounded_gather(
            jobs, self.snapshot_concurrency, alone_first=not self.rest.weight_known()
        )
        out = [order for part in parts for order in part]
        if symbols is not None and calls and calls[0][0] is None:
            wanted = set(symbols)
            out = [o for o in out if o.symbol in wanted]
        return out

    @staticmethod
    def snapshot_weight(symbols: Sequence[str] | None) -> int:
        """Request weight of one open-orders snapshot (regular and algo) plus positions."""
        return 2 * sum(w for _, w in _snapshot_calls(symbols)) + 5

    async def fetch_positions(self, symbols: Sequence[str] | None = None) -> list[ObservedPosition]:
        seen = self._clock()
        params = {"symbol": symbols[0]} if symbols is not None and len(symbols) == 1 else None
        body = await self.rest.request(
            "GET", "/fapi/v3/positionRisk", params, signed=True, weight=5
        )
        wanted = None if symbols is None else set(symbols)
        rows = _read("GET /fapi/v3/positionRisk", lambda: parse_positions(body, seen_ts_ms=seen))
        return [p for p in rows if wanted is None or p.symbol in wanted]

    # --- single orders -------------------------------------------------------------------

    async def query_order(
        self, symbol: str, client_order_id: str, *, is_algo: bool = False
    ) -> ObservedOrder | None:
        seen = self._clock()
        try:
            if is_algo:
                body = await self.rest.request(
                    "GET",
                    "/fapi/v1/algoOrder",
                    {"clientAlgoId": client_order_id},
                    signed=True,
                    weight=1,
                )
                return _read(
                    "GET /fapi/v1/algoOrder", lambda: parse_algo_order(body, seen_ts_ms=seen)
                )
            body = await self.rest.request(
                "GET",
                "/fapi/v1/order",
                {"symbol": symbol, "origClientOrderId": client_order_id},
                signed=True,
                weight=1,
            )
        except OrderNotFound:
            return None
        return _read("GET /fapi/v1/order", lambda: parse_order(body, seen_ts_ms=seen))

    async def cancel_order(
        self,
        symbol: str,
        client_order_id: str,
        *,
        is_algo: bool = False,
        authorize: Authorize | None = None,
    ) -> CancelOutcome:
        try:
            if is_algo:
                await self.rest.request(
                    "DELETE",
                    "/fapi/v1/algoOrder",
                    {"clientAlgoId": client_order_id},
                    signed=True,
                    weight=1,
                    trade=True,
                    authorize=authorize,
                )
            else:
                await self.rest.request(
                    "DELETE",
                    "/fapi/v1/order",
                    {"symbol": symbol, "origClientOrderId": client_order_id},
                    signed=True,
                    weight=1,
                    trade=True,
                    authorize=authorize,
                )
        except OrderAlreadyGone:
            return CancelOutcome.ALREADY_GONE
        return CancelOutcome.CANCELED

    async def countdown_cancel_all(
        self, symbol: str, countdown_ms: int, *, authorize: Authorize | None = None
    ) -> int:
        """Set the exchange's countdown for ``symbol`` (0 stops it): when it ends unrenewed,
        Binance cancels the symbol's open orders. Returns the countdown it set (ms)."""
        body: Any = await self.rest.request(
            "POST",
            "/fapi/v1/countdownCancelAll",
            {"symbol": symbol, "countdownTime": countdown_ms},
            signed=True,
            weight=COUNTDOWN_WEIGHT,
            trade=True,
            authorize=authorize,
        )
        return _read(
            f"POST /fapi/v1/countdownCancelAll {symbol}",
            lambda: parse_countdown(body, symbol=symbol),
            write=True,
        )

    async def fetch_user_trades(
        self, symbol: str, *, start_ms: int, end_ms: int, limit: int = TRADES_LIMIT
    ) -> list[AccountTrade]:
        """``GET /fapi/v1/userTrades`` over one window of at most 7 days (weight 5)."""
        if not 0 <= end_ms - start_ms <= TRADES_MAX_WINDOW_MS or not 1 <= limit <= TRADES_LIMIT:
            raise ValueError(f"userTrades: window {start_ms}..{end_ms} or limit {limit} invalid")
        params = {
            "symbol": symbol,
            "startTime": str(start_ms),
            "endTime": str(end_ms),
            "limit": str(limit),
        }
        body = await self.rest.request(  # not repeated: the caller tries again later (D67)
            "GET",
            "/fapi/v1/userTrades",
            params,
            signed=True,
            weight=TRADES_WEIGHT,
            idempotent=False,
        )
        rows = _read(f"GET /fapi/v1/userTrades {symbol}", lambda: parse_user_trades(body))
        return sorted(rows, key=lambda t: (t.time_ms, t.trade_id))

    async def place_reduce_only_market(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        *,
        position_side: PositionSide,
        client_order_id: str,
        authorize: Authorize | None = None,
    ) -> ObservedOrder:
        params = _reduce_only(symbol, side, qty, position_side, client_order_id)
        params[2:2] = [("type", "MARKET")]
        return await self._place(params, client_order_id, authorize)

    async def place_reduce_only_ioc(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        *,
        position_side: PositionSide,
        client_order_id: str,
        authorize: Authorize | None = None,
    ) -> ObservedOrder:
        params = _reduce_only(symbol, side, qty, position_side, client_order_id)
        params[2:2] = [("type", "LIMIT"), ("timeInForce", "IOC"), ("price", _decimal_text(price))]
        return await self._place(params, client_order_id, authorize)

    async def _place(
        self, params: list[tuple[str, str | int]], client_order_id: str, authorize: Authorize | None
    ) -> ObservedOrder:
        # A new order costs no IP request weight (it counts against the order-rate limits).
        body: Any = await self.rest.request(
            "POST", "/fapi/v1/order", params, signed=True, weight=0, trade=True, authorize=authorize
        )
        seen = self._clock()
        return _read(
            f"POST /fapi/v1/order {client_order_id}",
            lambda: parse_order(body, seen_ts_ms=seen, kind="new order"),
            write=True,
        )


def _reduce_only(
    symbol: str, side: Side, qty: Decimal, position_side: PositionSide, client_order_id: str
) -> list[tuple[str, str | int]]:
    """A remediation order's parameters but its type: reduce-only (``positionSide`` in hedge
    mode), the answer with its fills, and self-trade prevention that expires the
    remediation order itself, never a resting order of the bot's (D63)."""
    params: list[tuple[str, str | int]] = [
        ("symbol", symbol),
        ("side", side.value),
        ("quantity", _decimal_text(qty)),
        ("newClientOrderId", client_order_id),
        ("newOrderRespType", "RESULT"),
        ("selfTradePreventionMode", SELF_TRADE_PREVENTION),
    ]
    if position_side is PositionSide.BOTH:
        params.append(("reduceOnly", "true"))
    else:
        params.append(("positionSide", position_side.value))
    return params


async def _bounded_gather(
    jobs: Sequence[Coroutine[Any, Any, T]], limit: int, *, alone_first: bool = False
) -> list[T]:
    """Results of ``jobs`` in their order, at most ``limit`` running at once
    (``alone_first``: the first job done before any other starts).

    The first failure cancels the jobs still running or waiting and is raised as
    it is (not wrapped in an exception group, so callers see the exchange error).
    """
    if len(jobs) <= 1 or limit <= 1:
        results: list[T] = []
        try:
            for job in jobs:
                results.append(await job)
        finally:
            for job in jobs[len(results) + 1 :]:
                job.close()  # never started: nothing was sent for it
        return results
    if alone_first:
        try:
            head = await jobs[0]
        except BaseException:
            for job in jobs[1:]:
                job.close()  # never started: nothing was sent for it
            raise
        return [head, *await _bounded_gather(jobs[1:], limit)]
    gate = asyncio.Semaphore(limit)

    async def run(job: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await job

    tasks = [asyncio.ensure_future(run(job)) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for job in jobs:
            job.close()  # a job cancelled before it started: nothing was sent for it


def _snapshot_calls(
    symbols: Sequence[str] | None,
) -> list[tuple[dict[str, str] | None, int]]:
    """Per-symbol calls when they cost less weight than one all-symbols call."""
    if symbols is None or len(symbols) >= ALL_SYMBOLS_WEIGHT:
        return [(None, ALL_SYMBOLS_WEIGHT)]
    return [({"symbol": s}, 1) for s in sorted(set(symbols))]
