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
