"""Routing: the CONTRACT §4 table, the deterministic sort, and one action type per run."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grinder.reconcile.labels import ActionLabel, SkipReason
from grinder.reconcile.routing import PRIORITY, ActionKind, plan, route_one, sort_key
from grinder.reconcile.types import Mismatch, MismatchType, OrderStatus, PositionSide

MT = MismatchType


def cid(symbol: str = "BTCUSDT", seq: int = 1) -> str:
    return f"grinder_d_{symbol}_1_1704067200_{seq}"


def unexpected(symbol: str = "BTCUSDT", seq: int = 1) -> Mismatch:
    return Mismatch(
        type=MT.ORDER_EXISTS_UNEXPECTED,
        symbol=symbol,
        client_order_id=cid(symbol, seq),
        observed_status="NEW",
        observed_qty=Decimal("0.01"),
    )


def divergence(status: str, symbol: str = "BTCUSDT", seq: int = 1) -> Mismatch:
    return Mismatch(
        type=MT.ORDER_STATUS_DIVERGENCE,
        symbol=symbol,
        client_order_id=cid(symbol, seq),
        expected_status="CANCEL_REQUESTED",
        observed_status=status,
    )


def missing(symbol: str = "BTCUSDT", seq: int = 1) -> Mismatch:
    return Mismatch(
        type=MT.ORDER_MISSING_ON_EXCHANGE,
        symbol=symbol,
        client_order_id=cid(symbol, seq),
        expected_status="NEW",
    )


def position(
    mtype: MismatchType = MT.POSITION_NONZERO_UNEXPECTED,
    symbol: str = "BTCUSDT",
    side: PositionSide = PositionSide.BOTH,
) -> Mismatch:
    return Mismatch(
        type=mtype,
        symbol=symbol,
        position_side=side,
        expected_qty=Decimal(0) if mtype is MT.POSITION_NONZERO_UNEXPECTED else Decimal(1),
        observed_qty=Decimal("0.5"),
    )


# --- the routing table ---------------------------------------------------------------------


def test_priority_table_matches_contract_section_4() -> None:
    assert PRIORITY == {
        MT.ORDER_EXISTS_UNEXPECTED: 10,
        MT.ORDER_STATUS_DIVERGENCE: 20,
        MT.ORDER_MISSING_ON_EXCHANGE: 90,
        MT.POSITION_QTY_DIVERGENCE: 95,
        MT.POSITION_NONZERO_UNEXPECTED: 100,
    }


def test_every_mismatch_type_has_a_priority() -> None:
    assert set(PRIORITY) == set(MismatchType)


def test_unexpected_order_routes_to_cancel() -> None:
    assert route_one(unexpected()) is ActionKind.CANCEL


def test_unexpected_position_routes_to_flatten() -> None:
    assert route_one(position()) is ActionKind.FLATTEN


@pytest.mark.parametrize("status", ["NEW", "PARTIALLY_FILLED"])
def test_status_divergence_routes_cancel_when_observed_still_open(status: str) -> None:
    assert route_one(divergence(status)) is ActionKind.CANCEL


@pytest.mark.parametrize(
    "status", ["FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH", "REJECTED", None]
)
def test_status_divergence_with_observed_not_open_is_skipped_not_cancelled(
    status: str | None,
) -> None:
    assert route_one(divergence(status)) is SkipReason.OBSERVED_NOT_OPEN  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "mismatch",
    [missing(), position(MT.POSITION_QTY_DIVERGENCE)],
    ids=["ORDER_MISSING_ON_EXCHANGE", "POSITION_QTY_DIVERGENCE"],
)
def test_alert_only_types_route_to_alert_only_skip(mismatch: Mismatch) -> None:
    assert route_one(mismatch) is SkipReason.ALERT_ONLY


def test_alert_only_types_are_skipped_in_plan_with_alert_only_reason() -> None:
    m1, m2 = missing(), position(MT.POSITION_QTY_DIVERGENCE)
    p = plan([m1, m2])
    assert p.kind is None
    assert p.candidates == []
    assert p.skipped == [(m1, SkipReason.ALERT_ONLY), (m2, SkipReason.ALERT_ONLY)]


def test_action_kind_labels_are_metric_action_values() -> None:
    assert ActionKind.CANCEL.label is ActionLabel.CANCEL_ALL
    assert ActionKind.FLATTEN.label is ActionLabel.FLATTEN
    assert ActionLabel.CANCEL_ALL.value == "cancel_all"
    assert ActionLabel.FLATTEN.value == "flatten"


# --- sort order ----------------------------------------------------------------------------


def test_candidates_sorted_by_priority_then_symbol_then_client_order_id() -> None:
    d_eth = divergence("NEW", "ETHUSDT", 1)
    u_eth = unexpected("ETHUSDT", 5)
    u_btc2 = unexpected("BTCUSDT", 2)
    u_btc1 = unexpected("BTCUSDT", 1)
    p = plan([d_eth, u_eth, u_btc2, u_btc1])
    assert p.kind is ActionKind.CANCEL
    assert [r.mismatch for r in p.candidates] == [u_btc1, u_btc2, u_eth, d_eth]
    assert [r.priority for r in p.candidates] == [10, 10, 10, 20]


def test_lower_priority_number_comes_first_even_when_symbol_sorts_later() -> None:
    d_aaa = divergence("NEW", "AAAUSDT", 1)
    u_zzz = unexpected("ZZZUSDT", 1)
    p = plan([d_aaa, u_zzz])
    assert [r.mismatch for r in p.candidates] == [u_zzz, d_aaa]


def test_flatten_candidates_sorted_by_symbol_then_position_side() -> None:
    p_eth = position(symbol="ETHUSDT")
    p_btc_short = position(symbol="BTCUSDT", side=PositionSide.SHORT)
    p_btc_long = position(symbol="BTCUSDT", side=PositionSide.LONG)
    p = plan([p_eth, p_btc_short, p_btc_long])
    assert p.kind is ActionKind.FLATTEN
    assert [r.mismatch for r in p.candidates] == [p_btc_long, p_btc_short, p_eth]


def test_sort_key_starts_with_priority_symbol_client_order_id() -> None:
    m = unexpected("ETHUSDT", 3)
    assert sort_key(m)[:3] == (10, "ETHUSDT", cid("ETHUSDT", 3))


# --- one action type per run ---------------------------------------------------------------


def test_cancel_wins_over_flatten_and_flatten_is_skipped_as_other_action() -> None:
    pos = position()
    order = unexpected()
    p = plan([pos, order])
    assert p.kind is ActionKind.CANCEL
    assert [r.mismatch for r in p.candidates] == [order]
    assert all(r.kind is ActionKind.CANCEL for r in p.candidates)
    assert (pos, SkipReason.OTHER_ACTION_THIS_RUN) in p.skipped


def test_status_divergence_cancel_also_wins_over_flatten() -> None:
    pos = position()
    div = divergence("PARTIALLY_FILLED")
    p = plan([pos, div])
    assert p.kind is ActionKind.CANCEL
    assert [r.mismatch for r in p.candidates] == [div]
    assert p.skipped == [(pos, SkipReason.OTHER_ACTION_THIS_RUN)]


def test_flatten_only_run_plans_flatten() -> None:
    pos = position()
    p = plan([pos, missing()])
    assert p.kind is ActionKind.FLATTEN
    assert [(r.mismatch, r.kind, r.priority) for r in p.candidates] == [
        (pos, ActionKind.FLATTEN, 100)
    ]


def test_non_open_divergence_does_not_make_the_run_a_cancel_run() -> None:
    pos = position()
    div = divergence("CANCELED")
    p = plan([div, pos])
    assert p.kind is ActionKind.FLATTEN
    assert [r.mismatch for r in p.candidates] == [pos]
    assert (div, SkipReason.OBSERVED_NOT_OPEN) in p.skipped


def test_empty_input_plans_nothing() -> None:
    p = plan([])
    assert p.kind is None
    assert p.candidates == []
    assert p.skipped == []


def test_every_mismatch_is_either_a_candidate_or_skipped_exactly_once() -> None:
    ms = [
        unexpected("BTCUSDT", 1),
        divergence("NEW", "BTCUSDT", 2),
        divergence("FILLED", "BTCUSDT", 3),
        missing("ETHUSDT", 4),
        position(),
        position(MT.POSITION_QTY_DIVERGENCE, "ETHUSDT"),
    ]
    p = plan(ms)
    seen = [r.mismatch for r in p.candidates] + [m for m, _ in p.skipped]
    assert sorted(seen, key=sort_key) == sorted(ms, key=sort_key)
    assert len(seen) == len(ms)


def test_plan_accepts_a_generator() -> None:
    ms = [unexpected("BTCUSDT", 2), unexpected("BTCUSDT", 1)]
    p = plan(m for m in ms)
    assert [r.mismatch for r in p.candidates] == [ms[1], ms[0]]


# --- property: permutation invariance ------------------------------------------------------

_SYMBOLS = st.sampled_from(["BTCUSDT", "ETHUSDT", "SOLUSDT", "BTCUSDT_250328"])
_STATUSES = st.sampled_from([s.value for s in OrderStatus])


@st.composite
def _mismatch(draw: st.DrawFn) -> Mismatch:
    mtype = draw(st.sampled_from(list(MismatchType)))
    symbol = draw(_SYMBOLS)
    if mtype in (MT.POSITION_NONZERO_UNEXPECTED, MT.POSITION_QTY_DIVERGENCE):
        return Mismatch(
            type=mtype,
            symbol=symbol,
            position_side=draw(st.sampled_from(list(PositionSide))),
            observed_qty=Decimal(draw(st.integers(-5, 5))),
        )
    return Mismatch(
        type=mtype,
        symbol=symbol,
        client_order_id=cid(symbol.split("_")[0], draw(st.integers(0, 30))),
        observed_status=draw(_STATUSES),
    )


def _unique_by_key(ms: list[Mismatch]) -> list[Mismatch]:
    # The engine reports at most one mismatch per incident key.
    out: dict[tuple[str, str, str], Mismatch] = {}
    for m in ms:
        out.setdefault(m.key, m)
    return list(out.values())


@settings(max_examples=150, deadline=None)
@given(ms=st.lists(_mismatch(), max_size=12).map(_unique_by_key), data=st.data())
def test_plan_is_identical_for_any_permutation_of_the_same_mismatches(
    ms: list[Mismatch], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(ms))
    a, b = plan(ms), plan(shuffled)
    assert a.kind == b.kind
    assert a.candidates == b.candidates
    assert a.skipped == b.skipped


@settings(max_examples=150, deadline=None)
@given(ms=st.lists(_mismatch(), max_size=12).map(_unique_by_key))
def test_plan_invariants_hold_for_any_input(ms: list[Mismatch]) -> None:
    p = plan(ms)
    # Sorted by (priority, symbol, client order id).
    keys = [(r.priority, r.mismatch.symbol, r.mismatch.client_order_id or "") for r in p.candidates]
    assert keys == sorted(keys)
    # One action type per run.
    assert {r.kind for r in p.candidates} <= ({p.kind} if p.kind else set())
    routed_kinds = {route_one(m) for m in ms} & set(ActionKind)
    if ActionKind.CANCEL in routed_kinds:
        assert p.kind is ActionKind.CANCEL
    elif ActionKind.FLATTEN in routed_kinds:
        assert p.kind is ActionKind.FLATTEN
    else:
        assert p.kind is None
    # Nothing routed to an action is lost, nothing alert-only becomes a candidate.
    assert len(p.candidates) + len(p.skipped) == len(ms)
    for m, reason in p.skipped:
        verdict = route_one(m)
        if isinstance(verdict, SkipReason):
            assert reason is verdict
        else:
            assert reason is SkipReason.OTHER_ACTION_THIS_RUN
    for r in p.candidates:
        assert r.priority == PRIORITY[r.mismatch.type]
        assert r.mismatch.type not in (MT.ORDER_MISSING_ON_EXCHANGE, MT.POSITION_QTY_DIVERGENCE)
