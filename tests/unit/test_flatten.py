"""What a flatten sends (pure): the bounded limit price, the order and its notional, and the
executor's rounds over a port that fills part of each order."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from grinder.budget.tracker import BudgetTracker
from grinder.exchange.fake import FakePort
from grinder.exchange.port import ExchangeError
from grinder.reconcile.actions import ActionResult
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.flatten import bounded_price, flatten_order
from grinder.reconcile.labels import AttemptOutcome, ResultStatus
from grinder.reconcile.routing import ActionKind, Routed
from grinder.reconcile.types import (
    Mismatch,
    MismatchType,
    ObservedPosition,
    PositionSide,
    Side,
)
from grinder.remediation.executor import RemediationExecutor

D = Decimal
TICK = D("0.10")


def test_a_sell_limit_is_rounded_up_and_a_buy_limit_down_toward_the_mark() -> None:
    assert bounded_price(Side.SELL, D("65000.00"), D("5"), TICK) == D("64967.50")
    assert bounded_price(Side.SELL, D("65000.03"), D("5"), TICK) == D("64967.60")
    assert bounded_price(Side.BUY, D("65000.03"), D("5"), TICK) == D("65032.50")
    assert bounded_price(Side.BUY, D("100"), D("10"), None) == D("100.1")
    assert bounded_price(Side.SELL, D("0.10"), D("1000"), TICK) == TICK  # never below a tick


@given(
    mark=st.decimals(min_value=D("0.5"), max_value=D("200000"), places=2),
    bps=st.decimals(min_value=D("0.1"), max_value=D("1000"), places=1),
    side=st.sampled_from([Side.SELL, Side.BUY]),
)
def test_the_limit_never_passes_the_bound(mark: Decimal, bps: Decimal, side: Side) -> None:
    limit = bounded_price(side, mark, bps, TICK)
    assert limit % TICK == 0
    if side is Side.SELL:
        assert limit >= mark * (1 - bps / 10_000) or limit == TICK
        assert limit <= max(mark, TICK) + TICK
    else:
        assert limit <= mark * (1 + bps / 10_000)
        assert limit >= mark - TICK


def test_a_bounded_order_is_valued_at_the_worse_of_mark_and_limit() -> None:
    sell = flatten_order(D("0.5"), D("0.001"), D("100"), max_slippage_bps=D("50"), tick=TICK)
    assert sell is not None
    assert (sell.side, sell.limit_price, sell.notional) == (Side.SELL, D("99.5"), D("50.0"))
    buy = flatten_order(D("-0.5"), D("0.001"), D("100"), max_slippage_bps=D("50"), tick=TICK)
    assert buy is not None
    assert (buy.side, buy.limit_price, buy.notional) == (Side.BUY, D("100.5"), D("50.25"))
    no_mark = flatten_order(D("0.5"), None, None, max_slippage_bps=D("50"), tick=TICK)
    assert no_mark is not None
    assert (no_mark.limit_price, no_mark.notional) == (None, None)  # gate 9 refuses it
    market = flatten_order(D("0.5"), None, D("100"))
    assert market is not None
    assert market.limit_price is None


# --- the executor's rounds ------------------------------------------------------------------


def run_flatten(port: FakePort, bps: Decimal | None = None) -> ActionResult:
    config = ReconcileConfig(
        action=RemediationAction.FLATTEN,
        dry_run=False,
        allow_active_remediation=True,
        symbol_whitelist=["BTCUSDT"],
        cooldown_seconds=0,
        flatten_max_slippage_bps=bps,
    )

    async def no_wait(_s: float) -> None:
        return None

    ex = RemediationExecutor(
        config=config,
        port=port,
        armed=True,
        budget=BudgetTracker(config=config),
        env={"ALLOW_MAINNET_TRADE": "1"},
        expected_heartbeat_age=lambda: 0.0,
        sleep=no_wait,
    )
    m = Mismatch(
        type=MismatchType.POSITION_NONZERO_UNEXPECTED,
        symbol="BTCUSDT",
        position_side=PositionSide.BOTH,
    )
    return asyncio.run(ex.execute(Routed(m, ActionKind.FLATTEN, 30), ex.begin_run()))


def port_with(qty: str, fills: list[str]) -> FakePort:
    port = FakePort()
    port.positions[("BTCUSDT", PositionSide.BOTH)] = ObservedPosition(
        symbol="BTCUSDT", position_side=PositionSide.BOTH, qty=D(qty)
    )
    port.mark_prices["BTCUSDT"] = D("100")
    port.step_sizes["BTCUSDT"] = D("0.001")
    port.tick_sizes["BTCUSDT"] = TICK
    port.fills = [D(f) for f in fills]
    return port


def sent(port: FakePort) -> list[dict[str, object]]:
    return [c.args for c in port.calls if c.is_write]


def test_the_rest_is_sent_again_for_what_the_position_holds_now() -> None:
    port = port_with("0.100", ["0.030", "0.050"])
    result = run_flatten(port, D("20"))
    assert result.status is ResultStatus.EXECUTED
    assert [a["qty"] for a in sent(port)] == [D("0.100"), D("0.070"), D("0.020")]
    assert all(a["price"] == D("99.8") for a in sent(port))
    assert result.qty == D("0.100")
    assert result.attempts == (AttemptOutcome.ACCEPTED,) * 3
    assert port.positions[("BTCUSDT", PositionSide.BOTH)].qty == 0


def test_at_most_three_requests_then_the_rest_is_left() -> None:
    port = port_with("0.100", ["0.010", "0.010", "0.010", "0.010"])
    result = run_flatten(port, D("20"))
    assert len(sent(port)) == 3
    assert result.qty == D("0.030")
    assert "filled 0.030 of 0.100" in (result.error or "")
    assert port.positions[("BTCUSDT", PositionSide.BOTH)].qty == D("0.070")


def test_a_market_flatten_filled_whole_is_one_request_as_before() -> None:
    port = port_with("0.100", [])
    result = run_flatten(port)
    assert [c.method for c in port.calls if c.is_write] == ["place_reduce_only_market"]
    assert (result.status, result.qty, result.error) == (ResultStatus.EXECUTED, D("0.1"), None)


def test_a_later_round_never_sends_more_than_the_unfilled_rest_or_the_reservation() -> None:
    order = flatten_order(D("1.000"), D("0.001"), D("100"))
    assert order is not None
    assert order.notional == D("100.000")
    # The position grew meanwhile (a resting bid of the bot filled): still only the rest.
    assert order.rest_qty(D("2.000"), D("0.001"), D("0.500"), D("100")) == D("0.500")
    # The price rose by half: the unspent 50 USDT buys a third of a unit.
    assert order.rest_qty(D("2.000"), D("0.001"), D("0.000"), D("150")) == D("0.666")
    assert order.rest_qty(D("2.000"), D("0.001"), D("0.500"), D("150")) == D("0.333")
    # All filled, gone, or on the other side: nothing.
    assert order.rest_qty(D("2.000"), D("0.001"), D("1.000"), D("100")) == 0
    assert order.rest_qty(D("0"), D("0.001"), D("0.200"), D("100")) == 0
    assert order.rest_qty(D("-1"), D("0.001"), D("0.200"), D("100")) == 0


def test_rounds_stop_at_the_first_orders_quantity_when_the_position_grows() -> None:
    port = port_with("1.000", ["0.500", "0.500", "1.000"])

    grown = [False]
    original = port._reduce

    def reduce_then_grow(*args: object, **kw: object) -> object:
        order = original(*args, **kw)  # type: ignore[arg-type]
        if not grown[0]:  # after the first request: the bot's bid fills, the long grows
            grown[0] = True
            port.positions[("BTCUSDT", PositionSide.BOTH)].qty += D("1.500")
        return order

    port._reduce = reduce_then_grow  # type: ignore[method-assign]
    result = run_flatten(port)
    sent_qty = [a["qty"] for a in sent(port)]
    assert sum(sent_qty) <= D("1.000") + D("0.500")  # requests: 1.000, then the 0.500 rest
    assert result.qty == D("1.000")  # never more than the first order filled in all


def test_a_position_closed_after_a_partial_fill_ends_the_action_executed_once() -> None:
    port = port_with("0.100", ["0.030"])
    original = port._reduce

    def reduce_then_close(*args: object, **kw: object) -> object:
        order = original(*args, **kw)  # type: ignore[arg-type]
        port.positions[("BTCUSDT", PositionSide.BOTH)].qty = D("0")  # closed by someone else
        return order

    port._reduce = reduce_then_close  # type: ignore[method-assign]
    result = run_flatten(port)
    assert result.status is ResultStatus.EXECUTED
    assert result.qty == D("0.030")
    assert len(sent(port)) == 1
    assert "then" not in (result.error or "")  # not reported as a later failure


def test_a_failed_read_after_a_partial_fill_says_it_once() -> None:
    port = port_with("0.100", ["0.030"])
    original = port._reduce

    def reduce_then_break(*args: object, **kw: object) -> object:
        order = original(*args, **kw)  # type: ignore[arg-type]
        port.fail_always["fetch_positions"] = ExchangeError("positions unreadable")
        return order

    port._reduce = reduce_then_break  # type: ignore[method-assign]
    result = run_flatten(port)
    assert result.status is ResultStatus.EXECUTED
    assert result.qty == D("0.030")
    assert (result.error or "").count("filled 0.030 of 0.100") == 1
