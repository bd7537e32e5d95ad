"""Adopt the exchange's current state as the expected baseline.

``grinder expected adopt`` is what an operator runs after checking the account by
hand -- typically before a bot starts recording, or after it lost its expected
state -- so that reconciliation starts from "what is there now is intended"
instead of reporting every existing order and position as a mismatch.

``adopt_baseline`` reads the exchange's open orders and positions (all symbols)
and makes the expected store agree with them:

* **Our open orders** (client order id with ``config.client_order_id_prefix`` and a
  strategy in ``config.allowed_strategies``) become expected-open. One the store
  already expects open is left as the bot recorded it; one the store holds as
  ended (or does not hold) is recorded from the exchange's report.
* **Orders that are not ours** -- manual, other bots, liquidation ``autoclose-``,
  ADL, settlement -- are never recorded and never touched; they are counted and
  listed with the ownership reason.
* **Positions**: every non-zero position becomes the intended position for its
  (symbol, positionSide). Expected positions that are non-zero but absent from the
  exchange (flat there) are set to 0 and listed as ``zeroed_positions``. After
  adoption expected positions equal the exchange's, whatever the symbol.
* **Expected orders absent from the exchange** (the store expects them open, the
  exchange does not list them) are **marked ended** -- booked as "cancel
  requested" at ``now_ms``, meaning "the bot no longer expects it on the
  exchange" -- so they stop counting as missing; they are listed in
  ``ended_orders``. Their true terminal status is unknown (no per-order
  queries are spent); if one reappears open, detection reports it as a status
  divergence. Exception: an order the bot recorded within ``config.order_grace_ms``
  before ``now_ms`` is kept open and listed in ``kept_recent_orders``: it may be
  on its way (the bot records before it sends).

Nothing is sent to the exchange. On a ``SqliteExpectedStore`` every change is
made in one transaction (all or nothing; a concurrently running bot waits for
it); with ``ExpectedStoreFull`` nothing is adopted. A store without transactions
(``RedisExpectedStore``: each write is atomic on its own) is refreshed first and
checked for room before the first write: if the orders to adopt would not fit
beside the open ones, ``ExpectedStoreFull`` is raised and nothing is written.
Stop the bot while adopting into Redis: a write of its own between two of
adoption's could be overwritten. ``now_ms`` should be taken
just before calling: it dates the records and anchors the grace period.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from grinder.exchange.port import ExchangePort
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.identity import Ownership, ownership
from grinder.reconcile.types import (
    ZERO,
    ExpectedOrder,
    ObservedOrder,
    ObservedPosition,
    PositionKey,
    PositionSide,
)
from grinder.state.expected import ExpectedReadWrite, ExpectedStoreFull
from grinder.state.sqlite import SqliteExpectedStore


@dataclass(frozen=True, slots=True)
class AdoptedPosition:
    symbol: str
    position_side: PositionSide
    qty: Decimal
    previous_qty: Decimal | None

    @property
    def key(self) -> PositionKey:
        return (self.symbol, self.position_side)


@dataclass(slots=True)
class AdoptReport:
    """What ``adopt_baseline`` did. Lists are sorted, so reports compare and print stably."""

    adopted_orders: list[str] = field(default_factory=list)
    already_expected_orders: list[str] = field(default_factory=list)
    skipped_foreign_orders: list[tuple[str, Ownership]] = field(default_factory=list)
    ended_orders: list[str] = field(default_factory=list)
    kept_recent_orders: list[str] = field(default_factory=list)
    adopted_positions: list[AdoptedPosition] = field(default_factory=list)
    zeroed_positions: list[PositionKey] = field(default_factory=list)

    @property
    def orders_adopted(self) -> int:
        return len(self.adopted_orders)

    @property
    def orders_skipped_foreign(self) -> int:
        return len(self.skipped_foreign_orders)

    @property
    def positions_adopted(self) -> int:
        return len(self.adopted_positions)

    def counts(self) -> dict[str, int]:
        return {
            "orders_adopted": len(self.adopted_orders),
            "orders_already_expected": len(self.already_expected_orders),
            "orders_skipped_foreign": len(self.skipped_foreign_orders),
            "orders_marked_ended": len(self.ended_orders),
            "orders_kept_recent": len(self.kept_recent_orders),
            "positions_adopted": len(self.adopted_positions),
            "positions_zeroed": len(self.zeroed_positions),
        }

    def summary_line(self) -> str:
        """``EXPECTED_ADOPT orders_adopted=… …``: one greppable line."""
        return "EXPECTED_ADOPT " + " ".join(f"{k}={v}" for k, v in self.counts().items())


async def adopt_baseline(
    store: ExpectedReadWrite,
    port: ExchangePort,
    config: ReconcileConfig,
    now_ms: int,
) -> AdoptReport:
    """Make ``store`` expect exactly our open orders and every position on the exchange."""
    open_orders = await port.fetch_open_orders(None)
    positions = await port.fetch_positions(None)

    report = AdoptReport()
    ours = _our_open_orders(open_orders, config, report)
    on_exchange = {o.client_order_id for o in open_orders}
    observed_positions = {p.key: p for p in positions if p.qty != ZERO}

    with _one_transaction(store):
        _record_our_orders(store, ours, now_ms, report)
        _end_orders_absent_from_exchange(
            store, on_exchange, now_ms - config.order_grace_ms, now_ms, report
        )
        _take_exchange_positions(store, observed_positions, now_ms, report)

    report.skipped_foreign_orders.sort()
    return report


def _our_open_orders(
    open_orders: list[ObservedOrder], config: ReconcileConfig, report: AdoptReport
) -> dict[str, ObservedOrder]:
    """The exchange's open orders that are ours, by client order id; every other open one
    is listed in ``report.skipped_foreign_orders`` with its ownership reason."""
    ours: dict[str, ObservedOrder] = {}
    for o in open_orders:
        if not o.status.is_open:
            continue
        verdict = ownership(
            o.client_order_id,
            prefix=config.client_order_id_prefix,
            strategy_allowlist=config.allowed_strategies,
        )
        if verdict is Ownership.OURS:
            ours[o.client_order_id] = o
        else:
            report.skipped_foreign_orders.append((o.client_order_id, verdict))
    return ours


def _record_our_orders(
    store: ExpectedReadWrite, ours: dict[str, ObservedOrder], now_ms: int, report: AdoptReport
) -> None:
    """Record each of ours the store does not already expect open, as the exchange reports
    it; room is checked before the first write on a store without transactions."""
    to_record = []
    for cid in sorted(ours):
        existing = store.get_order(cid)
        if existing is not None and existing.expected_open:
            report.already_expected_orders.append(cid)
        else:
            to_record.append(cid)
    if not isinstance(store, SqliteExpectedStore):
        _check_room(store, len(to_record))
    for cid in to_record:
        store.record_order(_expected_from_observed(ours[cid], now_ms))
        report.adopted_orders.append(cid)


def _end_orders_absent_from_exchange(
    store: ExpectedReadWrite,
    on_exchange: set[str],
    grace_start: int,
    now_ms: int,
    report: AdoptReport,
) -> None:
    """Mark ended each order the store expects open and the exchange does not list, except
    one recorded after ``grace_start`` (it may be on its way): that one is kept open."""
    absent = sorted(
        e.client_order_id
        for e in store.orders()
        if e.expected_open and e.client_order_id not in on_exchange
    )
    for cid in absent:
        e = store.get_order(cid)
        if e is None:
            continue
        if e.created_ts_ms > grace_start:
            report.kept_recent_orders.append(cid)
            continue
        store.mark_cancel_requested(cid, now_ms)
        report.ended_orders.append(cid)


def _take_exchange_positions(
    store: ExpectedReadWrite,
    observed_positions: dict[PositionKey, ObservedPosition],
    now_ms: int,
    report: AdoptReport,
) -> None:
    """Expect every non-zero position the exchange holds, and zero every expected one the
    exchange holds none of."""
    expected_positions = {p.key: p.qty for p in store.positions()}
    for key in sorted(observed_positions):
        p = observed_positions[key]
        store.set_position(p.symbol, p.qty, now_ms, p.position_side)
        report.adopted_positions.append(
            AdoptedPosition(p.symbol, p.position_side, p.qty, expected_positions.get(key))
        )
    for key in sorted(expected_positions):
        if key not in observed_positions and expected_positions[key] != ZERO:
            store.set_position(key[0], ZERO, now_ms, key[1])
            report.zeroed_positions.append(key)


@contextmanager
def _one_transaction(store: ExpectedReadWrite) -> Iterator[None]:
    """One SQLite transaction, reading the file as it is once the write lock is held;
    any other store is brought up to date first when it can be (``refresh()``)."""
    if isinstance(store, SqliteExpectedStore):
        with store.batch():
            store.refresh()
            yield
        return
    refresh = getattr(store, "refresh", None)
    if callable(refresh):
        refresh()
    yield


def _check_room(store: ExpectedReadWrite, adding: int) -> None:
    """``ExpectedStoreFull`` before any write when ``adding`` orders would not fit beside
    the open ones (a store without transactions could not take back the first writes)."""
    limit = getattr(store, "max_orders", None)
    if not isinstance(limit, int) or adding == 0:
        return
    open_now = sum(1 for e in store.orders() if e.expected_open)
    if open_now + adding > limit:
        raise ExpectedStoreFull(
            f"adopting {adding} orders beside {open_now} open ones would pass "
            f"max_orders={limit}; nothing was written"
        )


def _expected_from_observed(o: ObservedOrder, now_ms: int) -> ExpectedOrder:
    return ExpectedOrder(
        client_order_id=o.client_order_id,
        symbol=o.symbol,
        side=o.side,
        qty=o.qty,
        price=o.price,
        order_type=o.order_type,
        position_side=o.position_side,
        status=o.status,
        created_ts_ms=o.created_ts_ms or now_ms,
        updated_ts_ms=now_ms,
        is_algo=o.is_algo,
    )
