"""Every gate of the remediation chain with its verdict, for operators.

``RemediationExecutor.gate`` stops at the first gate that blocks, which is what
execution needs. Troubleshooting needs the whole chain: which gates pass, which
fail, and which one blocks first. ``explanation_of`` evaluates every gate of the one
table (``grinder.reconcile.gates.GATES``) over one ``GateInputs`` and changes nothing;
``explain`` does it over the inputs ``gate`` reads (``RemediationExecutor.gate_inputs``),
so the first failing gate it reports is the reason ``gate`` returns (a property-based
test checks it). ``grinder gates`` builds its inputs from what the service reports with
the same function the executor uses (``grinder.reconcile.gate_inputs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from grinder.reconcile.actions import RunContext
from grinder.reconcile.gates import (
    HOW_TO_OPEN,
    GateCheck,
    GateInputs,
    Verdict,
    evaluate,
    expected_state_detail,
)
from grinder.reconcile.labels import BlockReason, Mode
from grinder.reconcile.routing import ActionKind

__all__ = [
    "HOW_TO_OPEN",
    "Explanation",
    "GateCheck",
    "GateInputSource",
    "Outcome",
    "Verdict",
    "expected_state_detail",
    "explain",
    "explanation_of",
]


class GateInputSource(Protocol):
    """Where ``explain`` reads the gates' inputs and the mode: the executor
    (``RemediationExecutor``), which reads them now -- the same as its own ``gate`` reads."""

    @property
    def mode(self) -> Mode: ...

    def gate_inputs(
        self,
        kind: ActionKind,
        symbol: str,
        client_order_id: str | None,
        notional: Decimal | None,
        ctx: RunContext,
    ) -> GateInputs: ...


class Outcome(StrEnum):
    BLOCKED = "blocked"
    PLANNED = "planned"
    """Dry-run: every evaluated gate passes; the action would be planned, not sent."""
    EXECUTE = "execute"
    """Live: every gate passes; the write would be sent."""


@dataclass(frozen=True, slots=True)
class Explanation:
    kind: ActionKind
    symbol: str
    mode: Mode
    checks: tuple[GateCheck, ...]

    @property
    def first_block(self) -> BlockReason | None:
        """The reason ``RemediationExecutor.gate`` returns: the first failing gate."""
        for check in self.checks:
            if check.verdict is Verdict.FAIL:
                return check.reason
        return None

    @property
    def first_blocking_check(self) -> GateCheck | None:
        return next((c for c in self.checks if c.verdict is Verdict.FAIL), None)

    @property
    def outcome(self) -> Outcome:
        if self.first_block is not None:
            return Outcome.BLOCKED
        return Outcome.PLANNED if self.mode is Mode.DRY_RUN else Outcome.EXECUTE


def explain(
    executor: GateInputSource,
    kind: ActionKind,
    symbol: str,
    client_order_id: str | None,
    notional: Decimal | None,
    ctx: RunContext,
) -> Explanation:
    """Every gate for this write, evaluated independently (nothing is changed): the same
    table and the same inputs ``RemediationExecutor.gate`` decides with."""
    return explanation_of(executor.gate_inputs(kind, symbol, client_order_id, notional, ctx))


def explanation_of(inputs: GateInputs) -> Explanation:
    """Every gate evaluated over ``inputs`` (nothing is changed)."""
    mode = Mode.LIVE if inputs.live else Mode.DRY_RUN
    return Explanation(inputs.kind, inputs.symbol, mode, evaluate(inputs))
