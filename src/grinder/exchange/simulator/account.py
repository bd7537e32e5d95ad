"""The account: open orders, fills, positions and the wallet, and the events they cause.

One account per simulator (Binance scopes orders and positions per account;
the API key selects it). All state changes are synchronous; the caller (the
aiohttp app, the tick loop, the control API) runs on one event loop, so no
locks are needed. Every change that Binance reports on the user-data stream
is handed to ``emit`` as the event Binance would send.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator import events as ev
from grinder.exchange.simulator.book import MarketBook
from grinder.exchange.simulator.clock import Clock
from grinder.exchange.simulator.config import SimConfig
from grinder.exchange.simulator.depth import (
    REASON_FOK,
    REASON_IOC,
    REASON_MARKET,
    available,
    take,
)
from grinder.exchange.simulator.indexes import drop, iter_open, random_client_id
from grinder.exchange.simulator.ledger import Ledger, Trade
from grinder.exchange.simulator.number_text import ZERO
from grinder.exchange.simulator.orders import Order
from grinder.exchange.simulator.positions import Position
from grinder.exchange.simulator.settings import AccountSettings
from grinder.exchange.simulator.symbols import SymbolSpec
from grinder.exchange.simulator.validation import OrderRequest

EventSink = Callable[[dict[str, Any]], None]
_FEE_QUANT = Decimal("1e-8")


class Account:
    """Orders, positions and balance of the simulated account."""

    def __init__(
        self,
        specs: Mapping[str, SymbolSpec],
        book: MarketBook,
        clock: Clock,
        config: SimConfig,
        emit: EventSink,
    ) -> None:
        self.specs = dict(specs)
        self.book = book
        self.clock = clock
        self.config = config
        self.emit = emit
        self.on_order_end: Callable[[Order], None] | None = None
        self.ledger = Ledger(config.tran_id_start)
        self.reset()

    def reset(self) -> None:
        cfg = self.config
        self.dual = cfg.dual_side_position
        self.settings = AccountSettings(self.specs, cfg.leverage)
        self.ledger.reset()
        self.wallet = cfg.starting_balance
        self.wallet_update_ms = self.clock.now_ms()
        self.ledger.record_transfer(cfg.starting_balance, "USDT", self.wallet_update_ms)
        self.orders: dict[int, Order] = {}
        self.open_by_symbol: dict[str, dict[int, Order]] = {s: {} for s in self.specs}
        self.open_by_client: dict[tuple[str, str], Order] = {}
        self.ended_by_client: dict[tuple[str, str], Order] = {}
        self.silent: set[int] = set()
        self._history: deque[int] = deque()
        self.positions: dict[tuple[str, str], Position] = {}
        self.next_order_id = cfg.order_id_start
        self.next_trade_id = cfg.trade_id_start
        self._cid_rng = random.Random(cfg.seed * 7919 + 1)

    # --- lookups -----------------------------------------------------------------------------

    def now(self) -> int:
        return self.clock.now_ms()

    def open_orders(self, symbol: str | None = None) -> Iterator[Order]:
        return iter_open(self.open_by_symbol, symbol)

    def open_count(self) -> int:
        return sum(len(v) for v in self.open_by_symbol.values())

    def find(self, symbol: str, order_id: int | None, client_id: str | None) -> Order | None:
        """An order (open or ended) by id, or by client id (the open one first)."""
        if order_id is not None:
            order = self.orders.get(order_id)
            return order if order is not None and order.symbol == symbol else None
        if client_id is None:
            return None
        key = (symbol, client_id)
        return self.open_by_client.get(key) or self.ended_by_client.get(key)

    def position(self, symbol: str, position_side: str) -> Position:
        key = (symbol, position_side)
        pos = self.positions.get(key)
        if pos is None:
            pos = Position(spec=self.specs[symbol], position_side=position_side)
            self.positions[key] = pos
        return pos

    def position_sides(self) -> tuple[str, ...]:
        return ("LONG", "SHORT") if self.dual else ("BOTH",)

    def notionals(self, symbol: str) -> tuple[Decimal, Decimal]:
        """Bid and ask notional of the symbol's open LIMIT orders."""
        bid = ask = ZERO
        for order in self.open_by_symbol[symbol].values():
            if order.type != "LIMIT":
                continue
            value = order.price * order.remaining
            if order.side == "BUY":
                bid += value
            else:
                ask += value
        return bid, ask

    # --- placing -----------------------------------------------------------------------------

    def new_client_id(self) -> str:
        return random_client_id(self._cid_rng)

    def place(
        self,
        req: OrderRequest,
        *,
        emit_events: bool = True,
        algo_id: int = 0,
        taker_price: Decimal | None = None,
    ) -> tuple[dict[str, Any], Order]:
        """Accept, match and book a new order; returns (the ACK view, the order).

        A taker trades at the mark, or at ``taker_price`` when given (control API).
        """
        spec = req.spec
        symbol = spec.symbol
        client_id = req.client_order_id or self.new_client_id()
        if (symbol, client_id) in self.open_by_client:
            raise E.err(E.DUPLICATED_CLIENT_ID)
        if len(self.open_by_symbol[symbol]) >= spec.max_num_orders:
            raise E.err(E.MAX_OPEN_ORDERS)
        self._check_reduce(req)
        mark = self.book.mark(symbol)
        marketable = req.type == "MARKET" or (
            req.price >= mark if req.side == "BUY" else req.price <= mark
        )
        liquidity = self.book.liquidity(symbol)
        if req.type == "LIMIT" and req.time_in_force == "GTX" and marketable:
            raise E.err(E.GTX_REJECT)
        depth = self.book.depth(symbol)
        if req.time_in_force == "FOK" and (
            not marketable
            or (liquidity is not None and liquidity < req.qty)
            or (
                depth is not None
                and available(depth, mark, spec.tick_size, req.side, req.price) < req.qty
            )
        ):
            raise E.err(E.FOK_REJECT)
        now = self.now()
        order = Order(
            order_id=self.next_order_id,
            client_order_id=client_id,
            spec=spec,
            side=req.side,
            position_side=req.position_side,
            type=req.type,
            time_in_force=req.time_in_force,
            qty=req.qty,
            price=req.price,
            time_ms=now,
            reduce_only=req.reduce_only,
            working_type=req.working_type,
            price_protect=req.price_protect,
            price_match=req.price_match,
            stp_mode=req.stp_mode,
            good_till_date=req.good_till_date,
            algo_id=algo_id,
        )
        self.next_order_id += 1
        if not emit_events:
            self.silent.add(order.order_id)
        self.orders[order.order_id] = order
        self.open_by_symbol[symbol][order.order_id] = order
        self.open_by_client[(symbol, client_id)] = order
        ack = order.write_view()
        self.emit_order(order, "NEW")
        if marketable and depth is not None and taker_price is None:
            take(self, order, depth, None if req.type == "MARKET" else req.price)
        elif marketable:
            want = req.qty if req.type == "MARKET" or liquidity is None else min(req.qty, liquidity)
            self.fill(order, want, taker_price or mark, maker=False)
        if marketable and order.is_open and req.type == "MARKET":
            self.expire(order, reason=REASON_MARKET)
        elif marketable and order.is_open and req.time_in_force in ("IOC", "FOK"):
            self.expire(order, reason=REASON_IOC if req.time_in_force == "IOC" else REASON_FOK)
        if order.is_open:
            order.query_json()  # serialize once now, so snapshots are a string join
        return ack, order

    def _check_reduce(self, req: OrderRequest) -> None:
        symbol = req.spec.symbol
        if req.reduce_only:
            amt = self.position(symbol, "BOTH").amt
            if amt == 0 or (req.side == "BUY") == (amt > 0):
                raise E.err(E.REDUCE_ONLY_REJECT)
        elif self.dual and req.closing:
            amt = abs(self.position(symbol, req.position_side).amt)
            pending = sum(
                (o.remaining for o in self.open_by_symbol[symbol].values() if _closes(o)),
                ZERO,
            )
            if req.qty > amt - pending:
                raise E.err(E.REDUCE_ONLY_REJECT)

    # --- fills and endings -------------------------------------------------------------------

    def closable(self, order: Order) -> Decimal | None:
        """How much this order may still trade if it can only reduce; ``None`` = no cap."""
        if order.reduce_only:
            amt = self.position(order.symbol, "BOTH").amt
            if amt == 0 or (order.side == "BUY") == (amt > 0):
                return ZERO
            return abs(amt)
        if _closes(order):
            return abs(self.position(order.symbol, order.position_side).amt)
        return None

    def fill(self, order: Order, qty: Decimal, price: Decimal, *, maker: bool) -> Decimal:
        """Trade up to ``qty`` of ``order`` at ``price``; returns the quantity traded."""
        qty = min(qty, order.remaining)
        cap = self.closable(order)
        if cap is not None:
            if cap <= 0:
                if order.is_open:
                    self.expire(order)  # a reduce-only order with nothing left to reduce
                return ZERO
            qty = min(qty, cap)
        if qty <= 0:
            return ZERO
        now = self.now()
        rate = self.config.maker_fee if maker else self.config.taker_fee
        fee = (qty * price * rate).quantize(_FEE_QUANT)
        pos = self.position(order.symbol, order.position_side)
        realized = pos.apply_fill(order.side, qty, price, fee, now)
        change = realized - fee
        self.wallet += change
        self.wallet_update_ms = now
        order.add_fill(qty, price, now)
        fill = ev.Fill(qty, price, fee, self.next_trade_id, maker, realized)
        self.ledger.record_fill(Trade.of(order, fill, now))
        self.next_trade_id += 1
        if order.order_id not in self.silent:
            if self.config.trade_lite:
                self.emit(ev.trade_lite(order, fill, now))
            self.emit_order(order, "TRADE", fill)
            self.emit(
                ev.account_update(
                    "ORDER",
                    now,
                    wallet=self.wallet,
                    balance_change=ZERO,
                    positions=[(pos, self.book.mark(order.symbol))],
                )
            )
        if not order.is_open:
            self._ended(order)
        self._expire_stale_reduce_only(order.symbol)
        return qty

    def expire(self, order: Order, *, status: str = "EXPIRED", reason: int = 0) -> None:
        order.expiry_reason = reason
        order.end(status, self.now())
        self.emit_order(order, "EXPIRED")
        self._ended(order)

    def cancel(self, order: Order) -> None:
        order.end("CANCELED", self.now())
        self.emit_order(order, "CANCELED")
        self._ended(order)

    def _expire_stale_reduce_only(self, symbol: str) -> None:
        for order in list(self.open_by_symbol[symbol].values()):
            cap = self.closable(order)
            if cap is not None and cap == 0:
                self.expire(order)

    def _unlist(self, order: Order) -> None:
        """Take the order off the open lists."""
        self.open_by_symbol[order.symbol].pop(order.order_id, None)
        drop(self.open_by_client, (order.symbol, order.client_order_id), order)

    def _ended(self, order: Order) -> None:
        self._unlist(order)
        self.ended_by_client[(order.symbol, order.client_order_id)] = order
        self._history.append(order.order_id)
        while len(self._history) > self.config.history_limit:
            self._forget(self._history.popleft())
        if self.on_order_end is not None:
            self.on_order_end(order)

    def _forget(self, order_id: int) -> None:
        order = self.orders.pop(order_id, None)
        if order is None:
            return
        drop(self.ended_by_client, (order.symbol, order.client_order_id), order)
        self.silent.discard(order_id)

    def emit_order(self, order: Order, exec_type: str, fill: ev.Fill | None = None) -> None:
        if order.order_id in self.silent:
            return
        bid, ask = self.notionals(order.symbol)
        self.emit(
            ev.order_trade_update(
                order, exec_type, self.now(), fill=fill, bid_notional=bid, ask_notional=ask
            )
        )

    # --- the market moves --------------------------------------------------------------------

    def on_price(self, symbol: str) -> int:
        """Fill resting LIMIT orders the mark has crossed; returns how many traded."""
        mark = self.book.mark(symbol)
        liquidity = self.book.liquidity(symbol)
        traded = 0
        for order in list(self.open_by_symbol[symbol].values()):
            if order.type != "LIMIT" or not order.is_open:
                continue
            crossed = mark <= order.price if order.side == "BUY" else mark >= order.price
            if not crossed:
                continue
            want = order.remaining if liquidity is None else min(order.remaining, liquidity)
            if self.fill(order, want, order.price, maker=True) > 0:
                traded += 1
        return traded

    def expire_due(self, now_ms: int) -> int:
        """Expire GTD orders whose goodTillDate has passed."""
        due = [
            o
            for o in self.open_orders()
            if o.time_in_force == "GTD" and 0 < o.good_till_date <= now_ms
        ]
        for order in due:
            self.expire(order)
        return len(due)

    # --- out-of-band changes (control API) ----------------------------------------------------

    def vanish(self, order: Order) -> None:
        """Remove an order without a trace or an event."""
        self._unlist(order)
        drop(self.ended_by_client, (order.symbol, order.client_order_id), order)
        self.orders.pop(order.order_id, None)
        self.silent.discard(order.order_id)

    def set_position(
        self,
        symbol: str,
        position_side: str,
        amt: Decimal,
        entry: Decimal,
        *,
        emit_events: bool = True,
        reason: str = "ADJUSTMENT",
    ) -> Position:
        pos = self.position(symbol, position_side)
        now = self.now()
        pos.set(amt, entry, now)
        if emit_events:
            self.emit(
                ev.account_update(
                    reason,
                    now,
                    wallet=self.wallet,
                    balance_change=ZERO,
                    positions=[(pos, self.book.mark(symbol))],
                )
            )
        self._expire_stale_reduce_only(symbol)
        return pos

    def has_positions(self) -> bool:
        return any(p.amt != 0 for p in self.positions.values())

    def change_mode(self, dual: bool, *, force: bool = False) -> None:
        """Switch one-way / hedge mode, refused as Binance refuses it unless ``force``."""
        if not force:
            if dual == self.dual:
                raise E.err(E.NO_NEED_POSITION_SIDE)
            if self.open_count():
                raise E.err(E.POSITION_SIDE_OPEN_ORDERS)
            if self.has_positions():
                raise E.err(E.POSITION_SIDE_POSITION)
        self.dual = dual


def _closes(order: Order) -> bool:
    """A hedge-mode close order: SELL on LONG or BUY on SHORT."""
    return (order.side, order.position_side) in (("SELL", "LONG"), ("BUY", "SHORT"))
