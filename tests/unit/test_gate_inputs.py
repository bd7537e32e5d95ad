"""One way to build the gate chain's inputs: the executor's and ``grinder gates``'s agree.

``RemediationExecutor.gate_inputs`` reads its live objects; ``grinder gates`` reads what
the service reports of the same objects (``/status``, the metrics). Both hand their
readings to ``gate_inputs_from``. For any settings, operator state, leadership, heartbeat,
cooldown anchors, budget use and write, the inputs ``grinder gates`` builds from the
service's report are the ones the service's executor builds itself -- field by field --
so the chain it shows is the chain the executor judges by.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from grinder.budget.ledger import BudgetState, RunBudget, utc_day
from grinder.budget.tracker import BudgetTracker
from grinder.ceremony.sources import parse_scrape
from grinder.cli.gates_reading import read_service
from grinder.exchange.fake import FakePort
from grinder.reconcile.actions import RunContext
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.explain import explain, explanation_of
from grinder.reconcile.gate_inputs import SHADOW_NOTE, GateSettings, ProposedWrite, gate_inputs_from
from grinder.reconcile.gates import first_block
from grinder.reconcile.routing import ActionKind
from grinder.remediation.executor import RemediationExecutor

NOW = 1_704_110_400_000  # 2024-01-01 12:00 UTC
OURS = "grinder_d_BTCUSDT_1_1704067200_1"


@dataclass(frozen=True)
class StandingProblem:
    """The operator state as the service reads it (gate O): ``problem`` None when known."""

    problem: str | None

    def refresh(self) -> None:
        pass

    def begin_write(self) -> None:
        pass

    def end_write(self) -> None:
        pass


@dataclass(frozen=True)
class Readings:
    config: ReconcileConfig
    armed: bool
    mainnet: bool
    whitelist: list[str] | None
    leader: bool
    heartbeat_age_s: float
    operator_problem: str | None
    live_anchor_ms: int | None
    dry_anchor_ms: int | None
    calls_used_day: int
    notional_used_day: Decimal


readings = st.builds(
    Readings,
    config=st.builds(
        ReconcileConfig,
        action=st.sampled_from(list(RemediationAction)),
        dry_run=st.booleans(),
        allow_active_remediation=st.booleans(),
        cooldown_seconds=st.sampled_from([0, 60, 300]),
        symbol_whitelist=st.sampled_from([[], ["BTCUSDT"], ["ETHUSDT"]]),
        require_whitelist=st.booleans(),
        max_flatten_notional_usdt=st.sampled_from([Decimal(100), Decimal(500)]),
        max_calls_per_day=st.sampled_from([1, 5, 100]),
        max_notional_per_day=st.sampled_from([Decimal(100), Decimal(1000)]),
    ),
    armed=st.booleans(),
    mainnet=st.booleans(),
    whitelist=st.sampled_from([None, [], ["BTCUSDT"], ["SOLUSDT", "BTCUSDT"]]),
    leader=st.booleans(),
    heartbeat_age_s=st.sampled_from([0.0, 2.5, 59.9, 75.0, math.inf]),
    operator_problem=st.sampled_from([None, "operator state file unreadable"]),
    live_anchor_ms=st.sampled_from([None, NOW - 10_000, NOW - 600_000]),
    dry_anchor_ms=st.sampled_from([None, NOW - 5_000, NOW - 600_000]),
    calls_used_day=st.integers(0, 6),
    notional_used_day=st.sampled_from([Decimal(0), Decimal(40), Decimal("999.5")]),
)
writes = st.one_of(
    st.builds(
        ProposedWrite,
        kind=st.just(ActionKind.CANCEL),
        symbol=st.sampled_from(["BTCUSDT", "ETHUSDT"]),
        client_order_id=st.sampled_from([OURS, "web_1", None]),
        notional=st.just(Decimal(0)),
    ),
    st.builds(
        ProposedWrite,
        kind=st.just(ActionKind.FLATTEN),
        symbol=st.sampled_from(["BTCUSDT", "ETHUSDT"]),
        client_order_id=st.none(),
        notional=st.sampled_from([None, Decimal(0), Decimal(120), Decimal(600)]),
    ),
)


def service_executor(r: Readings) -> tuple[RemediationExecutor, RunContext]:
    """The service's executor holding these readings, and the next run's context."""
    budget = BudgetTracker(config=r.config, clock=lambda: NOW)
    budget.state = BudgetState(
        day=utc_day(NOW), calls_used_day=r.calls_used_day, notional_used_day=r.notional_used_day
    )
    executor = RemediationExecutor(
        config=r.config,
        port=FakePort(),
        armed=r.armed,
        symbol_whitelist=r.whitelist,
        budget=budget,
        is_leader=lambda: r.leader,
        env={"ALLOW_MAINNET_TRADE": "1"} if r.mainnet else {},
        clock=lambda: NOW,
        expected_heartbeat_age=lambda: r.heartbeat_age_s,
        operator=StandingProblem(r.operator_problem),
    )
    ctx = RunContext(
        run_id="next",
        started_ms=NOW,
        live_anchor_ms=r.live_anchor_ms,
        dry_anchor_ms=r.dry_anchor_ms,
    )
    return executor, ctx


def service_report(r: Readings, executor: RemediationExecutor) -> dict[str, Any]:
    """``/status`` as the service writes it (``ReconcileService.status``), the parts read."""
    age = r.heartbeat_age_s
    return {
        "armed": executor.armed,
        "allow_mainnet_trade": r.mainnet,
        "symbol_whitelist": executor.symbol_whitelist,
        "config": r.config.summary(),
        "cooldown": {
            "seconds": r.config.cooldown_seconds,
            "source": "local",
            "live_anchor_ts_ms": r.live_anchor_ms,
            "dry_run_anchor_ts_ms": r.dry_anchor_ms,
        },
        "expected": {"heartbeat_age_s": None if math.isinf(age) else age},
        "operator": {"problem": r.operator_problem},
    }


def metrics_text(r: Readings) -> str:
    return (
        f"grinder_ha_is_leader {int(r.leader)}\n"
        f"grinder_reconcile_budget_calls_used_day {r.calls_used_day}\n"
        f"grinder_reconcile_budget_notional_used_day {r.notional_used_day}\n"
    )


@settings(max_examples=400, deadline=None)
@given(r=readings, write=writes)
def test_grinder_gates_builds_from_the_service_report_the_inputs_its_executor_builds(
    r: Readings, write: ProposedWrite
) -> None:
    executor, ctx = service_executor(r)
    scrape = parse_scrape("http://127.0.0.1:9090/metrics", metrics_text(r))
    reading = read_service(service_report(r, executor), scrape, NOW)
    assert reading.notes == ()  # nothing guessed: every reading came from the service
    ours = executor.gate_inputs(
        write.kind, write.symbol, write.client_order_id, write.notional, ctx
    )
    theirs = reading.gate_inputs(write)
    assert theirs == ours
    shown = explanation_of(theirs)
    assert shown == explain(
        executor, write.kind, write.symbol, write.client_order_id, write.notional, ctx
    )
    assert first_block(theirs) == executor.gate(
        write.kind, write.symbol, write.client_order_id, write.notional, ctx
    )


def test_dry_run_reads_its_own_anchor_its_own_run_budget_and_names_the_shadow_budget() -> None:
    config = ReconcileConfig(dry_run=True, max_calls_per_run=1)
    gate_settings = GateSettings(
        config, armed=False, symbol_whitelist=(), mainnet_trade_allowed=False
    )
    run = RunContext(
        run_id="r",
        started_ms=NOW,
        live_anchor_ms=NOW - 1,
        dry_anchor_ms=NOW - 2,
        budget=RunBudget(calls=0),
        dry_budget=RunBudget(calls=1),
    )
    inputs = gate_inputs_from(
        ProposedWrite(ActionKind.CANCEL, "BTCUSDT", OURS, Decimal(0)),
        gate_settings,
        is_leader=True,
        now_ms=NOW,
        heartbeat_age_s=None,
        run=run,
        day=BudgetState(day=utc_day(NOW)),
        operator_problem=None,
    )
    assert inputs.live is False
    assert inputs.cooldown_anchor_ms == NOW - 2
    assert inputs.budget[1].startswith("calls this run 1 + 1 > max_calls_per_run 1")
    assert inputs.budget_note == SHADOW_NOTE
    live = gate_inputs_from(
        ProposedWrite(ActionKind.CANCEL, "BTCUSDT", OURS, Decimal(0)),
        GateSettings(
            config.model_copy(update={"dry_run": False}),
            armed=False,
            symbol_whitelist=(),
            mainnet_trade_allowed=False,
        ),
        is_leader=True,
        now_ms=NOW,
        heartbeat_age_s=None,
        run=run,
        day=BudgetState(day=utc_day(NOW)),
        operator_problem=None,
    )
    assert live.cooldown_anchor_ms == NOW - 1
    assert live.budget[0] is None
    assert live.budget_note == ""
