"""An in-memory exchange port that records every call, for tests and the smoke harness.

It keeps open orders, positions, mark prices and step sizes, applies its own
writes (a cancel removes the order, a reduce-only market order reduces the
position) and can be told to fail a method once or always. A write's ``authorize``
is called where a real port would send it: a withheld write is not recorded (it
never went out), and the window each sent write was granted is kept in
``wire_windows_ms``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from grinder.exchange.port import Authorize, CancelOutcome, ExchangeError
from grinder.reconcile.trades import AccountTrade
from grinder.reconcile.types import (
    ZERO,
    ObservedOrder,
    ObservedPosition,
    OrderStatus,
    PositionKey,
    PositionSide,
    Side,
)

WRITE_METHODS = frozenset(
    {"cancel_order", "place_reduce_only_market", "place_reduce_only_ioc", "countdown_cancel_all"}
)


@dataclass(frozen=True, slots=True)
class PortCall:
    method: str
    args: dict[str, Any]

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS


@dataclass
class FakePort:
    """Recording in-memory ``ExchangePort``."""

    open_orders: dict[str, ObservedOrder] = field(default_factory=dict)
    ended_orders: dict[str, ObservedOrder] = field(default_factory=dict)
    positions: dict[PositionKey, ObservedPosition] = field(default_factory=dict)
    mark_prices: dict[str, Decimal] = field(default_factory=dict)
    trades: list[AccountTrade] = field(default_factory=list)
    """The account's fills, served by ``fetch_user_trades``."""
    step_sizes: dict[str, Decimal] = field(default_factory=dict)
    calls: list[PortCall] = field(default_factory=list)
    fail_once: dict[str, ExchangeError] = field(default_factory=dict)
    fail_always: dict[str, ExchangeError] = field(default_factory=dict)
    now_ms: int = 0
    wire_windows_ms: list[int] = field(default_factory=list)
    tick_sizes: dict[str, Decimal] = field(default_factory=dict)
    fills: list[Decimal] = field(default_factory=list)
    """How much each next reduce-only order fills (in turn); all of it once used up."""

    # --- set-up helpers ------------------------------------------------------------------

    def add_order(self, order: ObservedOrder) -> None:
        self.open_orders[order.client_order_id] = order

    def set_position(
        self, symbol: str, qty: Decimal, position_side: PositionSide = PositionSide.BOTH
    ) -> None:
        self.positions[(symbol, position_side)] = ObservedPosition(
            symbol=symbol,
            qty=qty,
            position_side=position_side,
            mark_price=self.mark_prices.get(symbol),
        )

    @property
    def write_calls(self) -> list[PortCall]:
        return [c for c in self.calls if c.is_write]

    # --- the port ------------------------------------------------------------------------

    def _authorize(self, authorize: Authorize | None) -> None:
        if authorize is not None:
            self.wire_windows_ms.append(authorize())

    def _record(self, method: str, **args: Any) -> None:
        self.calls.append(PortCall(method, args))
        err = self.fail_once.pop(method, None) or self.fail_always.get(method)
        if err is not None:
            raise err

    async def fetch_open_orders(self, symbols: Sequence[str] | None = None) -> list[ObservedOrder]:
        self._record("fetch_open_orders", symbols=symbols)
        return [o for o in self.open_orders.values() if symbols is None or o.symbol in symbols]

    async def fetch_positions(self, symbols: Sequence[str] | None = None) -> list[ObservedPosition]:
        self._record("fetch_positions", symbols=symbols)
        return [
            p
            for p in self.positions.values()
            if p.qty != ZERO and (symbols is None or p.symbol in symbols)
        ]

    async def fetch_user_trades(
        self, symbol: str, *, start_ms: int, end_ms: int, limit: int = 1000
    ) -> list[AccountTrade]:
        self._record("fetch_user_trades", symbol=symbol, start_ms=start_ms, end_ms=end_ms)
        rows = [t for t in self.trades if t.symbol == symbol and start_ms <= t.time_ms <= end_ms]
        return sorted(rows, key=lambda t: (t.time_ms, t.trade_id))[:limit]

    async def query_order(
        self, symbol: str, client_order_id: str, *, is_algo: bool = False
    ) -> ObservedOrder | None:
        self._record("query_order", symbol=symbol, client_order_id=client_order_id, is_algo=is_algo)
        return self.open_orders.get(client_order_id) or self.ended_orders.get(client_order_id)

    async def cancel_order(
        self,
        symbol: str,
        client_order_id: str,
        *,
        is_algo: bool = False,
        authorize: Authorize | None = None,
    ) -> CancelOutcome:
        self._authorize(authorize)
        self._record(
            "cancel_order", symbol=symbol, client_order_id=client_order_id, is_algo=is_algo
        )
        order = self.open_orders.pop(client_order_id, None)
        if order is None:
            return CancelOutcome.ALREADY_GONE
        order.status = OrderStatus.CANCELED
        self.ended_orders[client_order_id] = order
        return CancelOutcome.CANCELED

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
        self._authorize(authorize)
        self._record(
            "place_reduce_only_market",
            symbol=symbol,
            side=side,
            qty=qty,
            position_side=position_side,
            client_order_id=client_order_id,
        )
        return self._reduce(symbol, side, qty, position_side, client_order_id, "MARKET")

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
        self._authorize(authorize)
        self._record(
            "place_reduce_only_ioc",
            symbol=symbol,
            side=side,
            qty=qty,
            price=price,
            position_side=position_side,
            client_order_id=client_order_id,
        )
        return self._reduce(symbol, side, qty, position_side, client_order_id, "LIMIT", price)

    def _reduce(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        position_side: PositionSide,
        client_order_id: str,
        order_type: str,
        price: Decimal | None = None,
    ) -> ObservedOrder:
        """A reduce-only order against the position: it fills what ``fills`` says for it
        (in turn; all of it once they are used up), the rest expires."""
        pos = self.positions.get((symbol, position_side))
        if pos is None or pos.qty == ZERO:
            raise ExchangeError("ReduceOnly Order is rejected.", code=-2022)
        signed = qty if side is Side.BUY else -qty
        if abs(pos.qty + signed) > abs(pos.qty):
            raise ExchangeError("ReduceOnly Order is rejected.", code=-2022)
        filled = min(qty, abs(pos.qty), self.fills.pop(0) if self.fills else qty)
        pos.qty += filled if side is Side.BUY else -filled
        order = ObservedOrder(
            client_order_id=client_order_id,
            symbol=symbol,
            side=side,
            status=OrderStatus.FILLED if filled == qty else OrderStatus.EXPIRED,
            qty=qty,
            executed_qty=filled,
            price=price,
            order_type=order_type,
            position_side=position_side,
            reduce_only=True,
            update_ts_ms=self.now_ms,
        )
        self.ended_orders[client_order_id] = order
        return order

    async def countdown_cancel_all(
        self, symbol: str, countdown_ms: int, *, authorize: Authorize | None = None
    ) -> int:
        self._authorize(authorize)
        self._record("countdown_cancel_all", symbol=symbol, countdown_ms=countdown_ms)
        return countdown_ms

    async def get_mark_price(self, symbol: str) -> Decimal | None:
        self._record("get_mark_price", symbol=symbol)
        return self.mark_prices.get(symbol)

    async def get_tick_size(self, symbol: str) -> Decimal | None:
        self._record("get_tick_size", symbol=symbol)
        return self.tick_sizes.get(symbol)

    async def get_step_size(self, symbol: str) -> Decimal | None:
        self._record("get_step_size", symbol=symbol)
        return self.step_sizes.get(symbol)
