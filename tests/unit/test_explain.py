"""grinder.reconcile.explain: every gate's verdict, and the same first block as the executor."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from grinder.budget.ledger import BudgetState, RunBudget, utc_day
from grinder.budget.tracker import BudgetTracker
from grinder.exchange.fake import FakePort
from grinder.reconcile.actions import RunContext
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.explain import HOW_TO_OPEN, Outcome, Verdict, explain
from grinder.reconcile.labels import BlockReason
from grinder.reconcile.routing import ActionKind
from grinder.remediation.executor import RemediationExecutor

NOW = 1_704_110_400_000  # 2024-01-01 12:00 UTC
OURS = "grinder_d_BTCUSDT_1_1704067200_1"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
ORDER_IDS = (
    OURS,
    "grinder_d_ETHUSDT_1_1704067200_7",
    "grinder_x_BTCUSDT_1_1704067200_1",  # another strategy
    "web_8f3a2c1d",  # manual
    "autoclose-1704067200",  # liquidation
    "",
    None,
)


def executor(
    *,
    env: dict[str, str] | None = None,
    armed: bool = True,
    leader: bool = True,
    whitelist: list[str] | None = None,
    expected_age: float = 0.0,
    **cfg: Any,
) -> RemediationExecutor:
    base: dict[str, Any] = {
        "action": RemediationAction.FLATTEN,
        "dry_run": False,
        "allow_active_remediation": True,
        "symbol_whitelist": ["BTCUSDT"],
    }
    base.update(cfg)
    return RemediationExecutor(
        config=ReconcileConfig(**base),
        port=FakePort(),
        armed=armed,
        symbol_whitelist=whitelist,
        is_leader=lambda: leader,
        env={"ALLOW_MAINNET_TRADE": "1"} if env is None else env,
        clock=lambda: NOW,
        expected_heartbeat_age=lambda: expected_age,
    )


def ctx(anchor: int | None = None) -> RunContext:
    return RunContext(run_id="t", started_ms=NOW, live_anchor_ms=anchor, dry_anchor_ms=anchor)


def test_every_gate_passes_live_and_the_outcome_is_execute() -> None:
    ex = executor()
    exp = explain(ex, ActionKind.CANCEL, "BTCUSDT", OURS, Decimal(0), ctx())
    assert exp.first_block is None
    assert exp.outcome is Outcome.EXECUTE
    assert [c.gate for c in exp.checks] == [
        "0",
        "O",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "E",
        "9",
        "limits",
        "budget",
    ]
    assert exp.checks[11].verdict is Verdict.NOT_APPLICABLE  # no notional for a cancel
    gate_e = exp.checks[10]
    assert (gate_e.name, gate_e.verdict) == ("expected state live", Verdict.PASS)
    assert gate_e.detail == "bot heartbeat 0.0 s ago <= expected_heartbeat_max_age_s 60 s"


def test_all_failing_gates_are_listed_and_the_first_is_the_block() -> None:
    ex = executor(action=RemediationAction.NONE, armed=False, env={}, symbol_whitelist=[])
    exp = explain(ex, ActionKind.CANCEL, "BTCUSDT", "web_1", Decimal(0), ctx())
    failing = [c.reason for c in exp.checks if c.verdict is Verdict.FAIL]
    assert failing == [
        BlockReason.ACTION_IS_NONE,
        BlockReason.NOT_ARMED,
        BlockReason.ENV_VAR_MISSING,
        BlockReason.WHITELIST_REQUIRED,
        BlockReason.NO_GRINDER_PREFIX,
    ]
    assert exp.first_block is BlockReason.ACTION_IS_NONE
    assert exp.outcome is Outcome.BLOCKED


def test_dry_run_skips_the_arming_gates_but_says_what_they_would_do_live() -> None:
    ex = executor(dry_run=True, armed=False, env={})
    exp = explain(ex, ActionKind.CANCEL, "BTCUSDT", OURS, Decimal(0), ctx())
    arming = {c.gate: c for c in exp.checks if c.gate in ("3", "4", "5")}
    assert all(c.verdict is Verdict.SKIPPED for c in arming.values())
    assert arming["4"].reason is BlockReason.NOT_ARMED
    assert "would block live: not_armed" in arming["4"].detail
    assert arming["3"].reason is None
    assert exp.outcome is Outcome.PLANNED


def test_flatten_without_a_price_and_over_the_limit() -> None:
    ex = executor(max_flatten_notional_usdt=Decimal("100"))
    no_price = explain(ex, ActionKind.FLATTEN, "BTCUSDT", None, None, ctx())
    assert no_price.first_block is BlockReason.PRICE_UNAVAILABLE
    too_big = explain(ex, ActionKind.FLATTEN, "BTCUSDT", None, Decimal("150"), ctx())
    assert too_big.first_block is BlockReason.NOTIONAL_EXCEEDS_LIMIT
    gate9 = next(c for c in too_big.checks if c.gate == "9")
    assert gate9.detail == "150 USDT > max_flatten_notional_usdt 100"
    gate8 = next(c for c in too_big.checks if c.gate == "8")
    assert gate8.verdict is Verdict.NOT_APPLICABLE


def test_cooldown_detail_says_how_long_is_left() -> None:
    ex = executor(cooldown_seconds=300.0)
    exp = explain(ex, ActionKind.CANCEL, "BTCUSDT", OURS, Decimal(0), ctx(NOW - 100_000))
    gate6 = next(c for c in exp.checks if c.gate == "6")
    assert gate6.verdict is Verdict.FAIL
    assert gate6.detail == "100.0 s since the last remediation (cooldown 300 s, 200.0 s left)"


def test_explain_changes_nothing() -> None:
    ex = executor()
    ex.budget.state = BudgetState(day="2023-12-31", calls_used_day=99)  # yesterday's
    context = ctx()
    before = (ex.budget.state, context.actions, set(context.symbols), context.budget.calls)
    explain(ex, ActionKind.CANCEL, "BTCUSDT", OURS, Decimal(0), context)
    assert (ex.budget.state, context.actions, set(context.symbols), context.budget.calls) == before


def test_gate_e_blocks_a_state_no_bot_wrote_or_keeps_writing_in_either_mode() -> None:
    for dry_run in (False, True):
        for kind, oid, notional in (
            (ActionKind.CANCEL, OURS, Decimal(0)),
            (ActionKind.FLATTEN, None, Decimal("10")),
        ):
            never = executor(expected_age=math.inf, dry_run=dry_run)
            exp = explain(never, kind, "BTCUSDT", oid, notional, ctx())
            assert exp.first_block is BlockReason.EXPECTED_STATE_STALE
            assert never.gate(kind, "BTCUSDT", oid, notional, ctx()) is exp.first_block
            gate_e = exp.first_blocking_check
            assert gate_e is not None
            assert gate_e.gate == "E"
            assert gate_e.detail.startswith("never written by a bot")
            stale = executor(expected_age=60.5, dry_run=dry_run)
            exp = explain(stale, kind, "BTCUSDT", oid, notional, ctx())
            assert exp.first_block is BlockReason.EXPECTED_STATE_STALE
            check = exp.first_blocking_check
            assert check is not None
            assert check.detail == (
                "bot heartbeat 60.5 s ago > expected_heartbeat_max_age_s 60 s: the bot "
                "stopped writing, its state is not trusted"
            )
            fresh = executor(expected_age=60.0, dry_run=dry_run)
            assert explain(fresh, kind, "BTCUSDT", oid, notional, ctx()).first_block is None


def test_gate_e_says_how_to_open_it() -> None:
    assert "heartbeat()" in HOW_TO_OPEN[BlockReason.EXPECTED_STATE_STALE]
    assert "docs/EXPECTED_STATE.md" in HOW_TO_OPEN[BlockReason.EXPECTED_STATE_STALE]


def test_every_block_reason_has_a_way_to_open_it() -> None:
    assert set(HOW_TO_OPEN) == set(BlockReason)


decimals = st.one_of(
    st.none(),
    st.sampled_from([Decimal("0"), Decimal("10"), Decimal("100"), Decimal("500"), Decimal("600")]),
    st.decimals(min_value=0, max_value=3000, places=2, allow_nan=False, allow_infinity=False),
)
boundaries_ms = st.sampled_from([0, 29_999, 30_000, 60_000, 300_000, 300_001])


@settings(max_examples=400, deadline=None)
@given(
    action=st.sampled_from(list(RemediationAction)),
    dry_run=st.booleans(),
    allow_active=st.booleans(),
    armed=st.booleans(),
    mainnet=st.sampled_from([None, "1", "0", "yes"]),
    leader=st.booleans(),
    cooldown=st.sampled_from([0.0, 30.0, 60.0, 300.0]),
    anchor_ago_ms=st.one_of(st.none(), boundaries_ms, st.integers(min_value=0, max_value=400_000)),
    require_whitelist=st.booleans(),
    config_whitelist=st.lists(st.sampled_from(SYMBOLS), max_size=2, unique=True),
    executor_whitelist=st.one_of(
        st.none(), st.lists(st.sampled_from(SYMBOLS), max_size=2, unique=True)
    ),
    allowlist=st.sampled_from([None, ["d"], ["d", "x"], ["x"]]),
    kind=st.sampled_from(list(ActionKind)),
    symbol=st.sampled_from(SYMBOLS),
    order_id=st.sampled_from(ORDER_IDS),
    notional=decimals,
    max_notional=st.sampled_from([Decimal("0"), Decimal("100"), Decimal("500")]),
    max_orders=st.integers(min_value=0, max_value=3),
    max_symbols=st.integers(min_value=0, max_value=3),
    run_actions=st.integers(min_value=0, max_value=3),
    run_symbols=st.lists(st.sampled_from(SYMBOLS), max_size=3, unique=True),
    run_calls=st.integers(min_value=0, max_value=3),
    run_notional=st.sampled_from([Decimal("0"), Decimal("400"), Decimal("500"), Decimal("990")]),
    max_calls_per_run=st.integers(min_value=0, max_value=4),
    max_calls_per_day=st.integers(min_value=0, max_value=5),
    day_calls=st.integers(min_value=0, max_value=5),
    day_notional=st.sampled_from([Decimal("0"), Decimal("4500"), Decimal("4800")]),
    yesterday=st.booleans(),
    expected_age=st.sampled_from([None, 0.0, 59.9, 60.0, 60.1, math.inf, math.nan]),
    max_age=st.sampled_from([1.0, 60.0, 300.0]),
)
def test_first_failing_gate_is_what_the_executor_returns(
    action: RemediationAction,
    dry_run: bool,
    allow_active: bool,
    armed: bool,
    mainnet: str | None,
    leader: bool,
    cooldown: float,
    anchor_ago_ms: int | None,
    require_whitelist: bool,
    config_whitelist: list[str],
    executor_whitelist: list[str] | None,
    allowlist: list[str] | None,
    kind: ActionKind,
    symbol: str,
    order_id: str | None,
    notional: Decimal | None,
    max_notional: Decimal,
    max_orders: int,
    max_symbols: int,
    run_actions: int,
    run_symbols: list[str],
    run_calls: int,
    run_notional: Decimal,
    max_calls_per_run: int,
    max_calls_per_day: int,
    day_calls: int,
    day_notional: Decimal,
    yesterday: bool,
    expected_age: float | None,
    max_age: float,
) -> None:
    config = ReconcileConfig(
        expected_heartbeat_max_age_s=max_age,
        action=action,
        dry_run=dry_run,
        allow_active_remediation=allow_active,
        cooldown_seconds=cooldown,
        require_whitelist=require_whitelist,
        symbol_whitelist=config_whitelist,
        strategy_allowlist=allowlist,
        max_flatten_notional_usdt=max_notional,
        max_orders_per_action=max_orders,
        max_symbols_per_action=max_symbols,
        max_calls_per_run=max_calls_per_run,
        max_calls_per_day=max_calls_per_day,
    )
    day = utc_day(NOW - 86_400_000) if yesterday else utc_day(NOW)
    budget = BudgetTracker(config=config, clock=lambda: NOW)
    budget.state = BudgetState(day=day, calls_used_day=day_calls, notional_used_day=day_notional)
    ex = RemediationExecutor(
        config=config,
        port=FakePort(),
        armed=armed,
        symbol_whitelist=executor_whitelist,
        budget=budget,
        is_leader=lambda: leader,
        env={} if mainnet is None else {"ALLOW_MAINNET_TRADE": mainnet},
        clock=lambda: NOW,
        expected_heartbeat_age=None if expected_age is None else (lambda: expected_age),
    )
    anchor = None if anchor_ago_ms is None else NOW - anchor_ago_ms
    context = RunContext(
        run_id="h",
        started_ms=NOW,
        live_anchor_ms=anchor,
        dry_anchor_ms=anchor,
        budget=RunBudget(calls=run_calls, notional=run_notional),
        dry_budget=RunBudget(calls=run_calls, notional=run_notional),
        actions=run_actions,
        symbols=set(run_symbols),
    )
    oid = order_id if kind is ActionKind.CANCEL else None
    exp = explain(ex, kind, symbol, oid, notional, context)
    assert exp.first_block == ex.gate(kind, symbol, oid, notional, context)
    failing = [c for c in exp.checks if c.verdict is Verdict.FAIL]
    assert all(c.reason is not None for c in failing)
    assert exp.outcome is (
        Outcome.BLOCKED if failing else (Outcome.PLANNED if dry_run else Outcome.EXECUTE)
    )
