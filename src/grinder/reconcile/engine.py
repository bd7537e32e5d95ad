"""Detection: compare expected with observed state and name every difference.

``detect`` is pure over the two stores and ``now_ms``: one pass over expected
orders, one over observed open orders, one over position keys. Expected orders
that are absent from the exchange past their grace period are not reported at
once: ``reconcile`` first **triages** them by client order id through the port
(within a per-cycle query budget), because an order can have ended while the
stream was not looking, or Binance can briefly deny a fresh order exists.

``IncidentTracker`` turns the mismatches that stand in each run into incidents:
a mismatch that persists across runs is reported once when it appears and once
when it clears.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from grinder.exchange.port import ExchangeError
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.identity import Ownership, ownership
from grinder.reconcile.labels import TriageOutcome
from grinder.reconcile.types import (
    OPEN_STATUSES,
    ZERO,
    ExpectedOrder,
    Mismatch,
    MismatchType,
    ObservedOrder,
    OrderStatus,
    PositionKey,
    PositionSide,
)
from grinder.state.expected import ExpectedStore
from grinder.state.observed import ObservedStore

_FILLED = OrderStatus.FILLED


class OrderQuery(Protocol):
    """The one port call triage needs."""

    async def query_order(
        self, symbol: str, client_order_id: str, *, is_algo: bool = False
    ) -> ObservedOrder | None: ...


@dataclass(slots=True)
class DetectionResult:
    mismatches: list[Mismatch]
    missing_candidates: list[ExpectedOrder]
    foreign_open_orders: int = 0


@dataclass(frozen=True, slots=True)
class TriageFinding:
    """What one lookup by client order id found: the order's status and the exchange's
    time of it when the exchange knew the order (evidence of an incident's cause)."""

    client_order_id: str
    outcome: TriageOutcome
    status: OrderStatus | None = None
    update_ts_ms: int | None = None


@dataclass(slots=True)
class ReconcileResult:
    """What one reconcile cycle found."""

    mismatches: list[Mismatch]
    new_incidents: list[Mismatch]
    cleared_incidents: list[Mismatch]
    triage: Counter[TriageOutcome] = field(default_factory=Counter)
    foreign_open_orders: int = 0
    triaged: list[TriageFinding] = field(default_factory=list)


class IncidentTracker:
    """Tracks which mismatches stand; reports each persisting one as a single incident."""

    def __init__(self) -> None:
        self._active: dict[tuple[str, str, str], Mismatch] = {}

    def update(self, mismatches: Iterable[Mismatch]) -> tuple[list[Mismatch], list[Mismatch]]:
        current = {m.key: m for m in mismatches}
        new = [m for k, m in current.items() if k not in self._active]
        cleared = [m for k, m in self._active.items() if k not in current]
        self._active = current
        return new, cleared

    @property
    def active(self) -> Mapping[tuple[str, str, str], Mismatch]:
        return self._active


class ReconcileEngine:
    """Detects the five mismatch types over an expected and an observed store."""

    def __init__(
        self,
        config: ReconcileConfig,
        expected: ExpectedStore,
        observed: ObservedStore,
        *,
        step_sizes: Mapping[str, Decimal] | None = None,
    ) -> None:
        self.config = config
        self.expected = expected
        self.observed = observed
        self.step_sizes: dict[str, Decimal] = dict(step_sizes or {})
        self.incidents = IncidentTracker()
        self._misses: dict[str, int] = {}

    # --- pure detection ------------------------------------------------------------------

    def detect(self, now_ms: int) -> DetectionResult:
        cfg = self.config
        grace = cfg.order_grace_ms
        prefix = cfg.client_order_id_prefix
        allowed = cfg.allowed_strategies
        obs_get = self.observed.get_order
        mismatches: list[Mismatch] = []
        candidates: list[ExpectedOrder] = []
        expected_ids: set[str] = set()
        add_id = expected_ids.add

        for e in self.expected.orders():
            add_id(e.client_order_id)
            o = obs_get(e.client_order_id)
            if o is not None and o.status in OPEN_STATUSES and e.ended_ts_ms is None:
                continue  # the common case: open on both sides
            found = self._check_expected(e, o, now_ms, grace)
            if found is None:
                continue
            if isinstance(found, Mismatch):
                mismatches.append(found)
            else:
                candidates.append(found)

        foreign = 0
        for o in self.observed.open_orders():
            if o.client_order_id in expected_ids:
                continue
            if ownership(o.client_order_id, prefix=prefix, strategy_allowlist=allowed) is not (
                Ownership.OURS
            ):
                foreign += 1
                continue
            if now_ms - (o.created_ts_ms or o.seen_ts_ms) < grace:
                continue
            mismatches.append(_unexpected(o))

        mismatches.extend(self._detect_positions(now_ms))
        return DetectionResult(mismatches, candidates, foreign)

    def check_order(self, client_order_id: str, now_ms: int) -> Mismatch | ExpectedOrder | None:
        """Re-check one order: a mismatch, a triage candidate, or None when it agrees."""
        cfg = self.config
        e = self.expected.get_order(client_order_id)
        o = self.observed.get_order(client_order_id)
        if e is not None:
            return self._check_expected(e, o, now_ms, cfg.order_grace_ms)
        if o is None or o.status not in OPEN_STATUSES:
            return None
        verdict = ownership(
            client_order_id,
            prefix=cfg.client_order_id_prefix,
            strategy_allowlist=cfg.allowed_strategies,
        )
        if verdict is not Ownership.OURS:
            return None
        if now_ms - (o.created_ts_ms or o.seen_ts_ms) < cfg.order_grace_ms:
            return None
        return _unexpected(o)

    def _check_expected(
        self, e: ExpectedOrder, o: ObservedOrder | None, now_ms: int, grace: int
    ) -> Mismatch | ExpectedOrder | None:
        if e.ended_ts_ms is None:
            # The bot believes the order is live.
            if o is None:
                if now_ms - e.created_ts_ms < grace:
                    return None
                return e  # absent: triage decides
            if o.status in OPEN_STATUSES or o.status is _FILLED:
                return None  # agrees, or normal progress the bot has not booked yet
            if now_ms - (o.update_ts_ms or o.seen_ts_ms) < grace:
                return None
            return _divergence(e, o)
        # The bot ended the order (cancel sent or terminal status booked).
        if o is None or o.status not in OPEN_STATUSES:
            return None
        if now_ms - (e.ended_ts_ms if e.ended_ts_ms is not None else e.updated_ts_ms) < grace:
            return None
        return _divergence(e, o)

    def _detect_positions(self, now_ms: int) -> list[Mismatch]:
        cfg = self.config
        grace = cfg.position_grace_ms
        scope = frozenset(cfg.symbols) if cfg.symbols else None
        keys: set[PositionKey] = set()
        for ep in self.expected.positions():
            keys.add(ep.key)
        for op in self.observed.positions():
            keys.add(op.key)
        out: list[Mismatch] = []
        for key in sorted(keys):
            if scope is not None and key[0] not in scope:
                continue
            found = self._check_position(key, now_ms, grace)
            if found is not None:
                out.append(found)
        return out

    def check_position(self, key: PositionKey, now_ms: int) -> Mismatch | None:
        """Re-check one position key."""
        scope = self.config.symbols
        if scope and key[0] not in scope:
            return None
        return self._check_position(key, now_ms, self.config.position_grace_ms)

    def _check_position(self, key: PositionKey, now_ms: int, grace: int) -> Mismatch | None:
        ep = self.expected.get_position(key)
        op = self.observed.get_position(key)
        exp_qty = ep.qty if ep is not None else ZERO
        obs_qty = op.qty if op is not None else ZERO
        if exp_qty == obs_qty:
            return None
        last_change = max(
            ep.updated_ts_ms if ep is not None else 0,
            op.changed_ts_ms if op is not None else 0,
        )
        if now_ms - last_change < grace:
            return None
        symbol, side = key
        if exp_qty == ZERO:
            mtype = MismatchType.POSITION_NONZERO_UNEXPECTED
        else:
            step = self.step_sizes.get(symbol, ZERO)
            if abs(exp_qty - obs_qty) <= step:
                return None
            mtype = MismatchType.POSITION_QTY_DIVERGENCE
        return Mismatch(
            type=mtype,
            symbol=symbol,
            position_side=side,
            expected_qty=exp_qty,
            observed_qty=obs_qty,
        )

    # --- the cycle -----------------------------------------------------------------------

    async def reconcile(self, now_ms: int, port: OrderQuery | None = None) -> ReconcileResult:
        """Detect, triage missing orders through ``port``, and update incidents."""
        det = self.detect(now_ms)
        mismatches = det.mismatches
        triage: Counter[TriageOutcome] = Counter()
        candidate_ids = {e.client_order_id for e in det.missing_candidates}
        for cid in [c for c in self._misses if c not in candidate_ids]:
            del self._misses[cid]
        budget = self.config.triage_query_budget
        threshold = self.config.triage_miss_threshold
        findings: list[TriageFinding] = []
        for e in sorted(det.missing_candidates, key=_candidate_order):
            cid = e.client_order_id
            if port is None or self.config.triage_query_budget == 0:
                mismatches.append(_missing(e, misses=None))
                continue
            if self._misses.get(cid, 0) >= threshold:
                mismatches.append(_missing(e, misses=self._misses[cid]))
                continue
            if budget == 0:
                triage[TriageOutcome.DEFERRED] += 1
                continue
            budget -= 1
            outcome, found = await self._triage_one(e, port, now_ms)
            triage[outcome] += 1
            current = self.observed.get_order(cid)
            findings.append(
                TriageFinding(
                    cid,
                    outcome,
                    current.status if current is not None else None,
                    current.update_ts_ms if current is not None else None,
                )
            )
            if found is not None:
                mismatches.append(found)
        mismatches.sort(key=_mismatch_order)
        new, cleared = self.incidents.update(mismatches)
        return ReconcileResult(mismatches, new, cleared, triage, det.foreign_open_orders, findings)

    async def _triage_one(
        self, e: ExpectedOrder, port: OrderQuery, now_ms: int
    ) -> tuple[TriageOutcome, Mismatch | None]:
        cid = e.client_order_id
        try:
            found = await port.query_order(e.symbol, cid, is_algo=e.is_algo)
        except ExchangeError:
            return TriageOutcome.ERROR, None
        if found is None:
            misses = self._misses.get(cid, 0) + 1
            self._misses[cid] = misses
            if misses >= self.config.triage_miss_threshold:
                return TriageOutcome.NOT_FOUND, _missing(e, misses=misses)
            return TriageOutcome.NOT_FOUND, None
        self._misses.pop(cid, None)
        if found.seen_ts_ms == 0:
            found.seen_ts_ms = now_ms
        # A query is a read sent at seen_ts_ms: it outranks an older snapshot that
        # missed the order.
        self.observed.apply_order(found, read_sent_ts_ms=found.seen_ts_ms)
        current = self.observed.get_order(cid) or found
        if current.status in OPEN_STATUSES:
            return TriageOutcome.FOUND_OPEN, None
        if current.status is _FILLED:
            return TriageOutcome.FOUND_FILLED, None
        # Ended without a fill the bot did not ask for: a missed stream event. The
        # observed store has adopted it, so the ordinary rule (and its grace period)
        # decides from now on -- the same verdict here and in every later run.
        verdict = self._check_expected(e, current, now_ms, self.config.order_grace_ms)
        return TriageOutcome.FOUND_ENDED, verdict if isinstance(verdict, Mismatch) else None


def _unexpected(o: ObservedOrder) -> Mismatch:
    return Mismatch(
        type=MismatchType.ORDER_EXISTS_UNEXPECTED,
        symbol=o.symbol,
        client_order_id=o.client_order_id,
        observed_status=o.status.value,
        observed_qty=o.qty,
        is_algo=o.is_algo,
    )


def _divergence(e: ExpectedOrder, o: ObservedOrder) -> Mismatch:
    expected_status = "CANCEL_REQUESTED" if e.cancel_requested else e.status.value
    return Mismatch(
        type=MismatchType.ORDER_STATUS_DIVERGENCE,
        symbol=e.symbol,
        client_order_id=e.client_order_id,
        expected_status=expected_status,
        observed_status=o.status.value,
        expected_qty=e.qty,
        observed_qty=o.qty,
        is_algo=o.is_algo,
    )


def _missing(e: ExpectedOrder, *, misses: int | None) -> Mismatch:
    details = {} if misses is None else {"triage_misses": misses}
    return Mismatch(
        type=MismatchType.ORDER_MISSING_ON_EXCHANGE,
        symbol=e.symbol,
        client_order_id=e.client_order_id,
        expected_status=e.status.value,
        expected_qty=e.qty,
        is_algo=e.is_algo,
        details=details,
    )


def _candidate_order(e: ExpectedOrder) -> tuple[int, str]:
    return (e.created_ts_ms, e.client_order_id)


def _mismatch_order(m: Mismatch) -> tuple[str, str, str, str]:
    side: PositionSide | None = m.position_side
    return (m.type.value, m.symbol, m.client_order_id or "", side.value if side else "")
