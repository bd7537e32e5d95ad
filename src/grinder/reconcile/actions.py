"""One remediation action as the executor and its reporters share it: the run it belongs
to (``RunContext``), its outcome (``ActionResult``), and what the executor asks of the
world around it (the shared cooldown, the operator's standing words, a reporter), and
its write as it stands between attempts (``WriteInFlight``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from grinder.budget.ledger import RunBudget
from grinder.reconcile.labels import AttemptOutcome, BlockReason, Mode, ResultStatus
from grinder.reconcile.routing import ActionKind, Routed
from grinder.reconcile.types import Mismatch


@dataclass(slots=True)
class RunContext:
    """Per-run state of the executor: limits, run budget and cooldown anchors."""

    run_id: str
    started_ms: int
    live_anchor_ms: int | None
    dry_anchor_ms: int | None
    budget: RunBudget = field(default_factory=RunBudget)
    dry_budget: RunBudget = field(default_factory=RunBudget)
    actions: int = 0
    symbols: set[str] = field(default_factory=set)
    executed: int = 0
    in_flight: ActionResult | None = None
    """The result to report if the action now executing is cut short (a service stop)
    after it sent something: a write awaiting its answer (failed, outcome unknown), or
    the pause or position read before its next attempt (failed as the last one did)."""
    action_mode: Mode | None = None
    """The mode the action now executing started in: its result's ``mode``, whatever a
    rollback changes meanwhile."""


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The outcome of one remediation candidate."""

    run_id: str
    kind: ActionKind
    mismatch: Mismatch
    status: ResultStatus
    mode: Mode
    reason: str | None = None
    notional: Decimal | None = None
    qty: Decimal | None = None
    remediation_order_id: str | None = None
    error: str | None = None
    ts_ms: int = 0
    attempts: tuple[AttemptOutcome, ...] = ()
    """Each attempt to send the write, in order (empty when none was made)."""
    blocked_by: tuple[BlockReason, ...] = ()
    """Every gate of the chain that blocked it, in order (the first is ``reason``); empty
    when the chain did not (a block at the wire or the budget's reservation: ``reason``)."""
    error_type: str | None = None
    """The type of the error it failed with (``IpBanned``, ...): what tells one failure
    from another, where the error's text carries times and figures."""

    @property
    def symbol(self) -> str:
        return self.mismatch.symbol

    @property
    def client_order_id(self) -> str | None:
        return self.mismatch.client_order_id

    @property
    def blocking(self) -> tuple[str, ...]:
        """The gates that block it: ``blocked_by``, else ``reason``; empty unless blocked."""
        if self.status is not ResultStatus.BLOCKED:
            return ()
        return tuple(self.blocked_by) or ((self.reason,) if self.reason is not None else ())


class CooldownSource(Protocol):
    """The time of the last remediation write of any instance (HA), None when unknown."""

    def last_write_ms(self) -> int | None: ...


class OperatorGuard(Protocol):
    """The operator's standing words (``grinder.service.operator.OperatorControl``): read at
    every run's start and, atomically with marking the write as on its way, right before
    every request; what they say is applied to the live settings the gates read."""

    @property
    def problem(self) -> str | None: ...

    def refresh(self) -> None: ...

    def begin_write(self) -> None: ...

    def end_write(self) -> None: ...


class RemediationReporter(Protocol):
    """Told of each attempt before it is made, and of each result."""

    def attempt(self, ctx: RunContext, routed: Routed, mode: Mode) -> None: ...

    def result(self, ctx: RunContext, result: ActionResult) -> None: ...


class ResultBuilder(Protocol):
    """What makes an action's result: the executor (``RemediationExecutor.result``)."""

    def result(
        self,
        routed: Routed,
        ctx: RunContext,
        status: ResultStatus,
        *,
        reason: str | None = None,
        notional: Decimal | None = None,
        qty: Decimal | None = None,
        remediation_order_id: str | None = None,
        error: str | None = None,
        attempts: Iterable[AttemptOutcome] = (),
        error_type: str | None = None,
    ) -> ActionResult: ...


@dataclass(slots=True)
class WriteInFlight:
    """An action's write as it stands between attempts -- what its results report (a
    flatten's quantity and client order id change when it reads its position again)."""

    notional: Decimal | None = None
    qty: Decimal | None = None
    remediation_order_id: str | None = None

    def result(
        self,
        executor: ResultBuilder,
        routed: Routed,
        ctx: RunContext,
        status: ResultStatus,
        attempts: Iterable[AttemptOutcome],
        *,
        reason: str | None = None,
        error: str | None = None,
        error_type: str | None = None,
    ) -> ActionResult:
        return executor.result(
            routed,
            ctx,
            status,
            reason=reason,
            error=error,
            error_type=error_type,
            notional=self.notional,
            qty=self.qty,
            remediation_order_id=self.remediation_order_id,
            attempts=attempts,
        )
