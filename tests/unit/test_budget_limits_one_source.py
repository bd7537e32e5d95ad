"""The budget's limits are read from one configuration.

The budget gate judges a write by the executor's configuration (``gate_inputs_from``);
the reservation, the shared store's atomic check and ``/status``'s remaining figures by
the budget tracker's. An executor given a tracker (or a dry-run shadow) whose limits are
not its own is refused when it is built, so the two can never disagree about a write.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from grinder.budget.ledger import BUDGET_LIMITS, RunBudget, check_same_limits
from grinder.budget.tracker import BudgetTracker
from grinder.exchange.fake import FakePort
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.routing import ActionKind
from grinder.remediation.executor import RemediationExecutor

NOW = 1_704_110_400_000

LOOSER = {
    "max_calls_per_run": 50,
    "max_notional_per_run": Decimal(50_000),
    "max_calls_per_day": 500,
    "max_notional_per_day": Decimal(500_000),
}


def test_the_limits_listed_are_the_ones_the_budget_gate_reads() -> None:
    assert set(LOOSER) == set(BUDGET_LIMITS)
    assert all(name in ReconcileConfig.model_fields for name in BUDGET_LIMITS)


@pytest.mark.parametrize("name", BUDGET_LIMITS)
@pytest.mark.parametrize("which", ["budget", "dry_budget"])
def test_an_executor_refuses_a_budget_whose_limits_are_not_its_own(name: str, which: str) -> None:
    config = ReconcileConfig()
    other = ReconcileConfig(**{name: LOOSER[name]})
    tracker = BudgetTracker(config=other, clock=lambda: NOW)
    with pytest.raises(ValueError, match=f"{name} {getattr(config, name)} != {LOOSER[name]}"):
        RemediationExecutor(config, FakePort(), clock=lambda: NOW, **{which: tracker})


def test_the_gate_and_the_tracker_then_agree_on_every_write() -> None:
    """One object or two with the same limits: the gate's verdict is the tracker's."""
    config = ReconcileConfig(max_calls_per_day=1)
    copy = ReconcileConfig(max_calls_per_day=1)
    for tracker in (BudgetTracker(config=config), BudgetTracker(config=copy)):
        executor = RemediationExecutor(config, FakePort(), budget=tracker, clock=lambda: NOW)
        tracker.reserve(RunBudget(), Decimal(0), NOW)
        assert tracker.check(RunBudget(), Decimal(0), NOW) is not None
        run = executor.begin_run()
        inputs = executor.gate_inputs(ActionKind.CANCEL, "BTCUSDT", None, Decimal(0), run)
        assert inputs.budget[0] == tracker.check(RunBudget(), Decimal(0), NOW)


def test_check_same_limits_accepts_equal_limits_and_names_each_difference() -> None:
    check_same_limits(ReconcileConfig(), ReconcileConfig(), ReconcileConfig(dry_run=False))
    with pytest.raises(
        ValueError, match=f"max_calls_per_day {ReconcileConfig().max_calls_per_day} != 500"
    ):
        check_same_limits(ReconcileConfig(), ReconcileConfig(max_calls_per_day=500))
