"""The algo service: conditional orders waiting for their trigger, and what a trigger does.

A trigger follows the sequence Binance records (``jqcta_ws_algo_stop_market_
lifecycle_2025_sequence.json``): ALGO_UPDATE TRIGGERING, then a new regular
order (same client id, ``si`` = algo id, ``st`` = ALGO_CONDITION) with its own
ORDER_TRADE_UPDATE events, then ALGO_UPDATE TRIGGERED (``ai`` = the new order
id) and, once that order has ended, ALGO_UPDATE FINISHED with ``ap``/``aq``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator import events as ev
from grinder.exchange.simulator.account import Account, EventSink
from grinder.exchange.simulator.algo import AlgoOrder, AlgoRequest
from grinder.exchange.simulator.config import SimConfig
from grinder.exchange.simulator.indexes import drop, iter_open, random_client_id
from grinder.exchange.simulator.number_text import ZERO
from grinder.exchange.simulator.orders import Order
from grinder.exchange.simulator.symbols import SymbolSpec
from grinder.exchange.simulator.validation import OrderRequest


class AlgoBook:
    """Open and past conditional orders of the account."""

    def __init__(
        self,
        specs: Mapping[str, SymbolSpec],
        account: Account,
        config: SimConfig,
        emit: EventSink,
    ) -> None:
        self.specs = dict(specs)
        self.account = account
        self.config = config
        self.emit = emit
        account.on_order_end = self._child_ended
        self.reset()

    def reset(self) -> None:
        self.by_id: dict[int, AlgoOrder] = {}
        self.open_by_symbol: dict[str, dict[int, AlgoOrder]] = {s: {} for s in self.specs}
        self.open_by_client: dict[str, AlgoOrder] = {}
        self.by_client: dict[str, AlgoOrder] = {}
        self.by_child: dict[int, AlgoOrder] = {}
        self.next_algo_id = self.config.algo_id_start
        self._rng = random.Random(self.config.seed * 104729 + 3)

    def open_orders(self, symbol: str | None = None) -> Iterator[AlgoOrder]:
        return iter_open(self.open_by_symbol, symbol)

    def find(self, algo_id: int | None, client_algo_id: str | None) -> AlgoOrder | None:
        if algo_id is not None:
            return self.by_id.get(algo_id)
        if client_algo_id is None:
            return None
        return self.open_by_client.get(client_algo_id) or self.by_client.get(client_algo_id)

    def _emit(self, algo: AlgoOrder) -> None:
        if not algo.silent:
            self.emit(ev.algo_update(algo, self.account.now()))

    # --- placing and cancelling ---------------------------------------------------------------

    def place(self, req: AlgoRequest, *, emit_events: bool = True) -> AlgoOrder:
        symbol = req.spec.symbol
        client_id = req.client_algo_id or random_client_id(self._rng)
        if client_id in self.open_by_client:
            raise E.err(E.DUPLICATED_CLIENT_ID)
        if len(self.open_by_symbol[symbol]) >= req.spec.max_num_algo_orders:
            raise E.err(E.MAX_ALGO_ORDERS)
        now = self.account.now()
        algo = AlgoOrder(
            algo_id=self.next_algo_id,
            client_algo_id=client_id,
            spec=req.spec,
            side=req.side,
            position_side=req.position_side,
            type=req.type,
            time_in_force=req.time_in_force,
            qty=req.qty,
            price=req.price,
            trigger_price=req.trigger_price,
            create_time_ms=now,
            reduce_only=req.reduce_only,
            close_position=req.close_position,
            working_type=req.working_type,
            price_match=req.price_match,
            price_protect=req.price_protect,
            stp_mode=req.stp_mode,
            good_till_date=req.good_till_date,
            activate_price=req.activate_price,
            callback_rate=req.callback_rate,
            silent=not emit_events,
        )
        mark = self.account.book.mark(symbol)
        if algo.type != "TRAILING_STOP_MARKET" and algo.should_trigger(mark):
            raise E.err(E.WOULD_TRIGGER)
        self.next_algo_id += 1
        self.by_id[algo.algo_id] = algo
        self.by_client[client_id] = algo
        self.open_by_client[client_id] = algo
        self.open_by_symbol[symbol][algo.algo_id] = algo
        self._emit(algo)
        return algo

    def cancel(self, algo: AlgoOrder) -> None:
        if not algo.is_open:
            raise E.err(E.CANCEL_REJECTED)
        self._close(algo, "CANCELED")
        self._emit(algo)

    def _close(self, algo: AlgoOrder, status: str) -> None:
        algo.status = status
        algo.update_time_ms = self.account.now()
        self._unlist(algo)

    def _unlist(self, algo: AlgoOrder) -> None:
        """Take the algo order off the open lists."""
        self.open_by_symbol[algo.symbol].pop(algo.algo_id, None)
        drop(self.open_by_client, algo.client_algo_id, algo)

    def vanish(self, algo: AlgoOrder) -> None:
        self._unlist(algo)
        drop(self.by_client, algo.client_algo_id, algo)
        self.by_id.pop(algo.algo_id, None)

    # --- triggering ---------------------------------------------------------------------------

    def on_price(self, symbol: str) -> int:
        mark = self.account.book.mark(symbol)
        fired = [a for a in list(self.open_by_symbol[symbol].values()) if a.should_trigger(mark)]
        for algo in fired:
            self.trigger(algo)
        return len(fired)

    def trigger(self, algo: AlgoOrder) -> None:
        now = self.account.now()
        self._close(algo, "TRIGGERING")
        algo.trigger_time_ms = now
        self._emit(algo)
        qty = algo.qty
        position_side = algo.position_side
        if algo.close_position:
            amt = self.account.position(algo.symbol, position_side).amt
            qty = abs(amt)
        request = OrderRequest(
            spec=algo.spec,
            side=algo.side,
            position_side=position_side,
            type=algo.child_type,
            time_in_force=algo.time_in_force if algo.child_type == "LIMIT" else "GTC",
            qty=qty,
            price=algo.price if algo.child_type == "LIMIT" else ZERO,
            reduce_only=(algo.reduce_only or algo.close_position) and not self.account.dual,
            client_order_id=algo.client_algo_id,
            resp_type="ACK",
            stp_mode=algo.stp_mode,
            price_match=algo.price_match,
            good_till_date=algo.good_till_date,
            working_type=algo.working_type,
            price_protect=algo.price_protect,
        )
        try:
            if qty <= 0:
                raise E.err(E.REDUCE_ONLY_REJECT)
            _, child = self.account.place(
                request, emit_events=not algo.silent, algo_id=algo.algo_id
            )
        except E.ErrorReply as exc:
            algo.status = "REJECTED"
            algo.reject_reason = "Reduce Only reject" if exc.code == -2022 else exc.msg
            algo.update_time_ms = self.account.now()
            if not algo.silent:
                self.emit(self._trigger_reject(algo, exc.msg))
            self._emit(algo)
            return
        self.by_child[child.order_id] = algo
        algo.actual_order_id = child.order_id
        algo.actual_type = child.type
        algo.status = "TRIGGERED"
        algo.update_time_ms = self.account.now()
        self._emit(algo)
        if algo.child_ended:
            self._finish(algo, child)

    def _trigger_reject(self, algo: AlgoOrder, reason: str) -> dict[str, Any]:
        now = self.account.now()
        return {
            "e": "CONDITIONAL_ORDER_TRIGGER_REJECT",
            "E": now,
            "T": now,
            "or": {"s": algo.symbol, "i": algo.algo_id, "r": reason},
        }

    def _child_ended(self, order: Order) -> None:
        if not order.algo_id:
            return
        algo = self.by_id.get(order.algo_id)
        if algo is None:
            return
        if algo.status == "TRIGGERING":
            algo.child_ended = True
            algo.actual_qty = order.executed_qty
            algo.actual_avg_price = order.avg_price
            return
        self._finish(algo, order)

    def _finish(self, algo: AlgoOrder, order: Order) -> None:
        algo.status = "FINISHED"
        algo.actual_qty = order.executed_qty
        algo.actual_avg_price = order.avg_price
        algo.update_time_ms = self.account.now()
        self._emit(algo)
