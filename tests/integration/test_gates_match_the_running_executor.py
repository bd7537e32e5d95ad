"""``grinder gates`` reads what the running service's executor reads, through its real ``/status``.

The property test (``tests/unit/test_gate_inputs.py``) holds ``read_service`` and
``gate_inputs_from`` to the executor over a ``/status`` written by the test. Here the
``/status`` is the running service's own (``ServiceViews.status`` over the control
socket), after each word an operator can give: the inputs ``grinder gates`` builds from
it are the executor's, field by field, and the chain's verdict is the executor's. A
``/status`` that reports a setting from anywhere but the objects the executor reads (the
options at start instead of the settings in force, say) fails here.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from grinder.cli.gates_reading import read_service
from grinder.reconcile.config import RemediationAction
from grinder.reconcile.gate_inputs import ProposedWrite
from grinder.reconcile.gates import GateInputs, first_block
from grinder.reconcile.labels import BlockReason
from grinder.reconcile.routing import ActionKind
from tests.integration.test_service_sim import Rig, ServiceFactory, make_service
from tests.support.ids import ours

__all__ = ["make_service"]  # the fixture, shared with the service's own tests

WRITES = (
    ProposedWrite(ActionKind.CANCEL, "BTCUSDT", ours(7), Decimal(0)),
    ProposedWrite(ActionKind.CANCEL, "DOGEUSDT", ours(8), Decimal(0)),
    ProposedWrite(ActionKind.FLATTEN, "BTCUSDT", None, Decimal(120)),
)
WHO = {"by": "alice@host1", "reason": "drill"}


def _pinned(inputs: GateInputs, like: GateInputs) -> GateInputs:
    """``inputs`` read at ``like``'s instant: the clock and the heartbeat's age move
    between two readings; everything else must not."""
    return dataclasses.replace(inputs, now_ms=like.now_ms, heartbeat_age_s=like.heartbeat_age_s)


async def _agree(rig: Rig) -> dict[str, Any]:
    """The running service's ``/status``, checked to give ``grinder gates`` the executor's
    inputs and verdict for every write in ``WRITES``."""
    status = await rig.control("GET", "/status")
    executor = rig.running.executor
    reading = read_service(status, None, executor.clock())
    settings = executor.gate_settings()
    assert reading.settings.armed == settings.armed
    assert reading.settings.mainnet_trade_allowed == settings.mainnet_trade_allowed
    assert reading.settings.symbol_whitelist == settings.symbol_whitelist
    assert reading.settings.config.summary() == settings.config.summary()
    for write in WRITES:
        theirs = reading.gate_inputs(write)
        mine = executor.gate_inputs(
            write.kind, write.symbol, write.client_order_id, write.notional, reading.run
        )
        assert _pinned(theirs, mine) == mine, write
        assert first_block(theirs) == first_block(mine), write
    return status


async def test_grinder_gates_reads_the_executors_settings_after_every_word(
    make_service: ServiceFactory,
) -> None:
    rig = await make_service(live=True, action=RemediationAction.CANCEL_ALL)
    status = await _agree(rig)
    assert (status["armed"], status["allow_mainnet_trade"]) == (True, True)
    await rig.control("POST", "/arm", {"armed": False, **WHO})
    assert (await _agree(rig))["armed"] is False
    await rig.control("POST", "/mainnet", {"allow": False, **WHO})
    assert (await _agree(rig))["allow_mainnet_trade"] is False
    await rig.control("POST", "/set", {"field": "action", "value": "none", **WHO})
    assert (await _agree(rig))["config"]["action"] == "none"
    await rig.control("POST", "/set", {"field": "dry_run", "value": "true", **WHO})
    assert (await _agree(rig))["mode"] == "dry_run"
    await rig.control("POST", "/lift", {"name": "all", **WHO})
    status = await _agree(rig)
    assert (status["armed"], status["allow_mainnet_trade"], status["mode"]) == (True, True, "live")
    assert status["config"]["action"] == "cancel_all"


async def test_in_dry_run_grinder_gates_reads_the_shadow_budget_the_executor_judges_by(
    make_service: ServiceFactory,
) -> None:
    """Dry-run spends its shadow budget on what it plans; the real one stays at 0. Once the
    shadow has used the day, the executor blocks the next plan on the budget, and
    ``grinder gates`` must say so too (it read the real budget's 0 and passed it)."""
    rig = await make_service(action=RemediationAction.CANCEL_ALL, max_calls_per_day=1)
    planned = "grinder_reconcile_action_planned_total"
    await rig.place_order(ours(9))
    await rig.wait_for(lambda: rig.counter(planned, action="cancel_all") >= 1)
    status = await _agree(rig)
    assert status["mode"] == "dry_run"
    assert status["budget"]["calls_used_day"] == 0  # nothing was spent for real
    assert status["dry_run_budget"]["calls_used_day"] == 1
    reading = read_service(status, None, rig.running.executor.clock())
    assert first_block(reading.gate_inputs(WRITES[0])) is BlockReason.MAX_CALLS_PER_DAY
    assert (await rig.state())["counters"]["writeRequests"] == 0
