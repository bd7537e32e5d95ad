"""A small grid bot: real orders through the Binance adapter, expected state recorded first.

A demonstration, not a strategy: ``levels`` LIMIT BUYs below the mark and as many SELLs above,
``spacing_pct`` apart; a BUY filled at level ``k`` is replaced by a SELL at ``k + 1`` (a SELL at
``k`` by a BUY at ``k - 1``). Record, then send (docs/EXPECTED_STATE.md): ``record_order`` before
an order leaves, ``mark_cancel_requested`` before a cancel; ``mark_status`` and ``set_position``
when the bot itself learns of a fill or an end.

Observation: its own ``UserDataStream``; it books what its ``ORDER_TRADE_UPDATE`` events say, and
after each (re)connect queries every order it believes open (``query_order``). It never polls
otherwise and never books from ``ACCOUNT_UPDATE``, so a fill whose event is lost stays unbooked --
the drift GRINDER exists to catch. New orders go through the port's ``BinanceRestClient``
(``BinanceFuturesPort`` has no LIMIT-order call: GRINDER never places one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from grinder.clock import Clock, wall_clock_ms
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.binance.parsing import OrderUpdate, UserEvent
from grinder.exchange.binance.stream import UserDataStream
from grinder.exchange.port import CancelOutcome, ExchangeError, TransientExchangeError
from grinder.reconcile.identity import DEFAULT_PREFIX, DEFAULT_STRATEGY_ID, generate_client_order_id
from grinder.reconcile.types import ZERO, ExpectedOrder, ObservedOrder, OrderStatus, Side
from grinder.state.expected import ExpectedWriter


@dataclass(frozen=True)
class GridSettings:
    symbol: str = "BTCUSDT"
    levels: int = 2  # orders on each side of the start price
    spacing_pct: Decimal = Decimal("0.5")  # percent of the start price, rounded to the tick
    qty: Decimal = Decimal("0.002")
    strategy_id: str = DEFAULT_STRATEGY_ID
    prefix: str = DEFAULT_PREFIX


@dataclass(frozen=True)
class Level:
    """Grid level ``index`` (price = center + index * spacing) and its side."""

    index: int
    side: Side
    price: Decimal

    @property
    def level_id(self) -> str:
        """Alphanumeric, as client order ids need: D1 = one below the start price, U0 = at it."""
        return f"{'D' if self.index < 0 else 'U'}{abs(self.index)}"


def round_to_tick(price: Decimal, tick: Decimal, rounding: str = ROUND_DOWN) -> Decimal:
    return (price / tick).to_integral_value(rounding=rounding) * tick


def grid_spacing(mark: Decimal, tick: Decimal, spacing_pct: Decimal) -> Decimal:
    """``spacing_pct`` of the mark, rounded to the tick, at least one tick."""
    return max(tick, round_to_tick(mark * spacing_pct / 100, tick, ROUND_HALF_UP))


def level_at(center: Decimal, spacing: Decimal, index: int, side: Side) -> Level:
    price = center + index * spacing
    if price <= 0:
        raise ValueError(f"grid level {index} would be priced {price}")
    return Level(index, side, price)


def grid_levels(center: Decimal, spacing: Decimal, levels: int) -> list[Level]:
    """BUY levels -1..-n below ``center`` and SELL levels 1..n above it, nearest first."""
    sides = ((-1, Side.BUY), (1, Side.SELL))
    return [
        level_at(center, spacing, k * d, side) for k in range(1, levels + 1) for d, side in sides
    ]


def next_level(center: Decimal, spacing: Decimal, filled: Level) -> Level:
    """The order a fill calls for: the opposite side, one level further."""
    if filled.side is Side.BUY:
        return level_at(center, spacing, filled.index + 1, Side.SELL)
    return level_at(center, spacing, filled.index - 1, Side.BUY)


@dataclass
class BotOrder:
    client_order_id: str
    level: Level
    booked_qty: Decimal = ZERO
    status: OrderStatus = OrderStatus.NEW
    cancel_sent: bool = False

    @property
    def open(self) -> bool:
        return self.status.is_open and not self.cancel_sent


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f")


class GridBot:
    """Places a grid, books its fills from its own stream, re-places levels."""

    def __init__(
        self,
        port: BinanceFuturesPort,
        store: ExpectedWriter,
        settings: GridSettings | None = None,
        *,
        ws_base_url: str | None = None,
        clock: Clock = wall_clock_ms,
        on_note: Callable[[str], None] | None = None,
    ) -> None:
        self.port = port
        self.store = store
        self.settings = settings or GridSettings()
        self.ws_base_url = ws_base_url
        self.clock = clock
        self.on_note = on_note
        self.orders: dict[str, BotOrder] = {}
        self.position = ZERO
        self.fills = 0
        self.writes = 0  # order and cancel requests sent
        self.center = ZERO
        self.spacing = ZERO
        self.stream: UserDataStream | None = None
        self._ts = clock() // 1000
        self._seq = 0
        self._events: asyncio.Queue[UserEvent] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    def _note(self, text: str) -> None:
        if self.on_note is not None and not self._closing:
            self.on_note(text)

    async def setup(self) -> None:
        """Read the tick size and the mark, and record the intent to start flat."""
        s = self.settings
        filters = (await self.port.exchange_info()).get(s.symbol)
        mark = await self.port.get_mark_price(s.symbol)
        if filters is None or mark is None:
            raise ExchangeError(f"{s.symbol}: no filters or mark price")
        self.center = round_to_tick(mark, filters.tick_size)
        self.spacing = grid_spacing(mark, filters.tick_size, s.spacing_pct)
        self.store.set_position(s.symbol, self.position, self.clock())

    async def start(self, *, live_timeout_s: float = 10.0) -> None:
        """Set up, subscribe to the user-data stream, then place the grid."""
        await self.setup()
        if self.ws_base_url is not None:
            self.stream = UserDataStream(
                self.port.rest, self.ws_base_url, on_event=self.on_event, on_resync=self.resync
            )
            self._tasks.append(asyncio.create_task(self.stream.run(), name="bot-stream"))
            if not await self.stream.wait_live(live_timeout_s):
                raise ExchangeError("bot: user-data stream did not come up")
        self._tasks.append(asyncio.create_task(self._consume(), name="bot-events"))
        for level in grid_levels(self.center, self.spacing, self.settings.levels):
            await self.place(level)

    async def stop(self, *, cancel_orders: bool = False) -> None:
        if cancel_orders:
            for order in list(self.orders.values()):
                if order.open:
                    await self.cancel(order.client_order_id)
        self._closing = True
        if self.stream is not None:
            await self.stream.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def idle(self) -> None:  # every event received so far has been handled
        await self._events.join()

    async def place(self, level: Level) -> str:
        s = self.settings
        self._seq += 1
        cid = generate_client_order_id(
            strategy_id=s.strategy_id,
            symbol=s.symbol,
            prefix=s.prefix,
            level_id=level.level_id,
            ts_seconds=self._ts,
            seq=self._seq,
        )
        now = self.clock()
        expected = ExpectedOrder(
            cid, s.symbol, level.side, s.qty, level.price, created_ts_ms=now, updated_ts_ms=now
        )
        self.store.record_order(expected)  # 1. record ...
        order = self.orders[cid] = BotOrder(cid, level)
        params = {
            "symbol": s.symbol,
            "side": level.side.value,
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": _text(s.qty),
            "price": _text(level.price),
            "newClientOrderId": cid,
        }
        self.writes += 1  # 2. ... then send
        try:
            await self.port.rest.request("POST", "/fapi/v1/order", params, signed=True, weight=1)
        except TransientExchangeError as exc:  # it may be live: keep it expected
            self._note(f"order {cid}: outcome unknown ({exc}); kept as expected")
            return cid
        except ExchangeError as exc:
            order.status = OrderStatus.REJECTED
            self.store.mark_status(cid, OrderStatus.REJECTED, self.clock())
            self._note(f"order {cid} refused: {exc}")
            return cid
        self._note(f"placed {level.side.value:<4} {_text(s.qty)} @ {level.price}  {cid}")
        return cid

    async def cancel(self, client_order_id: str) -> CancelOutcome | None:
        order = self.orders[client_order_id]
        order.cancel_sent = True
        self.store.mark_cancel_requested(client_order_id, self.clock())
        self.writes += 1
        try:
            outcome = await self.port.cancel_order(self.settings.symbol, client_order_id)
        except ExchangeError as exc:
            self._note(f"cancel {client_order_id} failed: {exc}")
            return None
        self._note(f"cancel {client_order_id}: {outcome.value}")
        return outcome

    def on_event(self, event: UserEvent) -> None:  # the stream's callback
        self._events.put_nowait(event)

    async def _consume(self) -> None:
        while True:
            event = await self._events.get()
            try:
                if isinstance(event, OrderUpdate):
                    await self._handle(event.order)
            except Exception as exc:  # a demo bot keeps going, and says why
                self._note(f"event handling failed: {type(exc).__name__}: {exc}")
            finally:
                self._events.task_done()

    async def resync(self) -> None:
        """After a (re)connect: ask about every order believed open, book what ended."""
        for cid, order in list(self.orders.items()):
            if order.open and not self._closing:
                found = await self.port.query_order(self.settings.symbol, cid)
                if found is not None:
                    await self._handle(found)

    async def _handle(self, seen: ObservedOrder) -> None:
        refill = self.book(seen)
        if refill is not None and not self._closing:
            await self.place(refill)

    def book(self, seen: ObservedOrder) -> Level | None:
        """Book what an observation says about one of our orders; the level to re-place."""
        order = self.orders.get(seen.client_order_id)
        if order is None or order.status.is_terminal:
            return None  # not ours to book (an orphan, a manual order), or already booked
        now, cid = self.clock(), order.client_order_id
        delta = seen.executed_qty - order.booked_qty
        if delta > 0:
            order.booked_qty = seen.executed_qty
            self.position += delta if order.level.side is Side.BUY else -delta
            self.fills += 1
            self.store.set_position(self.settings.symbol, self.position, now)
        if seen.status is order.status:
            return None
        order.status = seen.status
        self.store.mark_status(cid, seen.status, now)
        if seen.status is not OrderStatus.FILLED:
            if seen.status.is_terminal:
                self._note(f"{cid} ended {seen.status.value}")
            return None
        level, qty, pos = order.level, _text(self.settings.qty), _text(self.position)
        self._note(f"FILLED {level.side.value} {qty} @ {level.price} -> position {pos}")
        if order.cancel_sent:
            return None
        return next_level(self.center, self.spacing, level)
