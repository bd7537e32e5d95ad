"""The remediation executor: the gate chain, and the exchange writes it guards.

Every write passes the gates in order; the first that fails is the block
reason. Dry-run is a faithful preview: the arming gates (3-5) are skipped and
nothing is sent, but every other gate is evaluated, with cooldown and budget
tracked in memory, so a plan is exactly what live mode would execute.

The gates read ``config`` and ``armed`` at evaluation time, and the last
evaluation happens synchronously right before the write (no ``await`` in
between), so a rollback made on the live objects takes effect before the next
exchange write.

With HA (``is_leader`` given, gate 0), the budget reservation that immediately
precedes each write also re-checks leadership atomically in the shared store
(fencing); a refusal there blocks the write with ``not_leader``. A shared
``cooldown`` source makes the cooldown run from the last write of *any*
instance.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Protocol

from grinder.exchange.port import CancelOutcome, ExchangeError, ExchangePort
from grinder.reconcile.budget import BudgetRefused, BudgetStateError, BudgetTracker, RunBudget
from grinder.reconcile.config import ReconcileConfig, RemediationAction, mainnet_trade_allowed
from grinder.reconcile.identity import (
    ClientOrderIdError,
    Ownership,
    ownership,
    remediation_client_order_id,
)
from grinder.reconcile.labels import BlockReason, FailReason, ResultStatus, SkipReason
from grinder.reconcile.routing import ActionKind, Routed
from grinder.reconcile.types import ZERO, Mismatch, PositionSide, Side

DRY_RUN = "dry_run"
LIVE = "live"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


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


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The outcome of one remediation candidate."""

    run_id: str
    kind: ActionKind
    mismatch: Mismatch
    status: ResultStatus
    mode: str
    reason: str | None = None
    notional: Decimal | None = None
    qty: Decimal | None = None
    remediation_order_id: str | None = None
    error: str | None = None
    ts_ms: int = 0

    @property
    def symbol(self) -> str:
        return self.mismatch.symbol

    @property
    def client_order_id(self) -> str | None:
        return self.mismatch.client_order_id


class CooldownSource(Protocol):
    """The time of the last remediation write of any instance (HA), None when unknown."""

    def last_write_ms(self) -> int | None: ...


def _latest(*values: int | None) -> int | None:
    return max((v for v in values if v is not None), default=None)


class RemediationReporter(Protocol):
    """Told of each attempt before it is made, and of each result."""

    def attempt(self, ctx: RunContext, routed: Routed, mode: str) -> None: ...

    def result(self, ctx: RunContext, result: ActionResult) -> None: ...


class RemediationExecutor:
    """Runs remediation candidates through the gates and, when all pass, the port."""

    def __init__(
        self,
        config: ReconcileConfig,
        port: ExchangePort,
        armed: bool = False,
        symbol_whitelist: Iterable[str] | None = None,
        *,
        budget: BudgetTracker | None = None,
        dry_budget: BudgetTracker | None = None,
        is_leader: Callable[[], bool] | None = None,
        cooldown: CooldownSource | None = None,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        reporter: RemediationReporter | None = None,
        expected_heartbeat_age: Callable[[], float] | None = None,
    ) -> None:
        """``expected_heartbeat_age`` (gate E): seconds since a bot last wrote the expected
        state detection reads (``math.inf``: never); None means there is no such source,
        which blocks like a state no bot ever wrote. The service passes its expected
        source's (``grinder.service.state.ExpectedSource.heartbeat_age_s``)."""
        self.config = config
        self.port = port
        self.armed = armed
        self._whitelist = list(symbol_whitelist) if symbol_whitelist is not None else None
        self.clock = clock
        self.budget = budget if budget is not None else BudgetTracker(config=config, clock=clock)
        self._dry_budget = dry_budget
        self.is_leader = is_leader if is_leader is not None else (lambda: True)
        self.cooldown = cooldown
        self.env = env
        self.reporter = reporter
        self.expected_heartbeat_age = expected_heartbeat_age
        self.last_remediation_ms: int | None = None
        self._shared_seen_ms: int | None = None
        self._last_planned_ms: int | None = None
        self._seq = 0
        self._run_seq = 0
        self._instance = secrets.token_hex(3)

    # --- live settings -------------------------------------------------------------------

    @property
    def symbol_whitelist(self) -> list[str]:
        """The whitelist in force: the one given to the executor, else the config's."""
        return (
            self._whitelist if self._whitelist is not None else list(self.config.symbol_whitelist)
        )

    @symbol_whitelist.setter
    def symbol_whitelist(self, value: Iterable[str]) -> None:
        self._whitelist = list(value)

    @property
    def last_planned_ms(self) -> int | None:
        """When dry-run last planned an action (its in-memory cooldown anchor)."""
        return self._last_planned_ms

    @property
    def mode(self) -> str:
        return DRY_RUN if self.config.dry_run else LIVE

    def dry_budget(self) -> BudgetTracker:
        """The in-memory budget dry-run spends: the one given, else a copy of the real
        one made at first use, raised to the real one's usage at every run start. It is
        never persisted."""
        if self._dry_budget is None:
            self._dry_budget = self.budget.shadow()
        return self._dry_budget

    # --- runs ----------------------------------------------------------------------------

    def begin_run(self, run_id: str | None = None) -> RunContext:
        now = self.clock()
        if run_id is None:
            self._run_seq += 1
            run_id = f"{now}-{self._instance}-{self._run_seq}"
        # HA: what the other instances spent, and when any of them last wrote.
        self.budget.sync(now)
        if self._dry_budget is not None:
            # The preview spends a copy; what was really spent since (live, or other
            # instances) counts for it too, as it would for live mode.
            self._dry_budget.state = self._dry_budget.state.at_least(self.budget.state)
        live_anchor, dry_anchor = self.cooldown_anchors()
        return RunContext(
            run_id=run_id, started_ms=now, live_anchor_ms=live_anchor, dry_anchor_ms=dry_anchor
        )

    def cooldown_anchors(self) -> tuple[int | None, int | None]:
        """The cooldown anchors (gate 6) of a run starting now: ``(live, dry_run)``.

        Live: the last write of this instance or, with a shared ``cooldown`` source
        (HA), of any instance -- the source is read now. Dry-run: also the last plan.
        ``begin_run`` uses exactly these; the service's ``/status`` reports them.
        """
        shared = self.cooldown.last_write_ms() if self.cooldown is not None else None
        self._shared_seen_ms = _latest(self._shared_seen_ms, shared)
        live = _latest(self.last_remediation_ms, shared)
        # A preview of live mode: a real execution starts a cooldown for plans too.
        return live, _latest(self._last_planned_ms, live)

    @property
    def last_write_known_ms(self) -> int | None:
        """The latest remediation write this instance knows of, without reading anything:
        its own, or another instance's as last read from the shared ``cooldown`` source."""
        return _latest(self.last_remediation_ms, self._shared_seen_ms)

    # --- the gate chain ------------------------------------------------------------------

    def gate(
        self,
        kind: ActionKind,
        symbol: str,
        client_order_id: str | None,
        notional: Decimal | None,
        ctx: RunContext,
        *,
        through_ownership_only: bool = False,
    ) -> BlockReason | None:
        """The first gate that blocks this write, or None when all pass.

        ``notional`` None for a flatten means no mark price is available.
        ``through_ownership_only`` stops after gate E, the one after gate 8 (used before
        the price is read).

        Gate E (``expected_state_stale``): the expected state is trusted only while a bot
        keeps writing it, a heartbeat at most ``expected_heartbeat_max_age_s`` old. It is
        evaluated in dry-run too, so a plan is what live mode would do.
        """
        cfg = self.config
        now = self.clock()
        if not self.is_leader():
            return BlockReason.NOT_LEADER
        if cfg.action is RemediationAction.NONE:
            return BlockReason.ACTION_IS_NONE
        wanted = (
            RemediationAction.CANCEL_ALL if kind is ActionKind.CANCEL else RemediationAction.FLATTEN
        )
        if not cfg.action.permits(wanted):
            return BlockReason.ACTION_NOT_PERMITTED
        live = not cfg.dry_run
        if live:
            if not cfg.allow_active_remediation:
                return BlockReason.ALLOW_ACTIVE_REMEDIATION_FALSE
            if not self.armed:
                return BlockReason.NOT_ARMED
            if not mainnet_trade_allowed(self.env if self.env is not None else os.environ):
                return BlockReason.ENV_VAR_MISSING
        anchor = ctx.live_anchor_ms if live else ctx.dry_anchor_ms
        if anchor is not None and now - anchor < cfg.cooldown_seconds * 1000:
            return BlockReason.COOLDOWN_NOT_ELAPSED
        whitelist = self.symbol_whitelist
        if not whitelist:
            if cfg.require_whitelist:
                return BlockReason.WHITELIST_REQUIRED
        elif symbol not in whitelist:
            return BlockReason.SYMBOL_NOT_IN_WHITELIST
        if kind is ActionKind.CANCEL:
            verdict = ownership(
                client_order_id,
                prefix=cfg.client_order_id_prefix,
                strategy_allowlist=cfg.allowed_strategies,
            )
            if verdict is Ownership.NO_GRINDER_PREFIX:
                return BlockReason.NO_GRINDER_PREFIX
            if verdict is Ownership.STRATEGY_NOT_ALLOWED:
                return BlockReason.STRATEGY_NOT_ALLOWED
        source = self.expected_heartbeat_age
        age = source() if source is not None else float("inf")
        if not age <= cfg.expected_heartbeat_max_age_s:  # never written (inf), stale, or NaN
            return BlockReason.EXPECTED_STATE_STALE
        if through_ownership_only:
            return None
        if kind is ActionKind.FLATTEN:
            if notional is None:
                return BlockReason.PRICE_UNAVAILABLE
            if notional > cfg.max_flatten_notional_usdt:
                return BlockReason.NOTIONAL_EXCEEDS_LIMIT
        if ctx.actions >= cfg.max_orders_per_action:
            return BlockReason.MAX_ORDERS_REACHED
        if symbol not in ctx.symbols and len(ctx.symbols) >= cfg.max_symbols_per_action:
            return BlockReason.MAX_SYMBOLS_REACHED
        tracker = self.budget if live else self.dry_budget()
        run_budget = ctx.budget if live else ctx.dry_budget
        return tracker.check(run_budget, notional or ZERO, now)

    # --- execution -----------------------------------------------------------------------

    async def execute(self, routed: Routed, ctx: RunContext) -> ActionResult:
        """Gate one candidate and, if every gate passes and the mode is live, perform it."""
        if self.reporter is not None:
            self.reporter.attempt(ctx, routed, self.mode)
        if routed.kind is ActionKind.CANCEL:
            result = await self._cancel(routed, ctx)
        else:
            result = await self._flatten(routed, ctx)
        if self.reporter is not None:
            self.reporter.result(ctx, result)
        return result

    def _result(
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
    ) -> ActionResult:
        return ActionResult(
            run_id=ctx.run_id,
            kind=routed.kind,
            mismatch=routed.mismatch,
            status=status,
            mode=self.mode,
            reason=reason,
            notional=notional,
            qty=qty,
            remediation_order_id=remediation_order_id,
            error=error,
            ts_ms=self.clock(),
        )

    def _commit(
        self,
        routed: Routed,
        ctx: RunContext,
        notional: Decimal,
        *,
        qty: Decimal | None = None,
        cid: str | None = None,
    ) -> ActionResult | None:
        """Count a write that passed every gate: plan it (dry-run) or reserve its budget (live).

        Returns the final result for dry-run and for a budget that cannot be
        persisted; None when the live write may proceed.
        """
        now = self.clock()
        ctx.actions += 1
        new_symbol = routed.mismatch.symbol not in ctx.symbols
        ctx.symbols.add(routed.mismatch.symbol)
        if self.config.dry_run:
            self.dry_budget().reserve(ctx.dry_budget, notional, now)
            self._last_planned_ms = now
            return self._result(
                routed,
                ctx,
                ResultStatus.PLANNED,
                notional=notional,
                qty=qty,
                remediation_order_id=cid,
            )
        try:
            self.budget.reserve(ctx.budget, notional, now)
        except BudgetRefused as exc:
            # Nothing was reserved and nothing will be sent: undo this action's count.
            ctx.actions -= 1
            if new_symbol:
                ctx.symbols.discard(routed.mismatch.symbol)
            return self._result(
                routed,
                ctx,
                ResultStatus.BLOCKED,
                reason=exc.reason,
                notional=notional,
                qty=qty,
                error=exc.detail,
            )
        except BudgetStateError as exc:
            return self._result(
                routed,
                ctx,
                ResultStatus.FAILED,
                reason=FailReason.BUDGET_STATE_ERROR,
                notional=notional,
                qty=qty,
                error=str(exc),
            )
        return None

    def _executed(self, ctx: RunContext) -> None:
        now = self.clock()
        self.last_remediation_ms = now
        ctx.executed += 1

    def _failed(self, exc: ExchangeError) -> None:
        """A write that failed with its outcome unknown (a timeout, an unreadable answer)
        may have been executed: the cooldown starts as if it had (its budget is spent)."""
        if getattr(exc, "outcome_unknown", False):
            self.last_remediation_ms = self.clock()

    async def _cancel(self, routed: Routed, ctx: RunContext) -> ActionResult:
        m = routed.mismatch
        reason = self.gate(ActionKind.CANCEL, m.symbol, m.client_order_id, ZERO, ctx)
        if reason is not None:
            return self._result(routed, ctx, ResultStatus.BLOCKED, reason=reason)
        done = self._commit(routed, ctx, ZERO)
        if done is not None:
            return done
        assert m.client_order_id is not None  # ownership gate passed
        try:
            outcome = await self.port.cancel_order(m.symbol, m.client_order_id, is_algo=m.is_algo)
        except ExchangeError as exc:
            self._failed(exc)
            return self._result(
                routed, ctx, ResultStatus.FAILED, reason=FailReason.PORT_ERROR, error=str(exc)
            )
        self._executed(ctx)
        detail = None if outcome is CancelOutcome.CANCELED else outcome.value
        return self._result(routed, ctx, ResultStatus.EXECUTED, notional=ZERO, error=detail)

    async def _flatten(self, routed: Routed, ctx: RunContext) -> ActionResult:
        m = routed.mismatch
        side_key = m.position_side or PositionSide.BOTH
        reason = self.gate(
            ActionKind.FLATTEN, m.symbol, None, None, ctx, through_ownership_only=True
        )
        if reason is not None:
            return self._result(routed, ctx, ResultStatus.BLOCKED, reason=reason)
        # Read the position again: never trade more than what is there now.
        try:
            positions = await self.port.fetch_positions([m.symbol])
            price = await self.port.get_mark_price(m.symbol)
            step = await self.port.get_step_size(m.symbol)
        except ExchangeError as exc:
            return self._result(
                routed, ctx, ResultStatus.FAILED, reason=FailReason.PORT_ERROR, error=str(exc)
            )
        current = next(
            (p.qty for p in positions if p.symbol == m.symbol and p.position_side == side_key), ZERO
        )
        qty = abs(current)
        if step is not None and step > 0:
            qty = (qty / step).to_integral_value(rounding=ROUND_DOWN) * step
        if qty == ZERO:
            return self._result(
                routed, ctx, ResultStatus.SKIPPED, reason=SkipReason.ALREADY_RESOLVED, qty=ZERO
            )
        notional = None if price is None or price <= 0 else qty * price
        reason = self.gate(ActionKind.FLATTEN, m.symbol, None, notional, ctx)
        if reason is not None:
            return self._result(
                routed, ctx, ResultStatus.BLOCKED, reason=reason, notional=notional, qty=qty
            )
        assert notional is not None  # gate 9 passed
        cfg = self.config
        self._seq += 1
        try:
            cid = remediation_client_order_id(
                strategy_id=cfg.strategy_id,
                symbol=m.symbol,
                ts_seconds=self.clock() // 1000,
                seq=self._seq,
                prefix=cfg.client_order_id_prefix,
            )
        except ClientOrderIdError as exc:
            return self._result(
                routed,
                ctx,
                ResultStatus.FAILED,
                reason=FailReason.CLIENT_ORDER_ID_ERROR,
                error=str(exc),
                qty=qty,
            )
        done = self._commit(routed, ctx, notional, qty=qty, cid=cid)
        if done is not None:
            return done
        side = Side.SELL if current > 0 else Side.BUY
        try:
            await self.port.place_reduce_only_market(
                m.symbol, side, qty, position_side=side_key, client_order_id=cid
            )
        except ExchangeError as exc:
            self._failed(exc)
            return self._result(
                routed,
                ctx,
                ResultStatus.FAILED,
                reason=FailReason.PORT_ERROR,
                error=str(exc),
                notional=notional,
                qty=qty,
                remediation_order_id=cid,
            )
        self._executed(ctx)
        return self._result(
            routed,
            ctx,
            ResultStatus.EXECUTED,
            notional=notional,
            qty=qty,
            remediation_order_id=cid,
        )
