"""RemediationExecutor: the CONTRACT §5 gate chain in order, dry-run, live writes, rollback."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grinder.budget.ledger import BudgetState, utc_day
from grinder.budget.stores import FileBudgetStore
from grinder.budget.tracker import BudgetTracker
from grinder.clock import ManualClock
from grinder.exchange.binance.errors import UnknownOutcome
from grinder.exchange.fake import FakePort
from grinder.exchange.port import Authorize, CancelOutcome, ExchangeError, TransientExchangeError
from grinder.operator.decide import Lift, SetWord
from grinder.operator.stores import MemoryOperatorStore
from grinder.reconcile.actions import ActionResult
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.identity import REMEDIATION_SEQ_MAX, parse_client_order_id
from grinder.reconcile.labels import (
    WIRE_ONLY_BLOCK_REASONS,
    AttemptOutcome,
    BlockReason,
    FailReason,
    ResultStatus,
    SkipReason,
)
from grinder.reconcile.routing import ActionKind, Routed
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
from grinder.remediation.executor import DRY_RUN, LIVE, RemediationExecutor
from grinder.service.configured import settings_of
from grinder.service.operator import OperatorControl
from tests.support.controls import STAMP

RA = RemediationAction
BR = BlockReason
# 2024-01-01 12:00:00 UTC: mid-day, so +-minutes never crosses a UTC day boundary.
NOW = 1_704_110_400_000
OURS = "grinder_d_BTCUSDT_1_1704067200_1"
OURS_2 = "grinder_d_BTCUSDT_1_1704067200_2"
OURS_ETH = "grinder_d_ETHUSDT_1_1704067200_1"
OTHER_STRATEGY = "grinder_x_BTCUSDT_1_1704067200_1"
FOREIGN = "web_8f3a2c1d"
ALLOW = "ALLOW_MAINNET_TRADE"


def config(**overrides: Any) -> ReconcileConfig:
    """A live configuration in which every gate passes unless overridden."""
    base: dict[str, Any] = {
        "action": RA.FLATTEN,
        "dry_run": False,
        "allow_active_remediation": True,
    }
    base.update(overrides)
    return ReconcileConfig(**base)


def order(cid: str = OURS, symbol: str = "BTCUSDT") -> ObservedOrder:
    return ObservedOrder(
        client_order_id=cid,
        symbol=symbol,
        side=Side.BUY,
        status=OrderStatus.NEW,
        qty=Decimal("0.01"),
        price=Decimal("40000"),
        created_ts_ms=NOW - 60_000,
    )


def cancel_routed(
    cid: str = OURS, symbol: str = "BTCUSDT", *, is_algo: bool = False, priority: int = 10
) -> Routed:
    m = Mismatch(
        type=MismatchType.ORDER_EXISTS_UNEXPECTED,
        symbol=symbol,
        client_order_id=cid,
        observed_status="NEW",
        observed_qty=Decimal("0.01"),
        is_algo=is_algo,
    )
    return Routed(m, ActionKind.CANCEL, priority)


def flatten_routed(
    symbol: str = "BTCUSDT",
    side: PositionSide = PositionSide.BOTH,
    observed_qty: Decimal = Decimal("0.01"),
) -> Routed:
    m = Mismatch(
        type=MismatchType.POSITION_NONZERO_UNEXPECTED,
        symbol=symbol,
        position_side=side,
        expected_qty=Decimal(0),
        observed_qty=observed_qty,
    )
    return Routed(m, ActionKind.FLATTEN, 100)


class Rig:
    """An executor over a FakePort with every gate input reachable from the test."""

    def __init__(
        self,
        cfg: ReconcileConfig | None = None,
        *,
        whitelist: Sequence[str] | None = ("BTCUSDT",),
        armed: bool = True,
        env_value: str | None = "1",
        port: FakePort | None = None,
        budget_store: FileBudgetStore | None = None,
    ) -> None:
        self.clock = ManualClock(NOW)
        self.config = cfg if cfg is not None else config()
        self.port = port if port is not None else FakePort()
        self.env: dict[str, str] = {} if env_value is None else {ALLOW: env_value}
        self.leader = True
        self.expected_age = 0.0  # seconds since the bot's heartbeat (gate E)
        self.cid = OURS  # the client order id a ladder step cancels
        self.budget = BudgetTracker(config=self.config, store=budget_store, clock=self.clock)
        # Gate O's source: the operator state, in memory. Its words are not wired to this
        # rig's settings (the ladders set those directly); only whether it is known counts.
        self.operator_store = MemoryOperatorStore()
        self.operator = OperatorControl(
            self.operator_store,
            instance="rig",
            clock=self.clock,
            apply=lambda _in_force, _cause, _stamp: ([], None),
            check=lambda _in_force: None,
        )
        self.operator.start(settings_of(self.config, armed, False, {}))
        self.executor = RemediationExecutor(
            config=self.config,
            port=self.port,
            armed=armed,
            symbol_whitelist=None if whitelist is None else list(whitelist),
            budget=self.budget,
            is_leader=lambda: self.leader,
            env=self.env,
            clock=self.clock,
            sleep=self.pause,
            expected_heartbeat_age=lambda: self.expected_age,
            operator=self.operator,
        )
        self.pauses: list[float] = []

    def lose_operator_state(self) -> None:
        """A rollback stood, and its document is gone (a Redis restarted without persistence):
        the next read finds it lost."""
        self.operator.record(SetWord("armed", False, STAMP))
        self.operator_store.clear()

    def reassert_operator_state(self) -> None:
        """An operator re-asserts the lost document: nothing should stand."""
        self.operator.record(Lift("all", STAMP))

    async def pause(self, seconds: float) -> None:
        """The executor's pause between two attempts: recorded, not waited; what the
        world does meanwhile is ``meanwhile`` (an operator, the bot, the lease)."""
        self.pauses.append(seconds)
        if self.meanwhile is not None:
            self.meanwhile()

    meanwhile: Callable[[], None] | None = None

    def seed_day(self, calls: int = 0, notional: str = "0") -> None:
        self.budget.state = BudgetState(
            day=utc_day(self.clock()), calls_used_day=calls, notional_used_day=Decimal(notional)
        )

    def position(
        self,
        qty: str,
        symbol: str = "BTCUSDT",
        side: PositionSide = PositionSide.BOTH,
        *,
        price: str | None = "50000",
        step: str | None = "0.001",
    ) -> None:
        if price is not None:
            self.port.mark_prices[symbol] = Decimal(price)
        if step is not None:
            self.port.step_sizes[symbol] = Decimal(step)
        self.port.set_position(symbol, Decimal(qty), side)

    async def run(self, *routed: Routed) -> list[ActionResult]:
        ctx = self.executor.begin_run()
        return [await self.executor.execute(r, ctx) for r in routed]


def statuses(results: Sequence[ActionResult]) -> list[tuple[ResultStatus, str | None]]:
    return [(r.status, None if r.reason is None else str(r.reason)) for r in results]


# --- the runbook's constructor -------------------------------------------------------------


async def test_runbook_13_constructor_executes_cancel_when_env_var_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config_ = ReconcileConfig(
        enabled=True,
        action=RemediationAction.CANCEL_ALL,
        dry_run=False,
        allow_active_remediation=True,
        max_orders_per_action=1,
        max_symbols_per_action=1,
        cooldown_seconds=300,
    )
    futures_port = FakePort()
    futures_port.add_order(order())
    executor = RemediationExecutor(
        config=config_, port=futures_port, armed=True, symbol_whitelist=["BTCUSDT"]
    )
    assert executor.symbol_whitelist == ["BTCUSDT"]
    assert executor.armed is True
    monkeypatch.setenv(ALLOW, "1")
    # As written, the executor knows of no expected state a bot keeps: gate E blocks.
    result = await executor.execute(cancel_routed(), executor.begin_run())
    assert (result.status, result.reason) == (ResultStatus.BLOCKED, BR.EXPECTED_STATE_STALE)
    assert futures_port.write_calls == []
    # Given the bot's heartbeat (the service passes its expected source's), it executes.
    executor.expected_heartbeat_age = lambda: 1.0
    ctx = executor.begin_run()
    result = await executor.execute(cancel_routed(), ctx)
    assert result.status is ResultStatus.EXECUTED
    assert [c.method for c in futures_port.write_calls] == ["cancel_order"]
    # Without an env mapping the executor reads os.environ at the moment of the write.
    monkeypatch.delenv(ALLOW)
    futures_port.add_order(order(OURS_2))
    ctx = executor.begin_run()
    result = await executor.execute(cancel_routed(OURS_2), ctx)
    assert (result.status, result.reason) == (ResultStatus.BLOCKED, BR.ENV_VAR_MISSING)
    assert len(futures_port.write_calls) == 1


def test_executor_defaults_are_safe() -> None:
    ex = RemediationExecutor(config=ReconcileConfig(), port=FakePort())
    assert ex.armed is False
    assert ex.config.action is RA.NONE
    assert ex.config.dry_run is True
    assert ex.config.allow_active_remediation is False
    assert ex.symbol_whitelist == []
    assert ex.mode == DRY_RUN


def test_executor_whitelist_falls_back_to_config_whitelist() -> None:
    cfg = config(symbol_whitelist=["ETHUSDT"])
    ex = RemediationExecutor(config=cfg, port=FakePort(), armed=True)
    assert ex.symbol_whitelist == ["ETHUSDT"]
    ex.symbol_whitelist = ["BTCUSDT"]
    assert ex.symbol_whitelist == ["BTCUSDT"]


# --- gate order: a ladder that fixes one failing gate at a time -----------------------------


@dataclass
class Step:
    reason: BlockReason
    fix: Callable[[Rig], None]
    arming: bool = False  # gates 3-5: not evaluated in dry-run


def _set_cid(cid: str) -> Callable[[Rig], None]:
    def fix(rig: Rig) -> None:
        rig.cid = cid

    return fix


def _set_cfg(**kv: Any) -> Callable[[Rig], None]:
    def fix(rig: Rig) -> None:
        for k, v in kv.items():
            setattr(rig.config, k, v)

    return fix


def _set_whitelist(wl: list[str]) -> Callable[[Rig], None]:
    def fix(rig: Rig) -> None:
        rig.executor.symbol_whitelist = wl

    return fix


def _set(attr: str, value: Any) -> Callable[[Rig], None]:
    def fix(rig: Rig) -> None:
        setattr(rig.executor, attr, value)

    return fix


def _leader(rig: Rig) -> None:
    rig.leader = True


def _env(rig: Rig) -> None:
    rig.env[ALLOW] = "1"


def _price(rig: Rig) -> None:
    rig.port.mark_prices["BTCUSDT"] = Decimal("50000")


def _bot_alive(rig: Rig) -> None:
    rig.expected_age = 5.0


def _reassert(rig: Rig) -> None:
    rig.reassert_operator_state()


# Contract order; each step's fix makes that gate pass and exposes the next one.
_HEAD = [
    Step(BR.NOT_LEADER, _leader),
    Step(BR.OPERATOR_STATE_UNKNOWN, _reassert),
    Step(BR.ACTION_IS_NONE, _set_cfg(action=RA.CANCEL_ALL)),
]
_ARMING = [
    Step(BR.ALLOW_ACTIVE_REMEDIATION_FALSE, _set_cfg(allow_active_remediation=True), True),
    Step(BR.NOT_ARMED, _set("armed", True), True),
    Step(BR.ENV_VAR_MISSING, _env, True),
    # Exactly cooldown_seconds since the last execution: elapsed.
    Step(BR.COOLDOWN_NOT_ELAPSED, _set("last_remediation_ms", NOW - 60_000), True),
]
_WHITELIST = [
    Step(BR.WHITELIST_REQUIRED, _set_whitelist(["ETHUSDT"])),
    Step(BR.SYMBOL_NOT_IN_WHITELIST, _set_whitelist(["ETHUSDT", "BTCUSDT"])),
]
_LIMITS = [
    Step(BR.MAX_ORDERS_REACHED, _set_cfg(max_orders_per_action=1)),
    Step(BR.MAX_SYMBOLS_REACHED, _set_cfg(max_symbols_per_action=1)),
    Step(BR.MAX_CALLS_PER_RUN, _set_cfg(max_calls_per_run=1)),
]
CANCEL_LADDER = [
    *_HEAD,
    *_ARMING,
    *_WHITELIST,
    Step(BR.NO_GRINDER_PREFIX, _set_cid(OTHER_STRATEGY)),
    Step(BR.STRATEGY_NOT_ALLOWED, _set_cid(OURS)),
    Step(BR.EXPECTED_STATE_STALE, _bot_alive),
    *_LIMITS,
    Step(BR.MAX_CALLS_PER_DAY, _set_cfg(max_calls_per_day=101)),
    Step(BR.MAX_NOTIONAL_PER_DAY, _set_cfg(max_notional_per_day=Decimal("6000"))),
]
FLATTEN_LADDER = [
    *_HEAD,
    Step(BR.ACTION_NOT_PERMITTED, _set_cfg(action=RA.FLATTEN)),
    *_ARMING,
    *_WHITELIST,
    Step(BR.EXPECTED_STATE_STALE, _bot_alive),
    Step(BR.PRICE_UNAVAILABLE, _price),
    Step(BR.NOTIONAL_EXCEEDS_LIMIT, _set_cfg(max_flatten_notional_usdt=Decimal("500"))),
    *_LIMITS,
    Step(BR.MAX_NOTIONAL_PER_RUN, _set_cfg(max_notional_per_run=Decimal("1000"))),
    Step(BR.MAX_CALLS_PER_DAY, _set_cfg(max_calls_per_day=101)),
    Step(BR.MAX_NOTIONAL_PER_DAY, _set_cfg(max_notional_per_day=Decimal("5100"))),
]


def _all_failing_rig(kind: ActionKind, dry_run: bool) -> Rig:
    cfg = config(
        action=RA.NONE,
        dry_run=dry_run,
        allow_active_remediation=False,
        cooldown_seconds=60,
        require_whitelist=True,
        max_orders_per_action=0,
        max_symbols_per_action=0,
        max_calls_per_run=0,
        max_notional_per_run=Decimal("499"),  # flatten notional is 0.01 * 50000 = 500
        max_calls_per_day=100,
        max_notional_per_day=Decimal("5000"),
        max_flatten_notional_usdt=Decimal("100"),
    )
    rig = Rig(cfg, whitelist=[], armed=False, env_value=None)
    rig.leader = False
    rig.lose_operator_state()
    rig.expected_age = math.inf  # no bot ever wrote the expected state
    if not dry_run:
        rig.executor.last_remediation_ms = NOW - 1_000
    rig.cid = FOREIGN
    if kind is ActionKind.CANCEL:
        rig.port.add_order(order())
        rig.seed_day(calls=100, notional="6000")  # cancel notional is 0: 6000 > 5000 blocks
    else:
        rig.position("0.01", price=None)
        rig.seed_day(calls=100, notional="4600")  # 4600 + 500 > 5000 blocks
    return rig


@pytest.mark.parametrize("dry_run", [False, True], ids=["live", "dry_run"])
@pytest.mark.parametrize("kind", [ActionKind.CANCEL, ActionKind.FLATTEN])
async def test_gates_block_in_contract_order_with_first_failing_gate_as_reason(
    kind: ActionKind, dry_run: bool
) -> None:
    rig = _all_failing_rig(kind, dry_run)
    ladder = CANCEL_LADDER if kind is ActionKind.CANCEL else FLATTEN_LADDER
    seen: list[BlockReason] = []
    for step in ladder:
        if dry_run and step.arming:
            continue  # left failing on purpose: dry-run must not evaluate it
        routed = cancel_routed(rig.cid) if kind is ActionKind.CANCEL else flatten_routed()
        (result,) = await rig.run(routed)
        assert (result.status, result.reason) == (ResultStatus.BLOCKED, step.reason)
        assert rig.port.write_calls == []
        seen.append(step.reason)
        step.fix(rig)
    routed = cancel_routed(rig.cid) if kind is ActionKind.CANCEL else flatten_routed()
    (result,) = await rig.run(routed)
    if dry_run:
        assert result.status is ResultStatus.PLANNED
        assert result.mode == DRY_RUN
        assert rig.port.write_calls == []
    else:
        assert result.status is ResultStatus.EXECUTED
        assert result.mode == LIVE
        assert len(rig.port.write_calls) == 1
    assert seen == [s.reason for s in ladder if not (dry_run and s.arming)]


def test_gate_ladders_cover_every_block_reason() -> None:
    covered = {s.reason for s in CANCEL_LADDER} | {s.reason for s in FLATTEN_LADDER}
    assert covered == set(BlockReason) - WIRE_ONLY_BLOCK_REASONS


# --- gate E: the expected state must be kept by a bot ------------------------------------


@pytest.mark.parametrize("dry_run", [False, True], ids=["live", "dry_run"])
@pytest.mark.parametrize(
    "age", [math.inf, 60.001, 3600.0, math.nan], ids=["never", "just_stale", "stale", "nan"]
)
async def test_a_state_no_bot_keeps_blocks_cancel_and_flatten(dry_run: bool, age: float) -> None:
    rig = Rig(config(dry_run=dry_run, max_orders_per_action=5))
    rig.expected_age = age
    rig.port.add_order(order())
    rig.position("0.01")
    results = await rig.run(cancel_routed(), flatten_routed())
    assert statuses(results) == [(ResultStatus.BLOCKED, "expected_state_stale")] * 2
    # Nothing sent, and the flatten was blocked before the position and price were read.
    assert [c.method for c in rig.port.calls] == []
    assert OURS in rig.port.open_orders


@pytest.mark.parametrize("age", [0.0, 30.0, 60.0], ids=["just_now", "recent", "at_the_limit"])
async def test_a_fresh_heartbeat_lets_the_write_through(age: float) -> None:
    rig = Rig(config(max_orders_per_action=5))
    rig.expected_age = age
    rig.port.add_order(order())
    rig.position("0.01")
    results = await rig.run(cancel_routed(), flatten_routed())
    assert [r.status for r in results] == [ResultStatus.EXECUTED] * 2


async def test_dry_run_shows_the_block_live_mode_would_meet() -> None:
    """A plan is what live mode would do: a stale state plans nothing, a fresh one plans."""
    outcomes: dict[bool, list[tuple[ResultStatus, str | None]]] = {}
    for dry_run in (True, False):
        rig = Rig(config(dry_run=dry_run, cooldown_seconds=0))
        rig.port.add_order(order())
        rig.expected_age = 61.0
        (stale,) = await rig.run(cancel_routed())
        rig.expected_age = 1.0
        (fresh,) = await rig.run(cancel_routed())
        outcomes[dry_run] = statuses([stale, fresh])
    assert outcomes[True] == [
        (ResultStatus.BLOCKED, "expected_state_stale"),
        (ResultStatus.PLANNED, None),
    ]
    assert outcomes[False] == [
        (ResultStatus.BLOCKED, "expected_state_stale"),
        (ResultStatus.EXECUTED, None),
    ]


async def test_the_heartbeat_age_is_read_at_each_gate_and_the_limit_is_live() -> None:
    rig = Rig(config(cooldown_seconds=0, expected_heartbeat_max_age_s=10.0))
    for cid in (OURS, OURS_2):
        rig.port.add_order(order(cid))
    rig.expected_age = 11.0
    (r1,) = await rig.run(cancel_routed(OURS))
    assert (r1.status, r1.reason) == (ResultStatus.BLOCKED, BR.EXPECTED_STATE_STALE)
    rig.config.expected_heartbeat_max_age_s = 20.0  # grinder control set …, a reload
    (r2,) = await rig.run(cancel_routed(OURS))
    assert r2.status is ResultStatus.EXECUTED
    rig.expected_age = 25.0  # the bot stopped writing since
    (r3,) = await rig.run(cancel_routed(OURS_2))
    assert (r3.status, r3.reason) == (ResultStatus.BLOCKED, BR.EXPECTED_STATE_STALE)


async def test_an_executor_without_an_expected_source_blocks_like_never_written() -> None:
    rig = Rig()
    rig.port.add_order(order())
    rig.executor.expected_heartbeat_age = None
    (r,) = await rig.run(cancel_routed())
    assert (r.status, r.reason) == (ResultStatus.BLOCKED, BR.EXPECTED_STATE_STALE)


def test_expected_heartbeat_max_age_must_be_finite_and_positive() -> None:
    assert ReconcileConfig().expected_heartbeat_max_age_s == 60.0
    for bad in (0, 0.0, -1.0, math.inf, math.nan, "60", True):
        with pytest.raises(ValueError, match="expected_heartbeat_max_age_s"):
            ReconcileConfig(expected_heartbeat_max_age_s=bad)
    cfg = ReconcileConfig(expected_heartbeat_max_age_s=30)
    with pytest.raises(ValueError, match="expected_heartbeat_max_age_s"):
        cfg.expected_heartbeat_max_age_s = 0.0
    assert cfg.expected_heartbeat_max_age_s == 30.0


# --- each block reason in a realistic setting ---------------------------------------------


async def test_not_leader_blocks_even_in_dry_run() -> None:
    rig = Rig(config(dry_run=True))
    rig.leader = False
    (r,) = await rig.run(cancel_routed())
    assert (r.status, r.reason) == (ResultStatus.BLOCKED, BR.NOT_LEADER)


async def test_action_none_blocks_cancel_and_flatten() -> None:
    rig = Rig(config(action=RA.NONE))
    rig.port.add_order(order())
    rig.position("0.01")
    results = await rig.run(cancel_routed(), flatten_routed())
    assert statuses(results) == [
        (ResultStatus.BLOCKED, "action_is_none"),
        (ResultStatus.BLOCKED, "action_is_none"),
    ]
    assert rig.port.write_calls == []


async def test_cancel_all_permits_cancel_but_not_flatten() -> None:
    rig = Rig(config(action=RA.CANCEL_ALL))
    rig.port.add_order(order())
    rig.position("0.01")
    (c,) = await rig.run(cancel_routed())
    (f,) = await rig.run(flatten_routed())
    assert c.status is ResultStatus.EXECUTED
    assert (f.status, f.reason) == (ResultStatus.BLOCKED, BR.ACTION_NOT_PERMITTED)
    assert [w.method for w in rig.port.write_calls] == ["cancel_order"]


async def test_flatten_action_permits_cancel_too() -> None:
    rig = Rig(config(action=RA.FLATTEN))
    rig.port.add_order(order())
    (c,) = await rig.run(cancel_routed())
    assert c.status is ResultStatus.EXECUTED


@pytest.mark.parametrize(
    ("allow_active", "armed", "env_value", "reason"),
    [
        (False, True, "1", BR.ALLOW_ACTIVE_REMEDIATION_FALSE),
        (True, False, "1", BR.NOT_ARMED),
        (True, True, None, BR.ENV_VAR_MISSING),
        (True, True, "0", BR.ENV_VAR_MISSING),
        (True, True, "true", BR.ENV_VAR_MISSING),
        (True, True, "yes", BR.ENV_VAR_MISSING),
        (True, True, " 1", BR.ENV_VAR_MISSING),
        (False, False, None, BR.ALLOW_ACTIVE_REMEDIATION_FALSE),
        (True, False, None, BR.NOT_ARMED),
    ],
)
async def test_arming_gates_block_live_writes(
    allow_active: bool, armed: bool, env_value: str | None, reason: BlockReason
) -> None:
    rig = Rig(config(allow_active_remediation=allow_active), armed=armed, env_value=env_value)
    rig.port.add_order(order())
    (r,) = await rig.run(cancel_routed())
    assert (r.status, r.reason) == (ResultStatus.BLOCKED, reason)
    assert rig.port.write_calls == []
    assert OURS in rig.port.open_orders


async def test_env_var_present_in_env_mapping_lets_the_write_through() -> None:
    rig = Rig(env_value="1")
    rig.port.add_order(order())
    (r,) = await rig.run(cancel_routed())
    assert r.status is ResultStatus.EXECUTED


async def test_env_mapping_not_os_environ_is_consulted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW, "1")
    rig = Rig(env_value=None)  # env={} given explicitly
    rig.port.add_order(order())
    (r,) = await rig.run(cancel_routed())
    assert (r.status, r.reason) == (ResultStatus.BLOCKED, BR.ENV_VAR_MISSING)


async def test_live_cooldown_blocks_next_run_until_elapsed() -> None:
    rig = Rig(config(cooldown_seconds=300))
    for cid in (OURS, OURS_2):
        rig.port.add_order(order(cid))
    (r1,) = await rig.run(cancel_routed(OURS))
    assert r1.status is ResultStatus.EXECUTED
    assert rig.executor.last_remediation_ms == NOW
    rig.clock.set(NOW + 299_999)
    (r2,) = await rig.run(cancel_routed(OURS_2))
    assert (r2.status, r2.reason) == (ResultStatus.BLOCKED, BR.COOLDOWN_NOT_ELAPSED)
    rig.clock.set(NOW + 300_000)
    (r3,) = await rig.run(cancel_routed(OURS_2))
    assert r3.status is ResultStatus.EXECUTED
    assert len(rig.port.write_calls) == 2


async def test_cooldown_is_between_runs_so_one_run_may_execute_several_cancels() -> None:
    rig = Rig(config(max_orders_per_action=3, cooldown_seconds=300))
    cids = [f"grinder_d_BTCUSDT_1_1704067200_{i}" for i in range(1, 4)]
    for cid in cids:
        rig.port.add_order(order(cid))
    results = await rig.run(*(cancel_routed(c) for c in cids))
    assert [r.status for r in results] == [ResultStatus.EXECUTED] * 3


async def test_failed_write_does_not_start_the_cooldown() -> None:
    rig = Rig(config(cooldown_seconds=300))
    rig.port.add_order(order())
    rig.port.fail_once["cancel_order"] = ExchangeError("boom", code=-1000)
    (r1,) = await rig.run(cancel_routed())
    assert r1.status is ResultStatus.FAILED
    assert rig.executor.last_remediation_ms is None
    rig.clock.set(NOW + 1_000)
    (r2,) = await rig.run(cancel_routed())
    assert r2.status is ResultStatus.EXECUTED


async def test_a_write_failed_with_its_outcome_unknown_starts_the_cooldown() -> None:
    """A timed-out cancel, an unreadable answer to a new order: it may have been executed."""
    rig = Rig(config(cooldown_seconds=300))
    rig.port.add_order(order())
    rig.port.fail_always["cancel_order"] = UnknownOutcome("timed out", code=-1007)
    (r1,) = await rig.run(cancel_routed())
    assert r1.status is ResultStatus.FAILED
    assert r1.attempts == (AttemptOutcome.UNKNOWN,) * 3
    assert rig.executor.last_remediation_ms == NOW
    del rig.port.fail_always["cancel_order"]
    rig.clock.set(NOW + 1_000)
    (r2,) = await rig.run(cancel_routed())
    assert (r2.status, r2.reason) == (ResultStatus.BLOCKED, BR.COOLDOWN_NOT_ELAPSED)


@pytest.mark.parametrize(
    ("whitelist", "require", "reason"),
    [
        (["ETHUSDT"], True, BR.SYMBOL_NOT_IN_WHITELIST),
        (["ETHUSDT"], False, BR.SYMBOL_NOT_IN_WHITELIST),
        ([], True, BR.WHITELIST_REQUIRED),
        (["btcusdt"], True, BR.SYMBOL_NOT_IN_WHITELIST),
    ],
)
async def test_whitelist_gate_blocks(
    whitelist: list[str], require: bool, reason: BlockReason
) -> None:
    rig = Rig(config(require_whitelist=require), whitelist=whitelist)
    rig.port.add_order(order())
    (r,) = await rig.run(cancel_routed())
    assert (r.status, r.reason) == (ResultStatus.BLOCKED, reason)
    assert rig.port.write_calls == []


async def test_empty_whitelist_allows_any_symbol_when_not_required() -> None:
    rig = Rig(config(require_whitelist=False), whitelist=[])
    rig.port.add_order(order(OURS_ETH, "ETHUSDT"))
    (r,) = await rig.run(cancel_routed(OURS_ETH, "ETHUSDT"))
    assert r.status is ResultStatus.EXECUTED


@pytest.mark.parametrize(
    ("cid", "reason"),
    [
        (FOREIGN, BR.NO_GRINDER_PREFIX),
        ("autoclose-1704067200123", BR.NO_GRINDER_PREFIX),
        ("adl_autoclose", BR.NO_GRINDER_PREFIX),
        ("settlement_autoclose-1704067200", BR.NO_GRINDER_PREFIX),
        ("grinder_", BR.NO_GRINDER_PREFIX),
        ("GRINDER_d_BTCUSDT_1_1704067200_1", BR.NO_GRINDER_PREFIX),
        (OTHER_STRATEGY, BR.STRATEGY_NOT_ALLOWED),
    ],
)
async def test_cancel_never_touches_orders_that_are_not_ours(cid: str, reason: BlockReason) -> None:
    # Permissive everything else, even require_whitelist off: ownership cannot be turned off.
    rig = Rig(config(require_whitelist=False, strategy_allowlist=None), whitelist=[])
    rig.port.add_order(order(cid))
    (r,) = await rig.run(cancel_routed(cid))
    assert (r.status, r.reason) == (ResultStatus.BLOCKED, reason)
    assert rig.port.write_calls == []


async def test_cancel_of_allowlisted_other_strategy_is_executed() -> None:
    rig = Rig(config(strategy_allowlist=["d", "x"]))
    rig.port.add_order(order(OTHER_STRATEGY))
    (r,) = await rig.run(cancel_routed(OTHER_STRATEGY))
    assert r.status is ResultStatus.EXECUTED


async def test_flatten_blocked_when_notional_exceeds_limit() -> None:
    rig = Rig(config(max_flatten_notional_usdt=Decimal("499.99")))
    rig.position("0.01", price="50000")
    (r,) = await rig.run(flatten_routed())
    assert (r.status, r.reason) == (ResultStatus.BLOCKED, BR.NOTIONAL_EXCEEDS_LIMIT)
    assert r.notional == Decimal("500")
    assert rig.port.write_calls == []


async def test_flatten_at_exactly_the_notional_limit_is_executed() -> None:
    rig = Rig(config(max_flatten_notional_usdt=Decimal("500")))
    rig.position("0.01", price="50000")
    (r,) = await rig.run(flatten_routed())
    assert r.status is ResultStatus.EXECUTED


@pytest.mark.parametrize("price", [None, "0", "-1"])
async def test_flatten_blocked_when_mark_price_unavailable(price: str | None) -> None:
    rig = Rig()
    rig.position("0.01", price=price)
    (r,) = await rig.run(flatten_routed())
    assert (r.status, r.reason) == (ResultStatus.BLOCKED, BR.PRICE_UNAVAILABLE)
    assert rig.port.write_calls == []


async def test_max_orders_per_action_blocks_the_rest_of_the_run() -> None:
    rig = Rig(config(max_orders_per_action=1))
    for cid in (OURS, OURS_2):
        rig.port.add_order(order(cid))
    results = await rig.run(cancel_routed(OURS), cancel_routed(OURS_2))
    assert statuses(results) == [
        (ResultStatus.EXECUTED, None),
        (ResultStatus.BLOCKED, "max_orders_reached"),
    ]
    assert len(rig.port.write_calls) == 1


async def test_blocked_candidates_do_not_use_up_max_orders() -> None:
    rig = Rig(config(max_orders_per_action=1))
    rig.port.add_order(order(FOREIGN))
    rig.port.add_order(order(OURS))
    results = await rig.run(cancel_routed(FOREIGN), cancel_routed(OURS))
    assert statuses(results) == [
        (ResultStatus.BLOCKED, "no_grinder_prefix"),
        (ResultStatus.EXECUTED, None),
    ]


async def test_max_symbols_per_action_blocks_a_new_symbol_but_not_a_seen_one() -> None:
    rig = Rig(config(max_symbols_per_action=1), whitelist=["BTCUSDT", "ETHUSDT"])
    for o in (order(OURS), order(OURS_ETH, "ETHUSDT"), order(OURS_2)):
        rig.port.add_order(o)
    results = await rig.run(
        cancel_routed(OURS), cancel_routed(OURS_ETH, "ETHUSDT"), cancel_routed(OURS_2)
    )
    assert statuses(results) == [
        (ResultStatus.EXECUTED, None),
        (ResultStatus.BLOCKED, "max_symbols_reached"),
        (ResultStatus.EXECUTED, None),
    ]


async def test_per_run_limits_reset_on_the_next_run() -> None:
    rig = Rig(config(max_orders_per_action=1, cooldown_seconds=0))
    for cid in (OURS, OURS_2):
        rig.port.add_order(order(cid))
    (r1,) = await rig.run(cancel_routed(OURS))
    (r2,) = await rig.run(cancel_routed(OURS_2))
    assert [r1.status, r2.status] == [ResultStatus.EXECUTED, ResultStatus.EXECUTED]


async def test_max_calls_per_run_budget_blocks_second_call() -> None:
    rig = Rig(config(max_calls_per_run=1))
    for cid in (OURS, OURS_2):
        rig.port.add_order(order(cid))
    results = await rig.run(cancel_routed(OURS), cancel_routed(OURS_2))
    assert statuses(results)[1] == (ResultStatus.BLOCKED, "max_calls_per_run")


async def test_max_notional_per_run_budget_blocks_second_flatten() -> None:
    rig = Rig(config(max_notional_per_run=Decimal("800")), whitelist=["BTCUSDT", "ETHUSDT"])
    rig.position("0.01", "BTCUSDT", price="45000")
    rig.position("0.1", "ETHUSDT", price="4500")
    results = await rig.run(flatten_routed("BTCUSDT"), flatten_routed("ETHUSDT"))
    assert statuses(results) == [
        (ResultStatus.EXECUTED, None),
        (ResultStatus.BLOCKED, "max_notional_per_run"),
    ]
    assert rig.budget.state.notional_used_day == Decimal("450")


async def test_the_dry_run_preview_counts_what_was_really_spent_since_its_copy() -> None:
    """Spent for real after the preview's copy was made (live, or another instance): the
    preview blocks where live mode would."""
    rig = Rig(config(dry_run=True, max_calls_per_day=5, cooldown_seconds=0))
    rig.port.add_order(order())
    (r1,) = await rig.run(cancel_routed())
    assert r1.status is ResultStatus.PLANNED
    rig.seed_day(calls=5)  # the real budget, used up meanwhile
    rig.clock.set(NOW + 1_000)
    (r2,) = await rig.run(cancel_routed(OURS_2))
    assert (r2.status, r2.reason) == (ResultStatus.BLOCKED, BR.MAX_CALLS_PER_DAY)


async def test_max_calls_per_day_budget_blocks_when_day_is_used_up() -> None:
    rig = Rig(config(max_calls_per_day=5))
    rig.seed_day(calls=4)
    for cid in (OURS, OURS_2):
        rig.port.add_order(order(cid))
    results = await rig.run(cancel_routed(OURS), cancel_routed(OURS_2))
    assert statuses(results) == [
        (ResultStatus.EXECUTED, None),
        (ResultStatus.BLOCKED, "max_calls_per_day"),
    ]
    assert rig.budget.state.calls_used_day == 5


async def test_max_notional_per_day_budget_blocks_flatten() -> None:
    rig = Rig(config(max_notional_per_day=Decimal("5000")))
    rig.seed_day(notional="4500.01")
    rig.position("0.01", price="50000")
    (r,) = await rig.run(flatten_routed())
    assert (r.status, r.reason) == (ResultStatus.BLOCKED, BR.MAX_NOTIONAL_PER_DAY)
    assert rig.port.write_calls == []


# --- dry-run --------------------------------------------------------------------------------


async def test_dry_run_skips_arming_gates_and_writes_nothing() -> None:
    rig = Rig(config(dry_run=True, allow_active_remediation=False), armed=False, env_value=None)
    rig.port.add_order(order())
    rig.position("0.01")
    (c,) = await rig.run(cancel_routed())
    rig.clock.advance(120_000)
    (f,) = await rig.run(flatten_routed())
    assert (c.status, c.mode, c.reason) == (ResultStatus.PLANNED, DRY_RUN, None)
    assert (f.status, f.mode, f.reason) == (ResultStatus.PLANNED, DRY_RUN, None)
    assert f.qty == Decimal("0.01")
    assert f.notional == Decimal("500")
    assert f.remediation_order_id is not None
    assert rig.port.write_calls == []
    assert OURS in rig.port.open_orders
    assert rig.port.positions[("BTCUSDT", PositionSide.BOTH)].qty == Decimal("0.01")
    assert rig.executor.last_remediation_ms is None


async def test_dry_run_still_evaluates_ownership_and_whitelist() -> None:
    rig = Rig(config(dry_run=True), whitelist=["BTCUSDT"], armed=False, env_value=None)
    rig.port.add_order(order(FOREIGN))
    rig.port.add_order(order(OURS_ETH, "ETHUSDT"))
    results = await rig.run(cancel_routed(FOREIGN), cancel_routed(OURS_ETH, "ETHUSDT"))
    assert statuses(results) == [
        (ResultStatus.BLOCKED, "no_grinder_prefix"),
        (ResultStatus.BLOCKED, "symbol_not_in_whitelist"),
    ]


async def test_dry_run_right_after_a_live_execution_respects_its_cooldown() -> None:
    rig = Rig(config(cooldown_seconds=60))
    for cid in (OURS, OURS_2):
        rig.port.add_order(order(cid))
    (live,) = await rig.run(cancel_routed(OURS))
    rig.config.dry_run = True  # rollback to dry-run
    rig.clock.set(NOW + 10_000)
    (preview,) = await rig.run(cancel_routed(OURS_2))
    rig.clock.set(NOW + 60_000)
    (later,) = await rig.run(cancel_routed(OURS_2))
    assert statuses([live, preview, later]) == [
        (ResultStatus.EXECUTED, None),
        (ResultStatus.BLOCKED, "cooldown_not_elapsed"),
        (ResultStatus.PLANNED, None),
    ]
    assert len(rig.port.write_calls) == 1


async def test_dry_run_cooldown_is_tracked_in_memory_between_runs() -> None:
    rig = Rig(config(dry_run=True, cooldown_seconds=60), armed=False)
    rig.port.add_order(order())
    (r1,) = await rig.run(cancel_routed())
    rig.clock.set(NOW + 10_000)
    (r2,) = await rig.run(cancel_routed())
    rig.clock.set(NOW + 60_000)
    (r3,) = await rig.run(cancel_routed())
    assert statuses([r1, r2, r3]) == [
        (ResultStatus.PLANNED, None),
        (ResultStatus.BLOCKED, "cooldown_not_elapsed"),
        (ResultStatus.PLANNED, None),
    ]
    assert rig.port.write_calls == []


async def test_dry_run_budget_is_tracked_in_memory_and_never_persisted(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    cfg = config(dry_run=True, max_calls_per_run=2, max_calls_per_day=3, cooldown_seconds=0)
    store = FileBudgetStore(path)
    store.save(BudgetState(day=utc_day(NOW), calls_used_day=1, updated_ts_ms=NOW - 5))
    before = path.read_bytes()
    mtime_before = path.stat().st_mtime_ns
    rig = Rig(cfg, armed=False, env_value=None, budget_store=store)
    cids = [f"grinder_d_BTCUSDT_1_1704067200_{i}" for i in range(1, 4)]
    for cid in cids:
        rig.port.add_order(order(cid))
    run1 = await rig.run(*(cancel_routed(c) for c in cids))
    assert statuses(run1) == [
        (ResultStatus.PLANNED, None),
        (ResultStatus.PLANNED, None),
        (ResultStatus.BLOCKED, "max_calls_per_run"),
    ]
    # The shadow day budget started at 1 (from the file) and now holds 3 = max_calls_per_day.
    run2 = await rig.run(cancel_routed(cids[2]))
    assert statuses(run2) == [(ResultStatus.BLOCKED, "max_calls_per_day")]
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == mtime_before
    assert rig.budget.state.calls_used_day == 1
    assert rig.port.write_calls == []


async def test_dry_run_spends_the_dry_budget_it_is_given() -> None:
    """Executors given one dry budget share it, as the smoke test's scenarios do."""
    cfg = config(dry_run=True, max_calls_per_day=2, cooldown_seconds=0)
    first = Rig(cfg, armed=False, env_value=None)
    first.seed_day(calls=1)
    shared = first.budget.shadow()
    first.executor, second = (
        RemediationExecutor(
            config=cfg,
            port=first.port,
            symbol_whitelist=["BTCUSDT"],
            budget=first.budget,
            dry_budget=shared,
            clock=first.clock,
            expected_heartbeat_age=lambda: 0.0,
        )
        for _ in range(2)
    )
    first.port.add_order(order(OURS))
    first.port.add_order(order(OURS_2))
    assert statuses(await first.run(cancel_routed(OURS))) == [(ResultStatus.PLANNED, None)]
    ctx = second.begin_run()
    blocked = await second.execute(cancel_routed(OURS_2), ctx)
    assert (blocked.status, blocked.reason) == (ResultStatus.BLOCKED, "max_calls_per_day")
    assert first.executor.dry_budget() is shared
    assert (shared.state.calls_used_day, first.budget.state.calls_used_day) == (2, 1)
    assert first.port.write_calls == []


async def test_dry_run_plan_is_what_live_would_execute() -> None:
    """The same candidates give PLANNED in dry-run exactly where live gives EXECUTED."""
    cids = [OURS, FOREIGN, OURS_2, OURS_ETH, "grinder_d_BTCUSDT_1_1704067200_3"]
    symbols = ["BTCUSDT", "BTCUSDT", "BTCUSDT", "ETHUSDT", "BTCUSDT"]
    outcomes = {}
    for dry in (True, False):
        rig = Rig(config(dry_run=dry, max_orders_per_action=2, max_symbols_per_action=1))
        for c, s in zip(cids, symbols, strict=True):
            rig.port.add_order(order(c, s))
        results = await rig.run(*(cancel_routed(c, s) for c, s in zip(cids, symbols, strict=True)))
        outcomes[dry] = [(r.status, r.reason) for r in results]
    dry_outcomes = [
        (ResultStatus.EXECUTED if s is ResultStatus.PLANNED else s, r) for s, r in outcomes[True]
    ]
    assert dry_outcomes == outcomes[False]
    assert [s for s, _ in outcomes[True]].count(ResultStatus.PLANNED) == 2


# --- live execution -------------------------------------------------------------------------


async def test_live_cancel_is_executed_on_the_exchange() -> None:
    rig = Rig()
    rig.port.add_order(order())
    (r,) = await rig.run(cancel_routed())
    assert (r.status, r.mode, r.reason, r.error) == (ResultStatus.EXECUTED, LIVE, None, None)
    assert [(c.method, c.args) for c in rig.port.write_calls] == [
        ("cancel_order", {"symbol": "BTCUSDT", "client_order_id": OURS, "is_algo": False})
    ]
    assert OURS not in rig.port.open_orders
    assert rig.port.ended_orders[OURS].status is OrderStatus.CANCELED
    assert rig.executor.last_remediation_ms == NOW
    assert rig.budget.state.calls_used_day == 1


async def test_live_cancel_of_algo_order_goes_to_algo_endpoint() -> None:
    rig = Rig()
    rig.port.add_order(order())
    (r,) = await rig.run(cancel_routed(is_algo=True))
    assert r.status is ResultStatus.EXECUTED
    assert rig.port.write_calls[0].args["is_algo"] is True


async def test_cancel_of_already_gone_order_counts_as_executed() -> None:
    rig = Rig()  # the FakePort does not hold the order: -2011 "Unknown order sent"
    (r,) = await rig.run(cancel_routed())
    assert r.status is ResultStatus.EXECUTED
    assert r.error == CancelOutcome.ALREADY_GONE.value
    assert len(rig.port.write_calls) == 1


async def test_exchange_error_on_cancel_is_failed_with_port_error() -> None:
    rig = Rig()
    rig.port.add_order(order())
    error = ExchangeError("Margin is insufficient.", code=-2019)
    rig.port.fail_once["cancel_order"] = error
    (r,) = await rig.run(cancel_routed())
    assert (r.status, r.reason) == (ResultStatus.FAILED, FailReason.PORT_ERROR)
    assert r.error == str(error)
    assert r.reason == "port_error"
    assert r.attempts == (AttemptOutcome.REJECTED,)  # not repeatable: one attempt
    assert rig.pauses == []


async def test_a_transient_failure_of_a_cancel_is_failed_after_three_attempts() -> None:
    rig = Rig()
    rig.port.add_order(order())
    error = TransientExchangeError("Service unavailable", http_status=503)
    rig.port.fail_always["cancel_order"] = error
    (r,) = await rig.run(cancel_routed())
    assert (r.status, r.reason) == (ResultStatus.FAILED, FailReason.PORT_ERROR)
    assert r.error == f"{error} (after 3 attempts)"
    assert r.attempts == (AttemptOutcome.REJECTED,) * 3
    assert len(rig.port.write_calls) == 3
    assert rig.pauses == [0.2, 0.5]


async def test_exchange_error_on_flatten_order_is_failed_with_port_error() -> None:
    rig = Rig()
    rig.position("0.01")
    rig.port.fail_once["place_reduce_only_market"] = ExchangeError("rejected", code=-2022)
    (r,) = await rig.run(flatten_routed())
    assert (r.status, r.reason) == (ResultStatus.FAILED, FailReason.PORT_ERROR)
    assert rig.executor.last_remediation_ms is None


async def test_exchange_error_while_rereading_position_is_failed_without_write() -> None:
    rig = Rig()
    rig.position("0.01")
    rig.port.fail_once["fetch_positions"] = TransientExchangeError("timeout")
    (r,) = await rig.run(flatten_routed())
    assert (r.status, r.reason) == (ResultStatus.FAILED, FailReason.PORT_ERROR)
    assert rig.port.write_calls == []
    assert rig.budget.state.calls_used_day == 0


@pytest.mark.parametrize(
    ("qty", "step", "expected_qty", "side"),
    [
        ("0.0157", "0.001", "0.015", Side.SELL),
        ("-0.0157", "0.001", "0.015", Side.BUY),
        ("0.01", "0.001", "0.01", Side.SELL),
        ("-3", "1", "3", Side.BUY),
        ("7.99", "0.5", "7.5", Side.SELL),
        ("0.0123456", None, "0.0123456", Side.SELL),
    ],
)
async def test_flatten_sends_reduce_only_market_for_position_rounded_down_to_step(
    qty: str, step: str | None, expected_qty: str, side: Side
) -> None:
    rig = Rig(config(max_flatten_notional_usdt=Decimal("1000000")))
    rig.position(qty, price="10", step=step)
    (r,) = await rig.run(flatten_routed(observed_qty=Decimal(qty)))
    assert r.status is ResultStatus.EXECUTED
    (call,) = rig.port.write_calls
    assert call.method == "place_reduce_only_market"
    assert call.args["qty"] == Decimal(expected_qty)
    assert call.args["side"] is side
    assert call.args["position_side"] is PositionSide.BOTH
    assert call.args["symbol"] == "BTCUSDT"
    assert r.qty == Decimal(expected_qty)
    assert r.notional == Decimal(expected_qty) * 10
    # The remediation order id is ours and marked as a remediation order.
    parsed = parse_client_order_id(call.args["client_order_id"])
    assert parsed is not None
    assert parsed.is_remediation
    assert parsed.strategy_id == "d"
    assert len(call.args["client_order_id"]) <= 36
    assert r.remediation_order_id == call.args["client_order_id"]


async def test_the_remediation_sequence_cycles_so_its_ids_never_outgrow_the_checked_form() -> None:
    """Ids carry a sequence of at most REMEDIATION_SEQ_MAX, the longest the config's
    identity rule checks: after it the sequence starts again at 1."""
    rig = Rig(config(cooldown_seconds=0))
    rig.position("0.01", price="10", step="0.001")
    rig.executor._seq = REMEDIATION_SEQ_MAX - 1
    seqs = []
    for _ in range(2):
        (r,) = await rig.run(flatten_routed(observed_qty=Decimal("0.01")))
        assert r.status is ResultStatus.EXECUTED
        parsed = parse_client_order_id(rig.port.write_calls[-1].args["client_order_id"])
        assert parsed is not None
        seqs.append(parsed.seq)
        rig.position("0.01", price="10", step="0.001")
    assert seqs == [REMEDIATION_SEQ_MAX, 1]


@pytest.mark.parametrize(
    ("side", "qty", "order_side"),
    [(PositionSide.LONG, "0.02", Side.SELL), (PositionSide.SHORT, "-0.02", Side.BUY)],
)
async def test_flatten_in_hedge_mode_sends_position_side_and_touches_only_that_leg(
    side: PositionSide, qty: str, order_side: Side
) -> None:
    rig = Rig()
    rig.position("0.03", side=PositionSide.LONG, price="10000")
    rig.position("-0.04", side=PositionSide.SHORT, price="10000")
    rig.position(qty, side=side, price="10000")
    other = PositionSide.SHORT if side is PositionSide.LONG else PositionSide.LONG
    other_qty = rig.port.positions[("BTCUSDT", other)].qty
    (r,) = await rig.run(flatten_routed(side=side, observed_qty=Decimal(qty)))
    assert r.status is ResultStatus.EXECUTED
    (call,) = rig.port.write_calls
    assert call.args["position_side"] is side
    assert call.args["side"] is order_side
    assert call.args["qty"] == Decimal("0.02")
    assert rig.port.positions[("BTCUSDT", side)].qty == 0
    assert rig.port.positions[("BTCUSDT", other)].qty == other_qty


async def test_flatten_rereads_position_and_trades_only_what_is_left() -> None:
    rig = Rig()
    rig.position("0.004")  # the mismatch saw 0.05; part of it was closed since
    (r,) = await rig.run(flatten_routed(observed_qty=Decimal("0.05")))
    assert r.status is ResultStatus.EXECUTED
    methods = [c.method for c in rig.port.calls]
    assert methods.index("fetch_positions") < methods.index("place_reduce_only_market")
    assert rig.port.write_calls[0].args["qty"] == Decimal("0.004")


async def test_flatten_of_already_flat_position_is_skipped_without_write() -> None:
    rig = Rig()
    rig.position("0")
    (r,) = await rig.run(flatten_routed(observed_qty=Decimal("0.05")))
    assert (r.status, r.reason) == (ResultStatus.SKIPPED, SkipReason.ALREADY_RESOLVED)
    assert rig.port.write_calls == []
    assert "fetch_positions" in [c.method for c in rig.port.calls]
    assert rig.budget.state.calls_used_day == 0


async def test_flatten_of_dust_below_step_size_is_not_sent() -> None:
    rig = Rig()
    rig.position("0.0004", step="0.001")
    (r,) = await rig.run(flatten_routed())
    assert r.status is ResultStatus.SKIPPED
    assert rig.port.write_calls == []


async def test_second_flatten_retry_never_trades_more_than_what_is_left() -> None:
    rig = Rig(config(cooldown_seconds=0))
    rig.position("0.01")
    (r1,) = await rig.run(flatten_routed())
    (r2,) = await rig.run(flatten_routed())
    assert r1.status is ResultStatus.EXECUTED
    assert (r2.status, r2.reason) == (ResultStatus.SKIPPED, SkipReason.ALREADY_RESOLVED)
    assert len(rig.port.write_calls) == 1


async def test_remediation_order_ids_are_unique_within_a_second() -> None:
    rig = Rig(config(cooldown_seconds=0), whitelist=["BTCUSDT", "ETHUSDT"])
    rig.position("0.001", "BTCUSDT")
    rig.position("0.001", "ETHUSDT")
    results = await rig.run(flatten_routed("BTCUSDT"), flatten_routed("ETHUSDT"))
    rig.position("0.001", "BTCUSDT")
    results += await rig.run(flatten_routed("BTCUSDT"))
    ids = [r.remediation_order_id for r in results]
    assert all(ids)
    assert len(set(ids)) == 3


# --- runtime rollback takes effect on the very next write -----------------------------------


@dataclass
class HookPort(FakePort):
    """A FakePort that runs a hook after its first write or during a position re-read."""

    after_first_write: Callable[[], None] | None = None
    during_fetch_positions: Callable[[], None] | None = None

    def _fire_write_hook(self) -> None:
        hook, self.after_first_write = self.after_first_write, None
        if hook is not None:
            hook()

    async def cancel_order(
        self,
        symbol: str,
        client_order_id: str,
        *,
        is_algo: bool = False,
        authorize: Authorize | None = None,
    ) -> CancelOutcome:
        out = await super().cancel_order(
            symbol, client_order_id, is_algo=is_algo, authorize=authorize
        )
        self._fire_write_hook()
        return out

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
        out = await super().place_reduce_only_market(
            symbol,
            side,
            qty,
            position_side=position_side,
            client_order_id=client_order_id,
            authorize=authorize,
        )
        self._fire_write_hook()
        return out

    async def fetch_positions(self, symbols: Sequence[str] | None = None) -> list[ObservedPosition]:
        out = await super().fetch_positions(symbols)
        hook, self.during_fetch_positions = self.during_fetch_positions, None
        if hook is not None:
            hook()
        return out


def _rollback_action_none(rig: Rig) -> None:
    rig.config.action = RemediationAction.NONE


def _rollback_dry_run(rig: Rig) -> None:
    rig.config.dry_run = True


def _rollback_disarm(rig: Rig) -> None:
    rig.executor.armed = False


def _rollback_unset_env(rig: Rig) -> None:
    del rig.env[ALLOW]


def _rollback_not_leader(rig: Rig) -> None:
    rig.leader = False


ROLLBACKS = [
    (_rollback_action_none, ResultStatus.BLOCKED, BR.ACTION_IS_NONE),
    (_rollback_dry_run, ResultStatus.PLANNED, None),
    (_rollback_disarm, ResultStatus.BLOCKED, BR.NOT_ARMED),
    (_rollback_unset_env, ResultStatus.BLOCKED, BR.ENV_VAR_MISSING),
    (_rollback_not_leader, ResultStatus.BLOCKED, BR.NOT_LEADER),
]
ROLLBACK_IDS = ["action_none", "dry_run", "disarm", "unset_env", "lose_leadership"]


@pytest.mark.parametrize(("rollback", "status", "reason"), ROLLBACKS, ids=ROLLBACK_IDS)
async def test_rollback_between_two_cancels_of_one_run_stops_the_second(
    rollback: Callable[[Rig], None], status: ResultStatus, reason: BlockReason | None
) -> None:
    port = HookPort()
    rig = Rig(config(max_orders_per_action=5), port=port)
    for cid in (OURS, OURS_2):
        port.add_order(order(cid))
    port.after_first_write = lambda: rollback(rig)
    results = await rig.run(cancel_routed(OURS), cancel_routed(OURS_2))
    assert results[0].status is ResultStatus.EXECUTED
    assert (results[1].status, results[1].reason) == (status, reason)
    assert [c.args["client_order_id"] for c in port.write_calls] == [OURS]
    assert OURS_2 in port.open_orders


@pytest.mark.parametrize(("rollback", "status", "reason"), ROLLBACKS, ids=ROLLBACK_IDS)
async def test_rollback_while_flatten_rereads_position_prevents_the_order(
    rollback: Callable[[Rig], None], status: ResultStatus, reason: BlockReason | None
) -> None:
    port = HookPort()
    rig = Rig(port=port)
    rig.position("0.01")
    port.during_fetch_positions = lambda: rollback(rig)
    (r,) = await rig.run(flatten_routed())
    assert (r.status, r.reason) == (status, reason)
    assert port.write_calls == []
    assert port.positions[("BTCUSDT", PositionSide.BOTH)].qty == Decimal("0.01")


async def test_rearming_after_rollback_allows_writes_again() -> None:
    rig = Rig(config(cooldown_seconds=0))
    rig.port.add_order(order())
    rig.executor.armed = False
    (r1,) = await rig.run(cancel_routed())
    rig.executor.armed = True
    (r2,) = await rig.run(cancel_routed())
    assert [r1.reason, r2.status] == [BR.NOT_ARMED, ResultStatus.EXECUTED]


# --- budget write-ahead from the executor ---------------------------------------------------


async def test_port_error_after_reserve_still_counts_the_call(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    rig = Rig(budget_store=FileBudgetStore(path))
    rig.port.add_order(order())
    rig.port.fail_once["cancel_order"] = ExchangeError("boom")
    (r,) = await rig.run(cancel_routed())
    assert r.status is ResultStatus.FAILED
    assert json.loads(path.read_text())["calls_used_day"] == 1


async def test_unwritable_budget_state_fails_the_action_without_a_write(tmp_path: Path) -> None:
    store = FileBudgetStore(tmp_path / "budget.json")
    rig = Rig(budget_store=store)
    rig.port.add_order(order())
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    store.path = blocker / "budget.json"
    (r,) = await rig.run(cancel_routed())
    assert (r.status, r.reason) == (ResultStatus.FAILED, FailReason.BUDGET_STATE_ERROR)
    assert str(blocker / "budget.json") in (r.error or "")
    assert rig.port.write_calls == []
    assert rig.budget.state.calls_used_day == 0


# --- THE property: a write happens iff every gate passes ------------------------------------

_OWNERS = {
    "ours": OURS,
    "foreign": FOREIGN,
    "liquidation": "autoclose-1704067200123",
    "other_strategy": OTHER_STRATEGY,
}


@dataclass(frozen=True)
class GateInputs:
    kind: ActionKind
    is_leader: bool
    operator: str  # "known" | "lost"
    action: RemediationAction
    dry_run: bool
    allow_active: bool
    armed: bool
    env_value: str | None
    cooldown: str  # "none" | "elapsed" (61 s ago) | "exactly" (60 s ago) | "recent" (10 s ago)
    cooldown_seconds: int
    whitelist: tuple[str, ...]
    require_whitelist: bool
    owner: str
    expected_age: float
    position_side: PositionSide
    position_qty: Decimal
    price: Decimal | None
    max_flatten: Decimal
    max_orders: int
    max_symbols: int
    max_calls_per_run: int
    max_notional_per_run: Decimal
    day_calls_used: int
    max_calls_per_day: int
    day_notional_used: Decimal
    max_notional_per_day: Decimal


def _dim(good: list[Any], bad: list[Any]) -> tuple[list[Any], list[Any]]:
    return good, bad


@st.composite
def gate_inputs(draw: st.DrawFn) -> GateInputs:
    kind = draw(st.sampled_from(list(ActionKind)))
    side = draw(st.sampled_from(list(PositionSide)))
    sign = -1 if side is PositionSide.SHORT else (1 if side is PositionSide.LONG else None)
    nonzero = [Decimal("0.01") * (sign or 1)] + ([Decimal("-0.01")] if sign is None else [])
    dims: dict[str, tuple[list[Any], list[Any]]] = {
        "is_leader": _dim([True], [False]),
        "operator": _dim(["known"], ["lost"]),
        "action": (
            _dim([RA.CANCEL_ALL, RA.FLATTEN], [RA.NONE])
            if kind is ActionKind.CANCEL
            else _dim([RA.FLATTEN], [RA.NONE, RA.CANCEL_ALL])
        ),
        "allow_active": _dim([True], [False]),
        "armed": _dim([True], [False]),
        "env_value": _dim(["1"], [None, "0", "true", "1 "]),
        "cooldown": _dim(["none", "elapsed", "exactly"], ["recent"]),
        "whitelist": _dim(
            [(("BTCUSDT",), True), (("ETHUSDT", "BTCUSDT"), False), ((), False)],
            [(("ETHUSDT",), True), (("ETHUSDT",), False), ((), True)],
        ),
        "owner": _dim(["ours"], ["foreign", "liquidation", "other_strategy"]),
        "expected_age": _dim([0.0, 60.0], [60.5, math.inf]),
        "position_qty": _dim(nonzero, [Decimal(0)]),
        "price": _dim([Decimal("50000")], [None]),
        "max_flatten": _dim([Decimal("500"), Decimal("1000")], [Decimal("100")]),
        "max_orders": _dim([1, 10], [0]),
        "max_symbols": _dim([1, 3], [0]),
        "max_calls_per_run": _dim([1, 10], [0]),
        "max_notional_per_run": _dim([Decimal("500"), Decimal("1000")], [Decimal("499")]),
        "day_calls": _dim([(0, 100), (98, 100)], [(99, 100), (100, 100), (150, 100)]),
        "day_notional": _dim(
            [(Decimal("0"), Decimal("5000")), (Decimal("4500"), Decimal("5000"))],
            [(Decimal("4501"), Decimal("5000")), (Decimal("6000"), Decimal("5000"))],
        ),
    }
    # Most examples break zero, one or two chosen gates, so that every gate is seen
    # failing alone and all gates are seen passing; the rest are uniform over all values.
    mode = draw(st.sampled_from(["one", "one", "two", "none", "uniform"]))
    if mode == "uniform":
        values = {name: draw(st.sampled_from(good + bad)) for name, (good, bad) in dims.items()}
    else:
        names = sorted(dims)
        broken = set()
        if mode in ("one", "two"):
            broken.add(draw(st.sampled_from(names)))
        if mode == "two":
            broken.add(draw(st.sampled_from(names)))
        values = {
            name: draw(st.sampled_from(bad if name in broken else good))
            for name, (good, bad) in dims.items()
        }
    whitelist, require = values.pop("whitelist")
    day_calls, max_day_calls = values.pop("day_calls")
    day_notional, max_day_notional = values.pop("day_notional")
    return GateInputs(
        kind=kind,
        dry_run=draw(st.booleans()),
        cooldown_seconds=draw(st.sampled_from([60, 60, 0])),
        whitelist=whitelist,
        require_whitelist=require,
        position_side=side,
        day_calls_used=day_calls,
        max_calls_per_day=max_day_calls,
        day_notional_used=day_notional,
        max_notional_per_day=max_day_notional,
        **values,
    )


SKIPPED = "skipped"


def expected_verdict(i: GateInputs, day_calls: int) -> BlockReason | str | None:
    """CONTRACT §5, evaluated from the inputs alone: the first failing gate, or None."""
    blocks = expected_blocks(i, day_calls)
    if blocks == SKIPPED:
        return SKIPPED
    return blocks[0] if blocks else None


def expected_blocks(i: GateInputs, day_calls: int) -> tuple[BlockReason, ...] | str:
    """CONTRACT §5, evaluated from the inputs alone: every failing gate in order (a flatten
    held before its position is read: those up to gate E), or SKIPPED."""
    out: list[BlockReason] = []
    if not i.is_leader:
        out.append(BR.NOT_LEADER)
    if i.operator == "lost":
        out.append(BR.OPERATOR_STATE_UNKNOWN)
    if i.action is RA.NONE:
        out.append(BR.ACTION_IS_NONE)
    elif i.kind is ActionKind.FLATTEN and i.action is not RA.FLATTEN:
        out.append(BR.ACTION_NOT_PERMITTED)
    if not i.dry_run:
        if not i.allow_active:
            out.append(BR.ALLOW_ACTIVE_REMEDIATION_FALSE)
        if not i.armed:
            out.append(BR.NOT_ARMED)
        if i.env_value != "1":
            out.append(BR.ENV_VAR_MISSING)
    if i.cooldown == "recent" and i.cooldown_seconds > 0:
        out.append(BR.COOLDOWN_NOT_ELAPSED)
    if not i.whitelist:
        if i.require_whitelist:
            out.append(BR.WHITELIST_REQUIRED)
    elif "BTCUSDT" not in i.whitelist:
        out.append(BR.SYMBOL_NOT_IN_WHITELIST)
    notional = Decimal(0)
    if i.kind is ActionKind.CANCEL:
        if i.owner in ("foreign", "liquidation"):
            out.append(BR.NO_GRINDER_PREFIX)
        if i.owner == "other_strategy":
            out.append(BR.STRATEGY_NOT_ALLOWED)
    if i.expected_age > 60.0:  # gate E, before a flatten reads the position
        out.append(BR.EXPECTED_STATE_STALE)
    if i.kind is ActionKind.FLATTEN:
        if out:
            return tuple(out)
        if i.position_qty == 0:
            return SKIPPED
        if i.price is None:
            out.append(BR.PRICE_UNAVAILABLE)
        else:
            notional = abs(i.position_qty) * i.price
            if notional > i.max_flatten:
                out.append(BR.NOTIONAL_EXCEEDS_LIMIT)
    if i.max_orders < 1:
        out.append(BR.MAX_ORDERS_REACHED)
    elif i.max_symbols < 1:
        out.append(BR.MAX_SYMBOLS_REACHED)
    budget = [
        (i.max_calls_per_run < 1, BR.MAX_CALLS_PER_RUN),
        (notional > i.max_notional_per_run, BR.MAX_NOTIONAL_PER_RUN),
        (day_calls + 1 > i.max_calls_per_day, BR.MAX_CALLS_PER_DAY),
        (i.day_notional_used + notional > i.max_notional_per_day, BR.MAX_NOTIONAL_PER_DAY),
    ]
    out.extend(next(([reason] for fails, reason in budget if fails), []))
    return tuple(out)


async def _run_gate_scenario(i: GateInputs) -> None:
    # Start permissive, so that a warm-up remediation can set the cooldown anchor
    # the way production does (an executed or planned action), then apply the inputs.
    rig = Rig(
        config(
            dry_run=i.dry_run,
            cooldown_seconds=0,
            max_calls_per_day=10**6,
            max_notional_per_day=Decimal("1e9"),
        )
    )
    rig.seed_day(calls=i.day_calls_used, notional=str(i.day_notional_used))
    warm = i.cooldown != "none"
    if warm:
        rig.clock.set(NOW - {"recent": 10_000, "exactly": 60_000, "elapsed": 61_000}[i.cooldown])
        (w,) = await rig.run(cancel_routed("grinder_d_BTCUSDT_9_1704067200_9"))
        assert w.status is (ResultStatus.PLANNED if i.dry_run else ResultStatus.EXECUTED)
        rig.clock.set(NOW)
    cfg = rig.config
    cfg.action = i.action
    cfg.allow_active_remediation = i.allow_active
    cfg.cooldown_seconds = i.cooldown_seconds
    cfg.require_whitelist = i.require_whitelist
    cfg.max_flatten_notional_usdt = i.max_flatten
    cfg.max_orders_per_action = i.max_orders
    cfg.max_symbols_per_action = i.max_symbols
    cfg.max_calls_per_run = i.max_calls_per_run
    cfg.max_notional_per_run = i.max_notional_per_run
    cfg.max_calls_per_day = i.max_calls_per_day
    cfg.max_notional_per_day = i.max_notional_per_day
    rig.executor.armed = i.armed
    rig.executor.symbol_whitelist = list(i.whitelist)
    rig.env.clear()
    if i.env_value is not None:
        rig.env[ALLOW] = i.env_value
    rig.leader = i.is_leader
    rig.expected_age = i.expected_age
    if i.operator == "lost":
        rig.lose_operator_state()
    if i.kind is ActionKind.CANCEL:
        cid = _OWNERS[i.owner]
        rig.port.add_order(order(cid))
        routed = cancel_routed(cid)
    else:
        rig.position(
            str(i.position_qty),
            side=i.position_side,
            price=None if i.price is None else str(i.price),
        )
        routed = flatten_routed(side=i.position_side)
    rig.port.calls.clear()
    real_calls_before = rig.budget.state.calls_used_day

    (result,) = await rig.run(routed)

    verdict = expected_verdict(i, i.day_calls_used + (1 if warm else 0))
    writes = rig.port.write_calls
    should_write = verdict is None and not i.dry_run
    assert bool(writes) == should_write, (verdict, result)
    if verdict is None:
        assert result.status is (ResultStatus.PLANNED if i.dry_run else ResultStatus.EXECUTED)
    elif verdict == SKIPPED:
        assert (result.status, result.reason) == (ResultStatus.SKIPPED, SkipReason.ALREADY_RESOLVED)
    else:
        assert (result.status, result.reason) == (ResultStatus.BLOCKED, verdict)
        # Every gate that fails, in order, not only the first (what the reports name).
        assert result.blocked_by == expected_blocks(i, i.day_calls_used + (1 if warm else 0))
    if should_write:
        (call,) = writes
        if i.kind is ActionKind.CANCEL:
            assert (call.method, call.args["client_order_id"]) == ("cancel_order", OURS)
        else:
            assert call.method == "place_reduce_only_market"
            assert call.args["qty"] == abs(i.position_qty)
            assert call.args["side"] is (Side.SELL if i.position_qty > 0 else Side.BUY)
            assert call.args["position_side"] is i.position_side
    # The real budget counts exactly the live writes that were attempted.
    assert rig.budget.state.calls_used_day == real_calls_before + (1 if should_write else 0)


@settings(max_examples=400, deadline=None)
@given(i=gate_inputs())
def test_exchange_write_happens_if_and_only_if_every_gate_passes(i: GateInputs) -> None:
    asyncio.run(_run_gate_scenario(i))


def test_gate_property_generator_reaches_both_write_and_every_block_reason() -> None:
    """Guard against a vacuous property: the generator must produce writes and every reason."""
    seen: set[Any] = set()

    @settings(max_examples=600, deadline=None, database=None, derandomize=True)
    @given(i=gate_inputs())
    def collect(i: GateInputs) -> None:
        day_calls = i.day_calls_used + (0 if i.cooldown == "none" else 1)
        v = expected_verdict(i, day_calls)
        seen.add("write" if v is None and not i.dry_run else v)
        blocks = expected_blocks(i, day_calls)
        if blocks != SKIPPED and len(blocks) > 1:
            seen.add(f"{len(blocks) if len(blocks) < 3 else 'more'} gates")

    collect()
    assert "write" in seen
    assert set(BlockReason) - WIRE_ONLY_BLOCK_REASONS <= seen
    assert {"2 gates", "more gates"} <= seen  # blocked_by is checked beyond its first gate


class SharedCooldown:
    """A shared cooldown source (HA): the last write of any instance."""

    def __init__(self, last: int | None) -> None:
        self.last = last
        self.reads = 0

    def last_write_ms(self) -> int | None:
        self.reads += 1
        return self.last


def test_the_cooldown_anchors_are_what_a_run_starting_now_uses() -> None:
    rig = Rig(config(cooldown_seconds=60))
    shared = SharedCooldown(NOW - 10_000)  # another instance wrote 10 s ago; this one never
    rig.executor.cooldown = shared
    assert rig.executor.last_remediation_ms is None
    assert rig.executor.cooldown_anchors() == (NOW - 10_000, NOW - 10_000)
    assert rig.executor.last_write_known_ms == NOW - 10_000
    ctx = rig.executor.begin_run()
    assert (ctx.live_anchor_ms, ctx.dry_anchor_ms) == rig.executor.cooldown_anchors()
    assert rig.executor.gate(ActionKind.CANCEL, "BTCUSDT", OURS, Decimal(0), ctx) is (
        BR.COOLDOWN_NOT_ELAPSED
    )
    # Read afresh each time: a later write of another instance moves the anchor.
    shared.last = NOW - 5_000
    assert rig.executor.cooldown_anchors()[0] == NOW - 5_000
    # This instance's own later write wins over an older shared one.
    rig.executor.last_remediation_ms = NOW - 1_000
    assert rig.executor.cooldown_anchors()[0] == NOW - 1_000


# --- each attempt authorized at the wire ----------------------------------------------------


def _storm(rig: Rig) -> None:
    rig.port.add_order(order())
    rig.port.fail_always["cancel_order"] = TransientExchangeError(
        "Service unavailable", http_status=503
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda rig: setattr(rig.executor, "armed", False), BR.NOT_ARMED),
        (lambda rig: rig.env.clear(), BR.ENV_VAR_MISSING),
        (lambda rig: setattr(rig.config, "action", RA.NONE), BR.ACTION_IS_NONE),
        (lambda rig: setattr(rig.config, "dry_run", True), BR.DRY_RUN),
        (lambda rig: setattr(rig, "leader", False), BR.NOT_LEADER),
        (
            lambda rig: setattr(rig.executor, "symbol_whitelist", ["ETHUSDT"]),
            BR.SYMBOL_NOT_IN_WHITELIST,
        ),
        (lambda rig: setattr(rig, "expected_age", math.inf), BR.EXPECTED_STATE_STALE),
    ],
    ids=[
        "disarmed",
        "deny_mainnet",
        "action_none",
        "dry_run_on",
        "leadership_lost",
        "whitelist",
        "bot_went_silent",
    ],
)
async def test_a_rollback_between_two_attempts_stops_the_next_one(
    change: Callable[[Rig], None], reason: BlockReason
) -> None:
    rig = Rig()
    _storm(rig)
    rig.meanwhile = lambda: change(rig)
    (r,) = await rig.run(cancel_routed())
    assert (r.status, r.reason) == (ResultStatus.BLOCKED, reason)
    assert r.attempts == (AttemptOutcome.REJECTED, AttemptOutcome.WITHHELD)
    assert len(rig.port.write_calls) == 1


async def test_a_flatten_attempt_is_withheld_after_a_rollback_too() -> None:
    rig = Rig(config(action=RA.FLATTEN))
    rig.position("0.01")
    rig.port.fail_always["place_reduce_only_market"] = TransientExchangeError(
        "busy", http_status=502
    )
    rig.meanwhile = lambda: setattr(rig.executor, "armed", False)
    (r,) = await rig.run(flatten_routed())
    assert (r.status, r.reason) == (ResultStatus.BLOCKED, BR.NOT_ARMED)
    assert r.attempts == (AttemptOutcome.REJECTED, AttemptOutcome.WITHHELD)
    assert len(rig.port.write_calls) == 1
    assert r.remediation_order_id is not None


async def test_a_cancel_is_confirmed_against_the_bot_before_every_attempt() -> None:
    rig = Rig()
    _storm(rig)
    bot: dict[str, ExpectedOrder] = {}
    reads: list[str] = []

    def read(cid: str) -> ExpectedOrder | None:
        reads.append(cid)
        return bot.get(cid)

    rig.executor.read_expected_order = read
    rig.meanwhile = lambda: bot.setdefault(
        OURS, ExpectedOrder(client_order_id=OURS, symbol="BTCUSDT", side=Side.BUY, qty=Decimal("1"))
    )
    (r,) = await rig.run(cancel_routed())
    assert (r.status, r.reason) == (ResultStatus.SKIPPED, SkipReason.NOW_EXPECTED)
    assert r.attempts == (AttemptOutcome.REJECTED, AttemptOutcome.WITHHELD)
    assert reads == [OURS, OURS]
    assert len(rig.port.write_calls) == 1


async def test_an_order_the_bot_has_ended_is_still_cancelled() -> None:
    rig = Rig()
    rig.port.add_order(order())
    ended = ExpectedOrder(
        client_order_id=OURS, symbol="BTCUSDT", side=Side.BUY, qty=Decimal("1"), ended_ts_ms=NOW
    )
    rig.executor.read_expected_order = lambda cid: ended
    (r,) = await rig.run(cancel_routed())
    assert r.status is ResultStatus.EXECUTED


async def test_an_unreadable_expected_state_withholds_the_cancel() -> None:
    rig = Rig()
    rig.port.add_order(order())

    def broken(cid: str) -> ExpectedOrder | None:
        raise OSError("database is locked")

    rig.executor.read_expected_order = broken
    (r,) = await rig.run(cancel_routed())
    assert (r.status, r.reason) == (ResultStatus.BLOCKED, BR.EXPECTED_STATE_UNREADABLE)
    assert "database is locked" in (r.error or "")
    assert rig.port.write_calls == []


@pytest.mark.parametrize(("left_ms", "sent"), [(0, False), (49, False), (50, True), (10_000, True)])
async def test_a_write_goes_out_only_with_enough_of_the_lease_left(
    left_ms: int, sent: bool
) -> None:
    rig = Rig()
    rig.port.add_order(order())
    rig.executor.lease_window_ms = lambda: left_ms
    (r,) = await rig.run(cancel_routed())
    if sent:
        assert r.status is ResultStatus.EXECUTED
        assert rig.port.wire_windows_ms == [min(left_ms, 2_000)]
    else:
        assert (r.status, r.reason) == (ResultStatus.BLOCKED, BR.NOT_LEADER)
        assert rig.port.write_calls == []


async def test_a_rate_limited_write_is_not_attempted_again() -> None:
    from grinder.exchange.binance.errors import IpBanned, RateLimited

    for error in (RateLimited("429", http_status=429), IpBanned("418", http_status=418)):
        rig = Rig()
        rig.port.add_order(order())
        rig.port.fail_always["cancel_order"] = error
        (r,) = await rig.run(cancel_routed())
        assert r.status is ResultStatus.FAILED
        assert r.attempts == (AttemptOutcome.REJECTED,)
        assert len(rig.port.write_calls) == 1


async def test_a_flatten_retry_sends_only_what_is_left_and_never_more_than_reserved() -> None:
    rig = Rig(config(action=RA.FLATTEN))
    rig.position("0.010")
    rig.port.fail_once["place_reduce_only_market"] = UnknownOutcome("timed out", code=-1007)

    def partly_filled_meanwhile() -> None:
        rig.port.set_position("BTCUSDT", Decimal("0.004"))

    rig.meanwhile = partly_filled_meanwhile
    (r,) = await rig.run(flatten_routed())
    assert r.status is ResultStatus.EXECUTED
    assert r.attempts == (AttemptOutcome.UNKNOWN, AttemptOutcome.ACCEPTED)
    sent = [c.args["qty"] for c in rig.port.write_calls]
    assert sent == [Decimal("0.010"), Decimal("0.004")]
    cids = [c.args["client_order_id"] for c in rig.port.write_calls]
    assert len(set(cids)) == 2  # a fresh client order id per attempt
    assert rig.budget.state.calls_used_day == 1

    # A position that grew meanwhile is not chased beyond what was reserved.
    rig2 = Rig(config(action=RA.FLATTEN))
    rig2.position("0.010")
    rig2.port.fail_once["place_reduce_only_market"] = TransientExchangeError("x", http_status=502)
    rig2.meanwhile = lambda: rig2.port.set_position("BTCUSDT", Decimal("0.030"))
    (r2,) = await rig2.run(flatten_routed())
    assert [c.args["qty"] for c in rig2.port.write_calls] == [Decimal("0.010"), Decimal("0.010")]
    assert r2.qty == Decimal("0.010")


async def test_a_flatten_retry_stops_when_the_position_changed_side() -> None:
    rig = Rig(config(action=RA.FLATTEN))
    rig.position("0.010")
    rig.port.fail_once["place_reduce_only_market"] = UnknownOutcome("timed out", code=-1007)
    rig.meanwhile = lambda: rig.port.set_position("BTCUSDT", Decimal("-0.005"))
    (r,) = await rig.run(flatten_routed())
    assert (r.status, r.reason) == (ResultStatus.SKIPPED, SkipReason.ALREADY_RESOLVED)
    assert len(rig.port.write_calls) == 1


async def test_a_write_the_client_refused_to_send_counts_as_withheld() -> None:
    from grinder.exchange.binance.errors import RateLimited
    from grinder.exchange.binance.ip_limits import not_sent

    rig = Rig()
    rig.port.add_order(order())
    rig.port.fail_always["cancel_order"] = not_sent(RateLimited("paused", http_status=429))
    (r,) = await rig.run(cancel_routed())
    assert r.status is ResultStatus.FAILED
    assert r.attempts == (AttemptOutcome.WITHHELD,)


class Recorded:
    """A reporter that keeps what it is told."""

    def __init__(self) -> None:
        self.attempted: list[str] = []
        self.results: list[ActionResult] = []

    def attempt(self, ctx: Any, routed: Routed, mode: str) -> None:
        self.attempted.append(mode)

    def result(self, ctx: Any, result: ActionResult) -> None:
        self.results.append(result)


async def test_a_stop_during_the_pause_before_a_retry_still_reports_what_was_sent() -> None:
    rig = Rig()
    _storm(rig)
    seen = Recorded()
    rig.executor.reporter = seen

    def stop() -> None:
        raise asyncio.CancelledError

    rig.meanwhile = stop
    with pytest.raises(asyncio.CancelledError):
        await rig.run(cancel_routed())
    (r,) = seen.results
    assert (r.status, r.reason) == (ResultStatus.FAILED, FailReason.PORT_ERROR)
    assert r.attempts == (AttemptOutcome.REJECTED,)
    assert "stopped before the next attempt" in (r.error or "")
    assert rig.executor.last_remediation_ms == NOW  # the cooldown counts it


async def test_a_result_keeps_the_mode_its_action_started_in() -> None:
    rig = Rig()
    _storm(rig)
    seen = Recorded()
    rig.executor.reporter = seen
    rig.meanwhile = lambda: setattr(rig.config, "dry_run", True)
    (r,) = await rig.run(cancel_routed())
    assert (r.status, r.reason, r.mode) == (ResultStatus.BLOCKED, BR.DRY_RUN, LIVE)
    assert seen.attempted == [LIVE]
    assert len(rig.port.write_calls) == 1


# --- the flatten decision, pure -------------------------------------------------------------


def test_flatten_order_rounds_down_to_the_step_and_takes_the_closing_side() -> None:
    from grinder.reconcile.flatten import FlattenOrder, flatten_order

    assert flatten_order(Decimal("0.0107"), Decimal("0.001"), Decimal("50000")) == FlattenOrder(
        Decimal("0.010"), Side.SELL, Decimal("500.000")
    )
    assert flatten_order(Decimal("-2"), None, None) == FlattenOrder(Decimal("2"), Side.BUY, None)
    assert flatten_order(Decimal("0.0004"), Decimal("0.001"), Decimal("1")) is None
    assert flatten_order(ZERO_QTY, Decimal("0.001"), Decimal("1")) is None


ZERO_QTY = Decimal("0")


@settings(max_examples=300, deadline=None, database=None)
@given(
    first=st.integers(-10_000, 10_000),
    now=st.integers(-20_000, 20_000),
    step_units=st.sampled_from([1, 5, 10]),
)
def test_a_flatten_retry_never_sends_more_than_the_first_order_nor_the_other_way(
    first: int, now: int, step_units: int
) -> None:
    from grinder.reconcile.flatten import flatten_order

    step = Decimal("0.001") * step_units
    order = flatten_order(Decimal(first) / 1000, step, Decimal("100"))
    if order is None:
        return
    qty = order.retry_qty(Decimal(now) / 1000, step)
    assert ZERO_QTY <= qty <= order.qty
    assert qty <= abs(Decimal(now) / 1000)  # never past zero
    assert qty % step == 0
    if qty > 0:
        assert (now > 0) == (order.side is Side.SELL)  # the same position, never the other side
