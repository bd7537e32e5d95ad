"""ReconcileEngine detection, triage and incidents (CONTRACT §3)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grinder.exchange.fake import FakePort
from grinder.exchange.port import ExchangeError, TransientExchangeError
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.engine import IncidentTracker, ReconcileEngine, ReconcileResult
from grinder.reconcile.labels import TriageOutcome
from grinder.reconcile.types import (
    ExpectedOrder,
    Mismatch,
    MismatchType,
    ObservedOrder,
    ObservedPosition,
    OrderStatus,
    PositionSide,
    Side,
)
from grinder.state.expected import MemoryExpectedStore
from grinder.state.observed import ObservedStore

D = Decimal
BTC = "BTCUSDT"
ETH = "ETHUSDT"
GRACE = 5000
PGRACE = 3000
MT = MismatchType
BOTH, LONG, SHORT = PositionSide.BOTH, PositionSide.LONG, PositionSide.SHORT


def cid(n: int, symbol: str = BTC, strategy: str = "d") -> str:
    return f"grinder_{strategy}_{symbol}_1_1704067200_{n}"


class Rig:
    """An engine over fresh stores, with helpers that speak the bot's and exchange's language."""

    def __init__(self, step_sizes: dict[str, Decimal] | None = None, **cfg: object) -> None:
        self.config = ReconcileConfig(**cfg)  # type: ignore[arg-type]
        self.expected = MemoryExpectedStore()
        self.observed = ObservedStore()
        self.engine = ReconcileEngine(
            self.config, self.expected, self.observed, step_sizes=step_sizes
        )
        self.port = FakePort()

    # bot side
    def place(self, order_id: str, *, at: int = 0, symbol: str = BTC) -> None:
        self.expected.record_order(
            ExpectedOrder(
                client_order_id=order_id,
                symbol=symbol,
                side=Side.BUY,
                qty=D("1"),
                price=D("100"),
                created_ts_ms=at,
                updated_ts_ms=at,
            )
        )

    def intend(
        self, qty: str, *, at: int = 0, symbol: str = BTC, side: PositionSide = BOTH
    ) -> None:
        self.expected.set_position(symbol, D(qty), at, side)

    # exchange side
    def see(
        self,
        order_id: str,
        status: OrderStatus = OrderStatus.NEW,
        *,
        at: int = 0,
        symbol: str = BTC,
        created: int | None = None,
    ) -> ObservedOrder:
        order = observed_order(order_id, status, at=at, symbol=symbol, created=created)
        assert self.observed.apply_order(order)
        return order

    def see_position(
        self, qty: str, *, at: int = 0, symbol: str = BTC, side: PositionSide = BOTH
    ) -> None:
        self.observed.apply_position(
            ObservedPosition(
                symbol=symbol, qty=D(qty), position_side=side, update_ts_ms=at, seen_ts_ms=at
            )
        )

    def types(self, now: int) -> list[tuple[MismatchType, str | None]]:
        det = self.engine.detect(now)
        return sorted((m.type, m.client_order_id) for m in det.mismatches)


def observed_order(
    order_id: str,
    status: OrderStatus = OrderStatus.NEW,
    *,
    at: int = 0,
    symbol: str = BTC,
    created: int | None = None,
) -> ObservedOrder:
    filled = status is OrderStatus.FILLED
    return ObservedOrder(
        client_order_id=order_id,
        symbol=symbol,
        side=Side.BUY,
        status=status,
        qty=D("1"),
        executed_qty=D("1") if filled else D("0"),
        price=D("100"),
        created_ts_ms=at if created is None else created,
        update_ts_ms=at,
        seen_ts_ms=at,
    )


# =============================================================================================
# Stable labels and types
# =============================================================================================


def test_mismatch_type_values_are_the_contract_metric_labels() -> None:
    assert [t.value for t in MismatchType] == [
        "ORDER_MISSING_ON_EXCHANGE",
        "ORDER_EXISTS_UNEXPECTED",
        "ORDER_STATUS_DIVERGENCE",
        "POSITION_NONZERO_UNEXPECTED",
        "POSITION_QTY_DIVERGENCE",
    ]


def test_triage_outcome_values_are_stable() -> None:
    assert {o.value for o in TriageOutcome} == {
        "found_filled",
        "found_ended",
        "found_open",
        "not_found",
        "error",
        "deferred",
    }


def test_order_status_open_terminal_and_ended_without_fill() -> None:
    assert {s for s in OrderStatus if s.is_open} == {
        OrderStatus.NEW,
        OrderStatus.PARTIALLY_FILLED,
    }
    assert OrderStatus.FILLED.is_terminal
    assert not OrderStatus.FILLED.ended_without_fill
    for s in (
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.EXPIRED_IN_MATCH,
        OrderStatus.REJECTED,
    ):
        assert s.is_terminal
        assert s.ended_without_fill


def test_mismatch_key_uses_order_id_or_position_side() -> None:
    order = Mismatch(MT.ORDER_EXISTS_UNEXPECTED, BTC, client_order_id=cid(1))
    position = Mismatch(MT.POSITION_NONZERO_UNEXPECTED, BTC, position_side=SHORT)
    bare = Mismatch(MT.POSITION_NONZERO_UNEXPECTED, BTC)
    assert order.key == ("ORDER_EXISTS_UNEXPECTED", BTC, cid(1))
    assert position.key == ("POSITION_NONZERO_UNEXPECTED", BTC, "SHORT")
    assert bare.key == ("POSITION_NONZERO_UNEXPECTED", BTC, "BOTH")


def test_mismatch_as_dict_stringifies_decimals_and_omits_absent_fields() -> None:
    m = Mismatch(
        MT.POSITION_QTY_DIVERGENCE,
        BTC,
        position_side=LONG,
        expected_qty=D("1.5"),
        observed_qty=D("0"),
    )
    assert m.as_dict() == {
        "type": "POSITION_QTY_DIVERGENCE",
        "symbol": BTC,
        "position_side": "LONG",
        "expected_qty": "1.5",
        "observed_qty": "0",
    }


def test_mismatch_equality_ignores_details() -> None:
    a = Mismatch(MT.ORDER_MISSING_ON_EXCHANGE, BTC, client_order_id=cid(1), details={"x": 1})
    b = Mismatch(MT.ORDER_MISSING_ON_EXCHANGE, BTC, client_order_id=cid(1), details={"x": 2})
    assert a == b


# =============================================================================================
# Agreement: no mismatch when the two pictures agree
# =============================================================================================


def test_open_on_both_sides_is_no_mismatch_however_old() -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    rig.see(cid(1), at=0)
    det = rig.engine.detect(10**9)
    assert det.mismatches == []
    assert det.missing_candidates == []
    assert det.foreign_open_orders == 0


def test_partially_filled_on_exchange_while_bot_thinks_new_is_no_mismatch() -> None:
    rig = Rig()
    rig.place(cid(1))
    rig.see(cid(1), OrderStatus.PARTIALLY_FILLED)
    assert rig.types(10**9) == []


def test_empty_stores_detect_nothing() -> None:
    assert Rig().engine.detect(10**9).mismatches == []


# =============================================================================================
# ORDER_MISSING_ON_EXCHANGE and the order grace period
# =============================================================================================


def test_default_order_grace_is_5000_ms() -> None:
    assert Rig().config.order_grace_ms == GRACE


def test_expected_order_absent_within_grace_is_not_a_candidate() -> None:
    rig = Rig()
    rig.place(cid(1), at=1000)
    det = rig.engine.detect(1000 + GRACE - 1)
    assert det.missing_candidates == []
    assert det.mismatches == []


def test_expected_order_absent_once_grace_elapsed_is_a_triage_candidate() -> None:
    rig = Rig()
    rig.place(cid(1), at=1000)
    det = rig.engine.detect(1000 + GRACE)
    assert [e.client_order_id for e in det.missing_candidates] == [cid(1)]
    assert det.mismatches == []  # detect never reports missing by itself: triage decides


async def test_missing_without_port_is_reported_at_once() -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    res = await rig.engine.reconcile(GRACE)
    assert [(m.type, m.client_order_id) for m in res.mismatches] == [
        (MT.ORDER_MISSING_ON_EXCHANGE, cid(1))
    ]
    m = res.mismatches[0]
    assert (m.expected_status, m.expected_qty, m.observed_status) == ("NEW", D("1"), None)
    assert res.triage == Counter()


async def test_missing_within_grace_is_not_reported_even_without_triage() -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    res = await rig.engine.reconcile(GRACE - 1)
    assert res.mismatches == []


async def test_custom_order_grace_is_honoured() -> None:
    rig = Rig(order_grace_ms=100)
    rig.place(cid(1), at=0)
    assert (await rig.engine.reconcile(99)).mismatches == []
    res = await rig.engine.reconcile(100)
    assert [m.type for m in res.mismatches] == [MT.ORDER_MISSING_ON_EXCHANGE]


def test_cancel_requested_order_absent_from_exchange_is_not_missing() -> None:
    rig = Rig()
    rig.place(cid(1))
    rig.expected.mark_cancel_requested(cid(1), 100)
    det = rig.engine.detect(10**9)
    assert det.missing_candidates == []
    assert det.mismatches == []


def test_expected_open_order_found_filled_is_normal_progress() -> None:
    rig = Rig()
    rig.place(cid(1))
    rig.see(cid(1), OrderStatus.FILLED, at=100)
    det = rig.engine.detect(10**9)
    assert det.mismatches == []
    assert det.missing_candidates == []


# =============================================================================================
# ORDER_STATUS_DIVERGENCE
# =============================================================================================


def test_bot_cancel_requested_but_exchange_open_is_divergence_after_grace() -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    rig.see(cid(1), at=0)
    rig.expected.mark_cancel_requested(cid(1), 1000)
    assert rig.types(1000 + GRACE - 1) == []
    det = rig.engine.detect(1000 + GRACE)
    assert len(det.mismatches) == 1
    m = det.mismatches[0]
    assert m.type is MT.ORDER_STATUS_DIVERGENCE
    assert m.client_order_id == cid(1)
    assert m.expected_status == "CANCEL_REQUESTED"
    assert m.observed_status == "NEW"


def test_bot_cancel_requested_but_exchange_partially_filled_is_divergence() -> None:
    rig = Rig()
    rig.place(cid(1))
    rig.see(cid(1), OrderStatus.PARTIALLY_FILLED)
    rig.expected.mark_cancel_requested(cid(1), 0)
    det = rig.engine.detect(GRACE)
    assert [(m.type, m.observed_status) for m in det.mismatches] == [
        (MT.ORDER_STATUS_DIVERGENCE, "PARTIALLY_FILLED")
    ]


def test_bot_booked_filled_but_exchange_open_is_divergence() -> None:
    rig = Rig()
    rig.place(cid(1))
    rig.see(cid(1))
    rig.expected.mark_status(cid(1), OrderStatus.FILLED, 2000)
    assert rig.types(2000 + GRACE - 1) == []
    det = rig.engine.detect(2000 + GRACE)
    assert [(m.type, m.expected_status, m.observed_status) for m in det.mismatches] == [
        (MT.ORDER_STATUS_DIVERGENCE, "FILLED", "NEW")
    ]


@pytest.mark.parametrize("ended", [OrderStatus.CANCELED, OrderStatus.FILLED])
def test_bot_cancel_requested_and_exchange_ended_is_no_mismatch(ended: OrderStatus) -> None:
    rig = Rig()
    rig.place(cid(1))
    rig.see(cid(1), ended, at=500)
    rig.expected.mark_cancel_requested(cid(1), 400)
    assert rig.types(10**9) == []


@pytest.mark.parametrize(
    "status",
    [
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.EXPIRED_IN_MATCH,
        OrderStatus.REJECTED,
    ],
)
def test_bot_expects_open_but_exchange_ended_without_fill_is_divergence(
    status: OrderStatus,
) -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    rig.see(cid(1), status, at=1000)
    assert rig.types(1000 + GRACE - 1) == []
    det = rig.engine.detect(1000 + GRACE)
    assert len(det.mismatches) == 1
    m = det.mismatches[0]
    assert m.type is MT.ORDER_STATUS_DIVERGENCE
    assert (m.expected_status, m.observed_status) == ("NEW", status.value)
    assert det.missing_candidates == []


def test_divergence_grace_falls_back_to_seen_time_without_update_time() -> None:
    rig = Rig()
    rig.place(cid(1))
    rig.observed.apply_order(
        replace(observed_order(cid(1), OrderStatus.CANCELED), update_ts_ms=0, seen_ts_ms=3000)
    )
    assert rig.types(3000 + GRACE - 1) == []
    assert rig.types(3000 + GRACE) == [(MT.ORDER_STATUS_DIVERGENCE, cid(1))]


# =============================================================================================
# ORDER_EXISTS_UNEXPECTED and foreign orders
# =============================================================================================


def test_our_order_on_exchange_not_in_expected_is_unexpected_after_grace() -> None:
    rig = Rig()
    order = rig.see(cid(7), at=1000)
    assert rig.types(1000 + GRACE - 1) == []
    det = rig.engine.detect(1000 + GRACE)
    assert len(det.mismatches) == 1
    m = det.mismatches[0]
    assert (m.type, m.symbol, m.client_order_id) == (MT.ORDER_EXISTS_UNEXPECTED, BTC, cid(7))
    assert (m.observed_status, m.observed_qty) == ("NEW", order.qty)
    assert m.expected_status is None


def test_unexpected_grace_counts_from_creation_time() -> None:
    rig = Rig()
    rig.see(cid(7), at=9000, created=1000)
    assert rig.types(1000 + GRACE) == [(MT.ORDER_EXISTS_UNEXPECTED, cid(7))]


def test_unexpected_grace_falls_back_to_seen_time_without_creation_time() -> None:
    rig = Rig()
    rig.see(cid(7), at=2000, created=0)
    assert rig.types(2000 + GRACE - 1) == []
    assert rig.types(2000 + GRACE) == [(MT.ORDER_EXISTS_UNEXPECTED, cid(7))]


def test_unexpected_algo_order_is_flagged_as_algo() -> None:
    rig = Rig()
    rig.observed.apply_order(replace(observed_order(cid(7)), is_algo=True))
    (m,) = rig.engine.detect(GRACE).mismatches
    assert m.is_algo is True


def test_our_remediation_order_still_open_is_unexpected() -> None:
    rig = Rig()
    rid = "grinder_d_BTCUSDT_R_1704067200_1"
    rig.see(rid)
    assert rig.types(GRACE) == [(MT.ORDER_EXISTS_UNEXPECTED, rid)]


async def test_our_orphan_missed_by_one_snapshot_is_detected_once_it_reappears() -> None:
    rig = Rig()
    orphan = observed_order(cid(7), at=1000)
    rig.observed.apply_open_orders_snapshot([replace(orphan)], sent_ts_ms=2000)
    rig.observed.apply_open_orders_snapshot([], sent_ts_ms=3000)  # the exchange missed it once
    res = await rig.engine.reconcile(3000 + GRACE, rig.port)
    assert res.mismatches == []
    # listed again, unchanged (same exchange update time)
    rig.observed.apply_open_orders_snapshot([replace(orphan)], sent_ts_ms=4000)
    res = await rig.engine.reconcile(4000 + GRACE, rig.port)
    assert [(m.type, m.client_order_id) for m in res.mismatches] == [
        (MT.ORDER_EXISTS_UNEXPECTED, cid(7))
    ]
    assert [m.client_order_id for m in res.new_incidents] == [cid(7)]


@pytest.mark.parametrize(
    "foreign_id",
    [
        "autoclose-1704067200123456",
        "adl_autoclose",
        "adl_autoclose-123",
        "settlement_autoclose-1704067200123",
        "web_a1b2c3d4",
        "manual123",
        "",
        cid(9, strategy="x"),  # our prefix, another strategy
        "other_d_BTCUSDT_1_1704067200_1",
    ],
)
def test_foreign_open_orders_are_counted_never_mismatches(foreign_id: str) -> None:
    rig = Rig()
    rig.see(foreign_id)
    det = rig.engine.detect(10**9)
    assert det.mismatches == []
    assert det.foreign_open_orders == 1


async def test_foreign_count_reaches_reconcile_result() -> None:
    rig = Rig()
    rig.see("web_1")
    rig.see("autoclose-2")
    rig.see(cid(1))
    rig.place(cid(1))
    res = await rig.engine.reconcile(10**9)
    assert res.foreign_open_orders == 2
    assert res.mismatches == []


def test_strategy_allowlist_makes_other_strategy_ours() -> None:
    rig = Rig(strategy_allowlist=["d", "x"])
    rig.see(cid(9, strategy="x"))
    det = rig.engine.detect(GRACE)
    assert [m.type for m in det.mismatches] == [MT.ORDER_EXISTS_UNEXPECTED]
    assert det.foreign_open_orders == 0


def test_custom_prefix_decides_ownership() -> None:
    rig = Rig(client_order_id_prefix="bot2_")
    rig.see("bot2_d_BTCUSDT_1_1704067200_1")
    rig.see(cid(1))  # default prefix: foreign for this instance
    det = rig.engine.detect(GRACE)
    assert [m.client_order_id for m in det.mismatches] == ["bot2_d_BTCUSDT_1_1704067200_1"]
    assert det.foreign_open_orders == 1


def test_terminal_unexpected_order_is_not_a_mismatch() -> None:
    rig = Rig()
    rig.see(cid(7), OrderStatus.FILLED)
    rig.see(cid(8), OrderStatus.CANCELED)
    assert rig.engine.detect(10**9).mismatches == []


def test_config_change_at_run_time_takes_effect_on_next_detect() -> None:
    rig = Rig()
    rig.see(cid(9, strategy="x"))
    assert rig.engine.detect(GRACE).mismatches == []
    rig.config.strategy_allowlist = ["x"]
    assert [m.type for m in rig.engine.detect(GRACE).mismatches] == [MT.ORDER_EXISTS_UNEXPECTED]


# =============================================================================================
# Positions
# =============================================================================================


def test_default_position_grace_is_3000_ms() -> None:
    assert Rig().config.position_grace_ms == PGRACE


def test_position_for_symbol_bot_never_recorded_is_nonzero_unexpected_after_grace() -> None:
    rig = Rig()
    rig.see_position("0.5", at=1000)
    assert rig.engine.detect(1000 + PGRACE - 1).mismatches == []
    (m,) = rig.engine.detect(1000 + PGRACE).mismatches
    assert m.type is MT.POSITION_NONZERO_UNEXPECTED
    assert (m.symbol, m.position_side) == (BTC, BOTH)
    assert (m.expected_qty, m.observed_qty) == (D("0"), D("0.5"))


def test_position_where_bot_expects_flat_is_nonzero_unexpected() -> None:
    rig = Rig()
    rig.intend("0", at=0)
    rig.see_position("-2", at=0)
    assert [m.type for m in rig.engine.detect(PGRACE).mismatches] == [
        MT.POSITION_NONZERO_UNEXPECTED
    ]


def test_matching_positions_are_no_mismatch() -> None:
    rig = Rig()
    rig.intend("1.5")
    rig.see_position("1.5")
    rig.intend("0", symbol=ETH)
    rig.see_position("0", symbol=ETH)
    assert rig.engine.detect(10**9).mismatches == []


def test_qty_divergence_beyond_one_step_is_reported() -> None:
    rig = Rig(step_sizes={BTC: D("0.001")})
    rig.intend("1")
    rig.see_position("1.002")
    (m,) = rig.engine.detect(PGRACE).mismatches
    assert m.type is MT.POSITION_QTY_DIVERGENCE
    assert (m.expected_qty, m.observed_qty) == (D("1"), D("1.002"))


@pytest.mark.parametrize("observed", ["1.001", "0.999", "1.0005"])
def test_qty_difference_within_one_step_is_tolerated(observed: str) -> None:
    rig = Rig(step_sizes={BTC: D("0.001")})
    rig.intend("1")
    rig.see_position(observed)
    assert rig.engine.detect(10**9).mismatches == []


def test_qty_difference_without_known_step_size_is_reported() -> None:
    rig = Rig()
    rig.intend("1")
    rig.see_position("1.00000001")
    assert [m.type for m in rig.engine.detect(PGRACE).mismatches] == [MT.POSITION_QTY_DIVERGENCE]


def test_expected_nonzero_observed_absent_is_qty_divergence() -> None:
    rig = Rig(step_sizes={BTC: D("0.001")})
    rig.intend("1", at=0)
    (m,) = rig.engine.detect(PGRACE).mismatches
    assert m.type is MT.POSITION_QTY_DIVERGENCE
    assert (m.expected_qty, m.observed_qty) == (D("1"), D("0"))


def test_expected_nonzero_observed_zeroed_by_snapshot_is_qty_divergence() -> None:
    rig = Rig()
    rig.intend("1", at=0)
    rig.see_position("1", at=0)
    rig.observed.apply_positions_snapshot([], sent_ts_ms=1000)
    assert [m.type for m in rig.engine.detect(10**6).mismatches] == [MT.POSITION_QTY_DIVERGENCE]


def test_opposite_sign_position_is_qty_divergence() -> None:
    rig = Rig(step_sizes={BTC: D("0.001")})
    rig.intend("1")
    rig.see_position("-1")
    assert [m.type for m in rig.engine.detect(PGRACE).mismatches] == [MT.POSITION_QTY_DIVERGENCE]


def test_position_grace_restarts_when_bot_updates_expected() -> None:
    rig = Rig()
    rig.see_position("1", at=0)
    rig.intend("2", at=2000)
    assert rig.engine.detect(2000 + PGRACE - 1).mismatches == []
    assert [m.type for m in rig.engine.detect(2000 + PGRACE).mismatches] == [
        MT.POSITION_QTY_DIVERGENCE
    ]


def test_position_grace_restarts_when_observed_quantity_changes() -> None:
    rig = Rig()
    rig.intend("1", at=0)
    rig.see_position("2", at=0)
    rig.see_position("3", at=5000)
    assert rig.engine.detect(5000 + PGRACE - 1).mismatches == []
    assert len(rig.engine.detect(5000 + PGRACE).mismatches) == 1


def test_hedge_mode_long_and_short_are_independent() -> None:
    rig = Rig()
    rig.intend("1", side=LONG)
    rig.see_position("1", side=LONG)
    rig.see_position("-0.3", side=SHORT)
    det = rig.engine.detect(PGRACE)
    assert [(m.type, m.position_side, m.observed_qty) for m in det.mismatches] == [
        (MT.POSITION_NONZERO_UNEXPECTED, SHORT, D("-0.3"))
    ]


def test_hedge_long_expected_does_not_cover_one_way_both() -> None:
    rig = Rig()
    rig.intend("1", side=LONG)
    rig.see_position("1", side=BOTH)
    det = rig.engine.detect(PGRACE)
    assert sorted((m.type, m.position_side) for m in det.mismatches) == [
        (MT.POSITION_NONZERO_UNEXPECTED, BOTH),
        (MT.POSITION_QTY_DIVERGENCE, LONG),
    ]


def test_symbols_scope_excludes_positions_of_other_symbols() -> None:
    rig = Rig(symbols=[BTC])
    rig.see_position("1", symbol=ETH)
    rig.intend("2", symbol=ETH)
    rig.see_position("1", symbol=BTC)
    det = rig.engine.detect(PGRACE)
    assert [(m.type, m.symbol) for m in det.mismatches] == [(MT.POSITION_NONZERO_UNEXPECTED, BTC)]
    assert rig.engine.check_position((ETH, BOTH), PGRACE) is None


def test_empty_symbols_scope_covers_every_symbol() -> None:
    rig = Rig()
    rig.see_position("1", symbol=ETH)
    rig.see_position("1", symbol=BTC)
    assert sorted(m.symbol for m in rig.engine.detect(PGRACE).mismatches) == [BTC, ETH]


# =============================================================================================
# Incidents
# =============================================================================================


def test_incident_tracker_reports_new_once_and_clears_once() -> None:
    tracker = IncidentTracker()
    a = Mismatch(MT.ORDER_EXISTS_UNEXPECTED, BTC, client_order_id=cid(1))
    b = Mismatch(MT.POSITION_NONZERO_UNEXPECTED, ETH, position_side=BOTH)
    assert tracker.update([a]) == ([a], [])
    assert tracker.update([a, b]) == ([b], [])
    assert tracker.update([a, b]) == ([], [])
    assert tracker.update([b]) == ([], [a])
    assert tracker.update([]) == ([], [b])
    assert dict(tracker.active) == {}


def test_incident_with_changed_details_is_the_same_incident() -> None:
    tracker = IncidentTracker()
    first = Mismatch(MT.POSITION_QTY_DIVERGENCE, BTC, position_side=BOTH, observed_qty=D("1"))
    later = Mismatch(MT.POSITION_QTY_DIVERGENCE, BTC, position_side=BOTH, observed_qty=D("2"))
    tracker.update([first])
    assert tracker.update([later]) == ([], [])


async def test_persisting_mismatch_is_new_only_once_and_cleared_when_gone() -> None:
    rig = Rig()
    rig.see(cid(7), at=0)
    r1 = await rig.engine.reconcile(GRACE)
    r2 = await rig.engine.reconcile(GRACE + 1000)
    r3 = await rig.engine.reconcile(GRACE + 2000)
    assert [m.client_order_id for m in r1.new_incidents] == [cid(7)]
    assert [m.client_order_id for m in r2.mismatches] == [cid(7)]  # still stands
    assert r2.new_incidents == []
    assert r3.new_incidents == []
    rig.observed.apply_open_orders_snapshot([], sent_ts_ms=GRACE + 2500)
    r4 = await rig.engine.reconcile(GRACE + 3000)
    assert r4.mismatches == []
    assert r4.new_incidents == []
    assert [m.client_order_id for m in r4.cleared_incidents] == [cid(7)]
    r5 = await rig.engine.reconcile(GRACE + 4000)
    assert r5.cleared_incidents == []


async def test_reconcile_sorts_mismatches_deterministically() -> None:
    rig = Rig()
    rig.see_position("1", symbol=ETH)
    rig.see_position("1", symbol=BTC)
    rig.see(cid(2, ETH), symbol=ETH)
    rig.see(cid(1, BTC))
    rig.place(cid(3))
    res = await rig.engine.reconcile(10**6)
    assert [(m.type, m.symbol) for m in res.mismatches] == [
        (MT.ORDER_EXISTS_UNEXPECTED, BTC),
        (MT.ORDER_EXISTS_UNEXPECTED, ETH),
        (MT.ORDER_MISSING_ON_EXCHANGE, BTC),
        (MT.POSITION_NONZERO_UNEXPECTED, BTC),
        (MT.POSITION_NONZERO_UNEXPECTED, ETH),
    ]


# =============================================================================================
# Triage
# =============================================================================================


def query_calls(port: FakePort) -> list[str]:
    return [c.args["client_order_id"] for c in port.calls if c.method == "query_order"]


def assert_one_incident_that_stands(
    opened: ReconcileResult, later: ReconcileResult, kind: MismatchType
) -> None:
    """``opened`` started one incident of ``kind``; ``later`` still sees the mismatch as that
    same incident (nothing new, nothing cleared)."""
    assert [m.type for m in opened.new_incidents] == [kind]
    assert [m.type for m in later.mismatches] == [kind]
    assert later.new_incidents == []
    assert later.cleared_incidents == []


async def test_triage_found_filled_is_no_mismatch_and_observed_adopts_it() -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    rig.port.ended_orders[cid(1)] = observed_order(cid(1), OrderStatus.FILLED, at=3000)
    res = await rig.engine.reconcile(GRACE, rig.port)
    assert res.mismatches == []
    assert res.triage == Counter({TriageOutcome.FOUND_FILLED: 1})
    adopted = rig.observed.get_order(cid(1))
    assert adopted is not None
    assert adopted.status is OrderStatus.FILLED
    # adopted: the next cycle needs no query
    res2 = await rig.engine.reconcile(GRACE + 1000, rig.port)
    assert res2.mismatches == []
    assert query_calls(rig.port) == [cid(1)]


@pytest.mark.parametrize(
    "status", [OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED]
)
async def test_triage_found_ended_without_fill_is_divergence(status: OrderStatus) -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    rig.port.ended_orders[cid(1)] = observed_order(cid(1), status, at=100)
    # The exchange ended it at 100: past the grace period from then, it diverges.
    res = await rig.engine.reconcile(GRACE + 100, rig.port)
    assert res.triage == Counter({TriageOutcome.FOUND_ENDED: 1})
    assert [(m.type, m.expected_status, m.observed_status) for m in res.mismatches] == [
        (MT.ORDER_STATUS_DIVERGENCE, "NEW", status.value)
    ]
    adopted = rig.observed.get_order(cid(1))
    assert adopted is not None
    assert adopted.status is status


async def test_triage_found_canceled_divergence_persists_as_one_incident_old_cancel() -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    rig.port.ended_orders[cid(1)] = observed_order(cid(1), OrderStatus.CANCELED, at=100)
    r1 = await rig.engine.reconcile(GRACE + 1000, rig.port)
    r2 = await rig.engine.reconcile(GRACE + 2000, rig.port)
    assert_one_incident_that_stands(r1, r2, MT.ORDER_STATUS_DIVERGENCE)


async def test_triage_found_recently_canceled_waits_out_grace_then_one_incident() -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    rig.observed.apply_open_orders_snapshot([], sent_ts_ms=6000)
    rig.port.ended_orders[cid(1)] = observed_order(cid(1), OrderStatus.CANCELED, at=5500)
    r1 = await rig.engine.reconcile(6000, rig.port)
    r2 = await rig.engine.reconcile(7000, rig.port)
    r3 = await rig.engine.reconcile(11000, rig.port)
    r4 = await rig.engine.reconcile(12000, rig.port)
    # Canceled 500 ms before triage found it: the bot may still book it itself.
    assert r1.triage == Counter({TriageOutcome.FOUND_ENDED: 1})
    assert r1.mismatches == []
    assert r2.mismatches == []
    assert r2.triage == Counter()  # adopted: no second query
    assert_one_incident_that_stands(r3, r4, MT.ORDER_STATUS_DIVERGENCE)


async def test_triage_found_open_is_no_mismatch_and_observed_adopts_it() -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    rig.port.add_order(observed_order(cid(1), OrderStatus.NEW, at=0))
    res = await rig.engine.reconcile(GRACE, rig.port)
    assert res.mismatches == []
    assert res.triage == Counter({TriageOutcome.FOUND_OPEN: 1})
    assert cid(1) in set(rig.observed.open_order_ids())
    adopted = rig.observed.get_order(cid(1))
    assert adopted is not None
    assert adopted.seen_ts_ms > 0


async def test_triage_found_open_after_a_snapshot_missed_it_is_adopted_once() -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    listed = observed_order(cid(1), at=1000)
    rig.observed.apply_open_orders_snapshot([replace(listed)], sent_ts_ms=2000)
    rig.observed.apply_open_orders_snapshot([], sent_ts_ms=3000)  # missed by this one
    rig.port.add_order(replace(listed, seen_ts_ms=0))
    r1 = await rig.engine.reconcile(3000 + GRACE, rig.port)
    assert r1.triage == Counter({TriageOutcome.FOUND_OPEN: 1})
    assert r1.mismatches == []
    assert cid(1) in set(rig.observed.open_order_ids())
    # adopted: the next cycle agrees without asking the exchange again
    r2 = await rig.engine.reconcile(4000 + GRACE, rig.port)
    assert r2.triage == Counter()
    assert r2.mismatches == []
    assert query_calls(rig.port) == [cid(1)]


async def test_triage_not_found_becomes_missing_only_after_threshold_misses() -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    r1 = await rig.engine.reconcile(GRACE, rig.port)
    r2 = await rig.engine.reconcile(GRACE + 1000, rig.port)
    assert r1.mismatches == []
    assert r2.mismatches == []
    assert r1.triage == Counter({TriageOutcome.NOT_FOUND: 1})
    r3 = await rig.engine.reconcile(GRACE + 2000, rig.port)
    assert r3.triage == Counter({TriageOutcome.NOT_FOUND: 1})
    (m,) = r3.mismatches
    assert m.type is MT.ORDER_MISSING_ON_EXCHANGE
    assert m.details == {"triage_misses": 3}
    assert [x.type for x in r3.new_incidents] == [MT.ORDER_MISSING_ON_EXCHANGE]
    # once established, it stands without spending more queries
    r4 = await rig.engine.reconcile(GRACE + 3000, rig.port)
    assert [x.type for x in r4.mismatches] == [MT.ORDER_MISSING_ON_EXCHANGE]
    assert r4.new_incidents == []
    assert r4.triage == Counter()
    assert len(query_calls(rig.port)) == 3


async def test_triage_miss_threshold_one_reports_on_first_miss() -> None:
    rig = Rig(triage_miss_threshold=1)
    rig.place(cid(1), at=0)
    res = await rig.engine.reconcile(GRACE, rig.port)
    assert [m.type for m in res.mismatches] == [MT.ORDER_MISSING_ON_EXCHANGE]


async def test_triage_misses_must_be_consecutive() -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    await rig.engine.reconcile(GRACE, rig.port)
    await rig.engine.reconcile(GRACE + 1, rig.port)
    # the order shows up (a snapshot): no longer a candidate, the miss streak resets
    rig.see(cid(1), at=GRACE + 2)
    assert (await rig.engine.reconcile(GRACE + 3, rig.port)).mismatches == []
    rig.observed.apply_open_orders_snapshot([], sent_ts_ms=GRACE + 4)
    for t in (GRACE + 5, GRACE + 6):
        assert (await rig.engine.reconcile(t, rig.port)).mismatches == []
    res = await rig.engine.reconcile(GRACE + 7, rig.port)
    assert [m.type for m in res.mismatches] == [MT.ORDER_MISSING_ON_EXCHANGE]


async def test_triage_found_open_resets_miss_streak() -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    await rig.engine.reconcile(GRACE, rig.port)
    await rig.engine.reconcile(GRACE + 1, rig.port)
    rig.port.add_order(observed_order(cid(1), at=0))
    res = await rig.engine.reconcile(GRACE + 2, rig.port)
    assert res.triage == Counter({TriageOutcome.FOUND_OPEN: 1})
    # it vanishes again: three fresh misses are needed
    del rig.port.open_orders[cid(1)]
    rig.observed.apply_open_orders_snapshot([], sent_ts_ms=GRACE + 3)
    for t in (GRACE + 4, GRACE + 5):
        assert (await rig.engine.reconcile(t, rig.port)).mismatches == []
    assert [m.type for m in (await rig.engine.reconcile(GRACE + 6, rig.port)).mismatches] == [
        MT.ORDER_MISSING_ON_EXCHANGE
    ]


async def test_triage_budget_exhaustion_defers_remaining_candidates_oldest_first() -> None:
    rig = Rig(triage_query_budget=2)
    rig.place(cid(3), at=300)
    rig.place(cid(1), at=100)
    rig.place(cid(2), at=200)
    res = await rig.engine.reconcile(10**6, rig.port)
    assert query_calls(rig.port) == [cid(1), cid(2)]
    assert res.triage == Counter({TriageOutcome.NOT_FOUND: 2, TriageOutcome.DEFERRED: 1})
    assert res.mismatches == []


async def test_triage_budget_is_per_cycle() -> None:
    rig = Rig(triage_query_budget=1)
    rig.place(cid(1), at=100)
    rig.place(cid(2), at=200)
    rig.port.ended_orders[cid(1)] = observed_order(cid(1), OrderStatus.FILLED, at=150)
    r1 = await rig.engine.reconcile(10**6, rig.port)
    r2 = await rig.engine.reconcile(10**6 + 1, rig.port)
    assert r1.triage == Counter({TriageOutcome.FOUND_FILLED: 1, TriageOutcome.DEFERRED: 1})
    assert r2.triage == Counter({TriageOutcome.NOT_FOUND: 1})
    assert query_calls(rig.port) == [cid(1), cid(2)]


async def test_established_missing_orders_do_not_consume_triage_budget() -> None:
    rig = Rig(triage_query_budget=1, triage_miss_threshold=1)
    rig.place(cid(1), at=100)
    rig.place(cid(2), at=200)
    r1 = await rig.engine.reconcile(10**6, rig.port)
    assert [m.client_order_id for m in r1.mismatches] == [cid(1)]
    r2 = await rig.engine.reconcile(10**6 + 1, rig.port)
    assert sorted(m.client_order_id or "" for m in r2.mismatches) == [cid(1), cid(2)]
    assert query_calls(rig.port) == [cid(1), cid(2)]


@pytest.mark.parametrize(
    "error",
    [
        ExchangeError("Internal error", code=-1000),
        TransientExchangeError("timeout", http_status=504),
    ],
)
async def test_triage_exchange_error_is_error_outcome_and_no_mismatch(
    error: ExchangeError,
) -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    rig.port.fail_always["query_order"] = error
    for t in range(4):
        res = await rig.engine.reconcile(GRACE + t, rig.port)
        assert res.mismatches == []
        assert res.triage == Counter({TriageOutcome.ERROR: 1})


async def test_triage_errors_do_not_count_as_misses() -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    await rig.engine.reconcile(GRACE, rig.port)  # miss 1
    rig.port.fail_once["query_order"] = ExchangeError("boom")
    await rig.engine.reconcile(GRACE + 1, rig.port)  # error
    assert (await rig.engine.reconcile(GRACE + 2, rig.port)).mismatches == []  # miss 2
    res = await rig.engine.reconcile(GRACE + 3, rig.port)  # miss 3
    assert [m.type for m in res.mismatches] == [MT.ORDER_MISSING_ON_EXCHANGE]


async def test_zero_triage_budget_reports_missing_immediately_without_queries() -> None:
    rig = Rig(triage_query_budget=0)
    rig.place(cid(1), at=0)
    res = await rig.engine.reconcile(GRACE, rig.port)
    assert [m.type for m in res.mismatches] == [MT.ORDER_MISSING_ON_EXCHANGE]
    assert res.triage == Counter()
    assert rig.port.calls == []


async def test_triage_never_queries_orders_within_grace_or_present() -> None:
    rig = Rig()
    rig.place(cid(1), at=GRACE)  # too young
    rig.place(cid(2), at=0)
    rig.see(cid(2), at=0)  # present
    res = await rig.engine.reconcile(GRACE + 10, rig.port)
    assert res.mismatches == []
    assert rig.port.calls == []


async def test_triage_queries_with_symbol_and_client_order_id() -> None:
    rig = Rig()
    rig.place(cid(1, ETH), at=0, symbol=ETH)
    await rig.engine.reconcile(GRACE, rig.port)
    (call,) = rig.port.calls
    assert call.method == "query_order"
    assert (call.args["symbol"], call.args["client_order_id"]) == (ETH, cid(1, ETH))
    assert call.args.get("is_algo", False) is False
    assert call.is_write is False


async def test_triage_queries_algo_orders_on_the_algo_endpoint() -> None:
    rig = Rig()
    rig.expected.record_order(
        ExpectedOrder(
            client_order_id=cid(1),
            symbol=BTC,
            side=Side.SELL,
            qty=D("1"),
            order_type="STOP_MARKET",
            is_algo=True,
        )
    )
    await rig.engine.reconcile(GRACE, rig.port)
    (call,) = rig.port.calls
    assert call.args["is_algo"] is True


# =============================================================================================
# Incremental re-checks agree with detect()
# =============================================================================================


def detect_vs_checks(rig: Rig, now: int) -> tuple[object, object]:
    det = rig.engine.detect(now)
    ids = {e.client_order_id for e in rig.expected.orders()} | {
        o.client_order_id for o in rig.observed
    }
    keys = {p.key for p in rig.expected.positions()} | {p.key for p in rig.observed.positions()}
    mismatches: list[Mismatch] = []
    candidates: set[str] = set()
    for order_id in ids:
        found = rig.engine.check_order(order_id, now)
        if isinstance(found, Mismatch):
            mismatches.append(found)
        elif found is not None:
            candidates.add(found.client_order_id)
    for key in keys:
        m = rig.engine.check_position(key, now)
        if m is not None:
            mismatches.append(m)
    got = (sorted(m.key for m in mismatches), candidates)
    want = (
        sorted(m.key for m in det.mismatches),
        {e.client_order_id for e in det.missing_candidates},
    )
    return got, want


def test_check_order_and_check_position_agree_with_detect_on_a_mixed_scene() -> None:
    rig = Rig(step_sizes={BTC: D("0.001")}, symbols=[BTC, ETH])
    rig.place(cid(1), at=0)  # missing candidate
    rig.place(cid(2), at=0)
    rig.see(cid(2), OrderStatus.CANCELED, at=0)  # divergence
    rig.place(cid(3), at=0)
    rig.see(cid(3), at=0)
    rig.expected.mark_cancel_requested(cid(3), 0)  # divergence (cancel requested)
    rig.see(cid(4), at=0)  # unexpected
    rig.see("web_x", at=0)  # foreign
    rig.place(cid(5), at=0)
    rig.see(cid(5), OrderStatus.FILLED, at=0)  # agrees
    rig.see_position("1", symbol=ETH)  # nonzero unexpected
    rig.intend("1")
    rig.see_position("2")  # qty divergence
    rig.see_position("1", symbol="XRPUSDT")  # out of scope
    got, want = detect_vs_checks(rig, 10**6)
    assert got == want
    mismatch_keys, candidates = want  # type: ignore[misc]
    assert candidates == {cid(1)}
    assert len(mismatch_keys) == 5  # type: ignore[arg-type]


def test_check_order_unknown_id_is_none() -> None:
    assert Rig().engine.check_order(cid(99), 10**6) is None


def test_check_order_returns_candidate_for_missing_expected_order() -> None:
    rig = Rig()
    rig.place(cid(1), at=0)
    assert rig.engine.check_order(cid(1), GRACE - 1) is None
    found = rig.engine.check_order(cid(1), GRACE)
    assert isinstance(found, ExpectedOrder)
    assert found.client_order_id == cid(1)


def test_check_order_foreign_is_none_ours_is_unexpected() -> None:
    rig = Rig()
    rig.see("web_1")
    rig.see(cid(2))
    assert rig.engine.check_order("web_1", GRACE) is None
    m = rig.engine.check_order(cid(2), GRACE)
    assert isinstance(m, Mismatch)
    assert m.type is MT.ORDER_EXISTS_UNEXPECTED


def test_check_position_respects_grace_and_hedge_side() -> None:
    rig = Rig()
    rig.see_position("1", side=SHORT, at=1000)
    assert rig.engine.check_position((BTC, SHORT), 1000 + PGRACE - 1) is None
    m = rig.engine.check_position((BTC, SHORT), 1000 + PGRACE)
    assert m is not None
    assert (m.type, m.position_side) == (MT.POSITION_NONZERO_UNEXPECTED, SHORT)
    assert rig.engine.check_position((BTC, LONG), 10**6) is None


_STATUSES = [
    None,
    OrderStatus.NEW,
    OrderStatus.PARTIALLY_FILLED,
    OrderStatus.FILLED,
    OrderStatus.CANCELED,
    OrderStatus.EXPIRED,
]


@st.composite
def scenes(draw: st.DrawFn) -> tuple[Rig, int]:
    symbols = draw(st.sampled_from([[], [BTC], [ETH, BTC]]))
    rig = Rig(step_sizes={BTC: D("0.1")}, symbols=symbols)
    times = st.integers(min_value=0, max_value=12_000)
    for n in range(draw(st.integers(min_value=0, max_value=6))):
        symbol = draw(st.sampled_from([BTC, ETH]))
        strategy = draw(st.sampled_from(["d", "d", "x"]))
        order_id = cid(n, symbol, strategy)
        bot = draw(st.sampled_from(["none", "open", "cancel", "filled"]))
        if bot != "none":
            rig.place(order_id, at=draw(times), symbol=symbol)
            if bot == "cancel":
                rig.expected.mark_cancel_requested(order_id, draw(times))
            elif bot == "filled":
                rig.expected.mark_status(order_id, OrderStatus.FILLED, draw(times))
        status = draw(st.sampled_from(_STATUSES))
        if status is not None:
            rig.see(order_id, status, at=draw(times), symbol=symbol)
    qtys = st.sampled_from(["0", "1", "1.05", "1.2", "-1"])
    for symbol in (BTC, ETH):
        for side in (BOTH, LONG, SHORT):
            if draw(st.booleans()):
                rig.intend(draw(qtys), at=draw(times), symbol=symbol, side=side)
            if draw(st.booleans()):
                rig.see_position(draw(qtys), at=draw(times), symbol=symbol, side=side)
    return rig, draw(st.integers(min_value=0, max_value=20_000))


@settings(max_examples=200)
@given(scene=scenes())
def test_property_incremental_checks_agree_with_detect(scene: tuple[Rig, int]) -> None:
    rig, now = scene
    got, want = detect_vs_checks(rig, now)
    assert got == want
