"""What the service learned that can explain an incident: the evidence book.

The service hands it every user-data stream event (``record``) and every triage
finding (``record_triage``); ``facts_for`` assembles, for one mismatch, the frozen
``CaseFacts`` the classifier reads, with the stream's reconnect windows, the bot's
heartbeat and which fills were the bot's own. Bounded: the events of at most
``max_orders`` orders (the least recently touched forgotten first), ``fills_per_key``
fills per position and ``max_keys`` positions.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from grinder.exchange.binance.parsing import AlgoUpdate, OrderUpdate, OtherEvent, UserEvent
from grinder.exchange.binance.stream_windows import ReconnectWindow
from grinder.incidents.facts import (
    CaseFacts,
    FillFact,
    OrderEventFact,
    TriageFact,
    TriggerRejectFact,
)
from grinder.reconcile.engine import TriageFinding
from grinder.reconcile.labels import TriageOutcome
from grinder.reconcile.types import Mismatch

K = TypeVar("K")
V = TypeVar("V")

EVENTS_PER_ORDER = 4
TRIGGER_REJECT = "CONDITIONAL_ORDER_TRIGGER_REJECT"
FILL_EXECUTIONS = frozenset({"TRADE", "CALCULATED"})


class _Lru(OrderedDict[K, V]):
    """A dict that forgets its least recently set entries past ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: K, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class EvidenceBook:
    """Stream events, triage findings and the stream's windows, kept for the classifier."""

    def __init__(
        self,
        *,
        max_orders: int = 20_000,
        fills_per_key: int = 16,
        max_keys: int = 5_000,
    ) -> None:
        self._events: _Lru[str, deque[OrderEventFact]] = _Lru(max_orders)
        self._fills: _Lru[tuple[str, str], deque[FillFact]] = _Lru(max_keys)
        self._rejects: _Lru[str, TriggerRejectFact] = _Lru(max_orders)
        self._triage: _Lru[str, TriageFact] = _Lru(max_orders)
        self._by_order_id: _Lru[int, str] = _Lru(max_orders)
        self._fills_per_key = fills_per_key
        self.version = 0
        """Counts what was handed in: an unknown cause needs no second look while it is the
        same."""

    # --- what the service hands in ------------------------------------------------------------

    def record(self, event: UserEvent) -> None:
        self.version += 1
        if isinstance(event, OrderUpdate):
            self._order_update(event)
        elif isinstance(event, AlgoUpdate):
            o = event.order
            self._add_event(
                OrderEventFact(
                    event="ALGO_UPDATE",
                    client_order_id=o.client_order_id,
                    symbol=o.symbol,
                    position_side=o.position_side.value,
                    status=event.algo_status,
                    ts_ms=o.update_ts_ms,
                    reject_reason=event.reject_reason,
                    order_id=event.algo_id,
                )
            )
        elif isinstance(event, OtherEvent) and event.event_type == TRIGGER_REJECT:
            self._trigger_reject(event.payload, event.event_ts_ms or 0)

    def _order_update(self, event: OrderUpdate) -> None:
        o = event.order
        fact = OrderEventFact(
            event="ORDER_TRADE_UPDATE",
            client_order_id=o.client_order_id,
            symbol=o.symbol,
            position_side=o.position_side.value,
            status=o.status.value,
            ts_ms=o.update_ts_ms,
            execution_type=event.execution_type,
            expiry_reason=event.expiry_reason,
            time_in_force=event.time_in_force,
            stp_mode=event.stp_mode,
            filled_qty=str(event.last_filled_qty),
            order_id=o.order_id,
        )
        self._add_event(fact)
        if event.last_filled_qty > 0 or event.execution_type == "CALCULATED":
            key = (o.symbol, o.position_side.value)
            fills = self._fills.get(key)
            if fills is None:
                fills = deque(maxlen=self._fills_per_key)
            fills.append(
                FillFact(
                    client_order_id=o.client_order_id,
                    symbol=o.symbol,
                    position_side=o.position_side.value,
                    side=o.side.value,
                    qty=str(event.last_filled_qty or o.executed_qty),
                    execution_type=event.execution_type,
                    ts_ms=o.update_ts_ms,
                )
            )
            self._fills.put(key, fills)

    def _add_event(self, fact: OrderEventFact) -> None:
        events = self._events.get(fact.client_order_id)
        if events is None:
            events = deque(maxlen=EVENTS_PER_ORDER)
        events.append(fact)
        self._events.put(fact.client_order_id, events)
        if fact.order_id is not None:
            self._by_order_id.put(fact.order_id, fact.client_order_id)

    def _trigger_reject(self, payload: dict[str, Any], ts_ms: int) -> None:
        body = payload.get("or")
        if not isinstance(body, dict):
            return
        symbol, reason, raw_id = body.get("s"), body.get("r"), body.get("i")
        order_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
        if isinstance(raw_id, str) and raw_id.isdigit():
            order_id = int(raw_id)
        cid = self._by_order_id.get(order_id) if order_id is not None else None
        if cid is None:
            return  # an order this service never heard of: nothing to explain with it
        self._rejects.put(
            cid,
            TriggerRejectFact(
                symbol=str(symbol or ""),
                reason=" ".join(str(reason or "rejected").split()),
                ts_ms=ts_ms,
                order_id=order_id,
                client_order_id=cid,
            ),
        )

    def record_triage(self, findings: Iterable[TriageFinding], now_ms: int) -> None:
        for f in findings:
            self.version += 1
            if f.outcome is TriageOutcome.DEFERRED:
                continue
            current = self._triage.get(f.client_order_id)
            if current is not None and current.outcome is TriageOutcome.FOUND_ENDED:
                continue  # the finding that explains the order's end is the one kept
            self._triage.put(
                f.client_order_id,
                TriageFact(
                    client_order_id=f.client_order_id,
                    outcome=f.outcome,
                    ts_ms=now_ms,
                    status=None if f.status is None else f.status.value,
                    update_ts_ms=f.update_ts_ms,
                ),
            )

    # --- what the classifier reads ------------------------------------------------------------

    def facts_for(
        self,
        m: Mismatch,
        now_ms: int,
        *,
        prefix: str,
        strategy_allowlist: frozenset[str],
        windows: Sequence[ReconnectWindow] = (),
        heartbeat_age_s: float | None = None,
        max_heartbeat_age_s: float = 30.0,
        recorded_by_bot: Callable[[str], bool] = lambda _cid: False,
        position_changed_ms: int | None = None,
    ) -> CaseFacts:
        cid = m.client_order_id
        fills: tuple[FillFact, ...] = ()
        if cid is None:
            side = m.position_side.value if m.position_side is not None else "BOTH"
            kept = self._fills.get((m.symbol, side)) or ()
            fills = tuple(
                FillFact(
                    f.client_order_id,
                    f.symbol,
                    f.position_side,
                    f.side,
                    f.qty,
                    f.execution_type,
                    f.ts_ms,
                    recorded_by_bot(f.client_order_id),
                )
                for f in kept
            )
        reject = self._rejects.get(cid) if cid is not None else None
        return CaseFacts(
            mismatch=m,
            now_ms=now_ms,
            prefix=prefix,
            strategy_allowlist=strategy_allowlist,
            order_events=tuple(self._events.get(cid) or ()) if cid is not None else (),
            fills=fills,
            trigger_rejects=(reject,) if reject is not None else (),
            triage=self._triage.get(cid) if cid is not None else None,
            windows=tuple(windows),
            heartbeat_age_s=heartbeat_age_s,
            max_heartbeat_age_s=max_heartbeat_age_s,
            position_changed_ms=position_changed_ms,
        )
