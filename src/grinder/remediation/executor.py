"""The remediation executor: the gate chain, and the exchange writes it guards.

Every write passes the gates in order; the first that fails is the block
reason, and a blocked result names every gate that failed (``blocked_by``).
Dry-run is a faithful preview: the arming gates (3-5) are skipped and nothing
is sent, but every other gate is evaluated, with cooldown and budget tracked
in memory, so a plan is exactly what live mode would execute.

The gates read ``config`` and ``armed`` at evaluation time, and the last
evaluation happens synchronously right before the write (no ``await`` in
between), so a rollback made on the live objects takes effect before the next
exchange write.

A write still unanswered when its run is cancelled (the service's stop) is
reported as failed (``port_error``, outcome unknown) before the cancellation
goes on, so the audit trail has a result for every attempt that was sent.

With HA (``is_leader`` given, gate 0), the budget reservation that immediately
precedes each write also re-checks leadership atomically in the shared store
(fencing); a refusal there blocks the write with ``not_leader``. A shared
``cooldown`` source makes the cooldown run from the last write of *any*
instance.

**Every attempt is authorized at the wire.** The port calls ``authorize`` right
before each request leaves (``grinder.exchange.port``). It checks, in this order:
the decision still holds (a cancel: the bot's expected state, read now, does not
hold the order open); the operator's settings still allow the write (gates 0-8,
and dry-run still off); and, with HA, the leadership that let this instance act
has at least ``MIN_WRITE_WINDOW_MS`` left. The window it grants -- at most
``WRITE_WINDOW_MS``, never past the local lease deadline (``reconcile.write_window``)
-- becomes the request's ``recvWindow``, so the exchange itself refuses a request
that reaches it later.

**Attempts are bounded.** One action (one budget reservation) makes at most
``max_write_attempts`` requests: a failure the port marks ``repeatable`` (a 5xx,
a timeout, ``-1021``; never a 429 or 418) is followed by another attempt after
``RETRY_DELAYS_S``, authorized anew; a flatten first reads the position again and
never sends more than the action reserved. Each attempt's ``AttemptOutcome`` is in
the result (``attempts``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import TypeVar

from grinder.budget.ledger import BudgetRefused, BudgetStateError, check_same_limits
from grinder.budget.tracker import BudgetTracker
from grinder.clock import Clock, wall_clock_ms
from grinder.config_sources import mainnet_trade_allowed
from grinder.exchange.port import (
    Authorize,
    CancelOutcome,
    ExchangeError,
    ExchangePort,
    WriteWithheld,
)
from grinder.reconcile.actions import (
    ActionResult,
    CooldownSource,
    OperatorGuard,
    RemediationReporter,
    RunContext,
    WriteInFlight,
)
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.gate_inputs import GateSettings, ProposedWrite, gate_inputs_from
from grinder.reconcile.gates import GateInputs, every_block, first_block
from grinder.reconcile.identity import REMEDIATION_SEQ_MAX, remediation_client_order_id
from grinder.reconcile.labels import (
    AttemptOutcome,
    BlockReason,
    FailReason,
    Mode,
    ResultStatus,
    SkipReason,
)
from grinder.reconcile.routing import ActionKind, Routed, cancel_still_wanted
from grinder.reconcile.types import ZERO, ExpectedOrder, Mismatch
from grinder.reconcile.write_window import write_window_ms
from grinder.remediation.flatten_action import FlattenAction

DRY_RUN = Mode.DRY_RUN
LIVE = Mode.LIVE
T = TypeVar("T")
CUT_SHORT = "no answer before the run was cancelled (service stop): the outcome is unknown"

MAX_WRITE_ATTEMPTS = 3
"""Requests one remediation action may send (the first and its repeats)."""
RETRY_DELAYS_S = (0.2, 0.5)
"""Pause before the 2nd and each later attempt of one action (the last value repeats)."""


def _latest(*values: int | None) -> int | None:
    return max((v for v in values if v is not None), default=None)


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
        clock: Clock = wall_clock_ms,
        reporter: RemediationReporter | None = None,
        expected_heartbeat_age: Callable[[], float] | None = None,
        lease_window_ms: Callable[[], int] | None = None,
        read_expected_order: Callable[[str], ExpectedOrder | None] | None = None,
        max_write_attempts: int = MAX_WRITE_ATTEMPTS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        operator: OperatorGuard | None = None,
    ) -> None:
        """``expected_heartbeat_age`` (gate E): seconds since a bot last wrote the expected
        state detection reads (``math.inf``: never; None: no such source, which blocks like
        a state no bot ever wrote). ``lease_window_ms`` (HA): milliseconds left of the
        leadership that lets this instance act (0: none). ``read_expected_order``: the bot's
        record of one order read now, not from a mirror (a cancel is confirmed with it at the
        wire). ``operator``: the operator's standing words (gate O), read before every request.
        ``budget``, ``dry_budget``: they set the limits ``config`` does (else ``ValueError``)."""
        if max_write_attempts < 1:
            raise ValueError(f"max_write_attempts must be >= 1, got {max_write_attempts}")
        check_same_limits(config, *(b.config for b in (budget, dry_budget) if b is not None))
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
        self.lease_window_ms = lease_window_ms
        self.read_expected_order = read_expected_order
        self.max_write_attempts = max_write_attempts
        self._sleep = sleep
        self.operator = operator
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
    def mode(self) -> Mode:
        return Mode.DRY_RUN if self.config.dry_run else Mode.LIVE

    def dry_budget(self) -> BudgetTracker:
        """The in-memory budget dry-run spends: the one given, else a copy of the real
        one made at first use, raised to the real one's usage at every run start. It is
        never persisted."""
        if self._dry_budget is None:
            self._dry_budget = self.budget.shadow()
        return self._dry_budget

    # --- runs ----------------------------------------------------------------------------

    def begin_run(self, run_id: str | None = None) -> RunContext:
        if self.operator is not None:
            self.operator.refresh()
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

    def gate_settings(self) -> GateSettings:
        """The settings in force the gate chain reads, read now."""
        return GateSettings(
            config=self.config,
            armed=self.armed,
            symbol_whitelist=tuple(self.symbol_whitelist),
            mainnet_trade_allowed=mainnet_trade_allowed(
                self.env if self.env is not None else os.environ
            ),
        )

    def gate_inputs(
        self,
        kind: ActionKind,
        symbol: str,
        client_order_id: str | None,
        notional: Decimal | None,
        ctx: RunContext,
    ) -> GateInputs:
        """Everything the gate chain reads for this write, read now: the settings in force,
        arming, leadership, the clock, the bot's heartbeat, this run and the budget
        (``grinder.reconcile.gate_inputs.gate_inputs_from`` puts them together)."""
        now = self.clock()
        leader = self.is_leader()
        settings = self.gate_settings()
        source = self.expected_heartbeat_age
        heartbeat_age = source() if source is not None else None
        tracker = self.dry_budget() if self.config.dry_run else self.budget
        return gate_inputs_from(
            ProposedWrite(kind, symbol, client_order_id, notional),
            settings,
            is_leader=leader,
            now_ms=now,
            heartbeat_age_s=heartbeat_age,
            run=ctx,
            day=tracker.today(now),
            operator_problem=self.operator.problem if self.operator is not None else None,
        )

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
        """The first gate that blocks this write, or None when all pass (the chain is
        ``grinder.reconcile.gates.GATES``).

        ``notional`` None for a flatten means no mark price is available.
        ``through_ownership_only`` stops after gate E, the one after gate 8 (used before
        the price is read).
        """
        inputs = self.gate_inputs(kind, symbol, client_order_id, notional, ctx)
        return first_block(inputs, through_ownership_only=through_ownership_only)

    def blocks(
        self,
        kind: ActionKind,
        symbol: str,
        client_order_id: str | None,
        notional: Decimal | None,
        ctx: RunContext,
        *,
        through_ownership_only: bool = False,
    ) -> tuple[BlockReason, ...]:
        """Every gate that blocks this write, in the chain's order (empty when all pass);
        the first is what ``gate`` returns."""
        inputs = self.gate_inputs(kind, symbol, client_order_id, notional, ctx)
        return every_block(inputs, through_ownership_only=through_ownership_only)

    # --- execution -----------------------------------------------------------------------

    async def execute(self, routed: Routed, ctx: RunContext) -> ActionResult:
        """Gate one candidate and, if every gate passes and the mode is live, perform it."""
        ctx.action_mode = self.mode
        if self.reporter is not None:
            self.reporter.attempt(ctx, routed, ctx.action_mode)
        try:
            if routed.kind is ActionKind.CANCEL:
                result = await self._cancel(routed, ctx)
            else:
                result = await FlattenAction(self, routed, ctx).run()
        except asyncio.CancelledError:
            cut, ctx.in_flight = ctx.in_flight, None
            if cut is not None:  # something was sent for it: it may have been executed
                self.last_remediation_ms = self.clock()
                if self.reporter is not None:
                    self.reporter.result(ctx, replace(cut, ts_ms=self.clock()))
            raise
        finally:
            ctx.action_mode = None
        ctx.in_flight = None
        if self.reporter is not None:
            self.reporter.result(ctx, result)
        return result

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
        blocked_by: tuple[BlockReason, ...] = (),
        error_type: str | None = None,
    ) -> ActionResult:
        return ActionResult(
            run_id=ctx.run_id,
            kind=routed.kind,
            mismatch=routed.mismatch,
            status=status,
            mode=ctx.action_mode or self.mode,
            reason=reason,
            notional=notional,
            qty=qty,
            remediation_order_id=remediation_order_id,
            error=error,
            ts_ms=self.clock(),
            attempts=tuple(attempts),
            blocked_by=blocked_by,
            error_type=error_type,
        )

    def commit(
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
            return self.result(
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
            return self.result(
                routed,
                ctx,
                ResultStatus.BLOCKED,
                reason=exc.reason,
                notional=notional,
                qty=qty,
                error=exc.detail,
            )
        except BudgetStateError as exc:
            return self.result(
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
        if exc.outcome_unknown:
            self.last_remediation_ms = self.clock()

    # --- authorization at the wire -------------------------------------------------------

    def authorizer(self, kind: ActionKind, m: Mismatch, ctx: RunContext) -> Authorize:
        """What the port calls right before each attempt of this action leaves."""

        def authorize() -> int:
            return self.authorize_write(kind, m, ctx)

        return authorize

    def authorize_write(self, kind: ActionKind, m: Mismatch, ctx: RunContext) -> int:
        """The window (ms) a write of this action may take to reach the exchange, now;
        ``WriteWithheld`` when it must not be sent. The operator's words are read first,
        in the step that marks the write as on its way (a command recorded after it waits
        for the write; one recorded before it is in force below); the lease is read last,
        so nothing slower than a clock read lies between it and the request leaving."""
        if self.operator is None:
            return self._authorized(kind, m, ctx)
        self.operator.begin_write()
        try:
            return self._authorized(kind, m, ctx)
        except WriteWithheld:
            self.operator.end_write()
            raise

    def _authorized(self, kind: ActionKind, m: Mismatch, ctx: RunContext) -> int:
        cfg = self.config
        if cfg.dry_run:
            raise WriteWithheld(BlockReason.DRY_RUN, "dry-run was switched on")
        cid = m.client_order_id if kind is ActionKind.CANCEL else None
        if cid is not None and self.read_expected_order is not None:
            try:
                expected = self.read_expected_order(cid)
            except Exception as exc:  # cannot confirm: fail closed
                detail = " ".join(f"{type(exc).__name__}: {exc}".split())
                raise WriteWithheld(BlockReason.EXPECTED_STATE_UNREADABLE, detail) from None
            if not cancel_still_wanted(expected):
                raise WriteWithheld(SkipReason.NOW_EXPECTED, "the bot records the order as open")
        reason = self.gate(kind, m.symbol, cid, ZERO, ctx, through_ownership_only=True)
        if reason is not None:
            raise WriteWithheld(reason)
        left = None if self.lease_window_ms is None else self.lease_window_ms()
        window = write_window_ms(left)
        if window is None:
            raise WriteWithheld(
                BlockReason.NOT_LEADER, f"{max(0, left or 0)} ms of the leadership left"
            )
        return window

    def _withheld(
        self,
        routed: Routed,
        ctx: RunContext,
        withheld: WriteWithheld,
        attempts: list[AttemptOutcome],
        write: WriteInFlight,
    ) -> ActionResult:
        """The result of an action whose next attempt was not sent: skipped when the
        decision no longer holds, else blocked by the gate that failed."""
        attempts.append(AttemptOutcome.WITHHELD)
        skipped = withheld.reason in {r.value for r in SkipReason}
        notes = [withheld.detail] if withheld.detail else []
        if AttemptOutcome.UNKNOWN in attempts:
            notes.append("an earlier attempt's outcome is unknown")
        return write.result(
            self,
            routed,
            ctx,
            ResultStatus.SKIPPED if skipped else ResultStatus.BLOCKED,
            attempts,
            reason=withheld.reason,
            error="; ".join(notes) or None,
        )

    async def _in_flight(self, ctx: RunContext, cut: ActionResult, write: Awaitable[T]) -> T:
        """``await write`` with ``cut`` as the run's write in flight meanwhile: the result
        ``execute`` reports if the run is cancelled before the answer (a service stop).
        Once it is answered (or failed), its mark as a write on its way is removed; cut
        short, the request may still be on its way, and its mark stays until it expires
        (the operator's command waits for it as for any other, D57)."""
        ctx.in_flight = cut
        try:
            answer = await write
        except asyncio.CancelledError:
            raise
        except BaseException:
            ctx.in_flight = None
            self._end_write()
            raise
        self._end_write()
        ctx.in_flight = None
        return answer

    def _end_write(self) -> None:
        if self.operator is not None:
            self.operator.end_write()

    @staticmethod
    def _stopped_before_next(failed: ActionResult) -> ActionResult:
        """What an action whose last attempt ``failed`` reports if the run is cut short
        before its next attempt (the pause, a flatten's position read)."""
        return replace(failed, error=f"{failed.error}; stopped before the next attempt")

    async def _pause_before(self, attempt: int) -> None:
        if attempt > 1:
            delays = RETRY_DELAYS_S
            await self._sleep(delays[min(attempt - 2, len(delays) - 1)])

    @staticmethod
    def _attempt_outcome(exc: ExchangeError) -> AttemptOutcome:
        if not exc.sent:
            return AttemptOutcome.WITHHELD
        return AttemptOutcome.UNKNOWN if exc.outcome_unknown else AttemptOutcome.REJECTED

    @staticmethod
    def _error_text(exc: ExchangeError, attempts: list[AttemptOutcome]) -> str:
        sent = sum(1 for a in attempts if a is not AttemptOutcome.WITHHELD)
        return str(exc) if sent <= 1 else f"{exc} (after {sent} attempts)"

    # --- the two writes ------------------------------------------------------------------

    async def send_attempts(
        self,
        routed: Routed,
        ctx: RunContext,
        write: WriteInFlight,
        send: Callable[[], Awaitable[T]],
        before_retry: Callable[[int, list[AttemptOutcome]], Awaitable[ActionResult | None]]
        | None = None,
        *,
        prior: Iterable[AttemptOutcome] = (),
    ) -> tuple[T, list[AttemptOutcome]] | ActionResult:
        """Send one action's write, at most ``max_write_attempts`` times, each authorized at
        the wire by the port: the answer and the attempts once one is accepted, else the
        action's final result. ``before_retry`` runs before every further attempt (a
        flatten reads its position again) and may end the action instead; ``write`` is
        what the results report of the write as it stands; ``prior``: the requests this
        action already made (a flatten sending its rest), which count toward the bound."""
        attempts: list[AttemptOutcome] = list(prior)
        for attempt in range(len(attempts) + 1, self.max_write_attempts + 1):
            await self._pause_before(attempt)
            if attempt > 1 and before_retry is not None:
                ended = await before_retry(attempt, attempts)
                if ended is not None:
                    return ended
            cut = write.result(
                self,
                routed,
                ctx,
                ResultStatus.FAILED,
                [*attempts, AttemptOutcome.UNKNOWN],
                reason=FailReason.PORT_ERROR,
                error=CUT_SHORT,
            )
            try:
                answer = await self._in_flight(ctx, cut, send())
            except WriteWithheld as withheld:
                return self._withheld(routed, ctx, withheld, attempts, write)
            except ExchangeError as exc:
                attempts.append(self._attempt_outcome(exc))
                self._failed(exc)
                failed = write.result(
                    self,
                    routed,
                    ctx,
                    ResultStatus.FAILED,
                    attempts,
                    reason=FailReason.PORT_ERROR,
                    error=self._error_text(exc, attempts),
                    error_type=type(exc).__name__,
                )
                if exc.repeatable and attempt < self.max_write_attempts:
                    ctx.in_flight = self._stopped_before_next(failed)
                    continue
                return failed
            attempts.append(AttemptOutcome.ACCEPTED)
            self._executed(ctx)
            return answer, attempts
        raise AssertionError("unreachable: the last attempt returns")  # pragma: no cover

    async def _cancel(self, routed: Routed, ctx: RunContext) -> ActionResult:
        m = routed.mismatch
        blocks = self.blocks(ActionKind.CANCEL, m.symbol, m.client_order_id, ZERO, ctx)
        if blocks:
            return self.result(
                routed, ctx, ResultStatus.BLOCKED, reason=blocks[0], blocked_by=blocks
            )
        done = self.commit(routed, ctx, ZERO)
        if done is not None:
            return done
        cid = m.client_order_id
        assert cid is not None  # ownership gate passed
        authorize = self.authorizer(ActionKind.CANCEL, m, ctx)
        sent = await self.send_attempts(
            routed,
            ctx,
            WriteInFlight(),
            lambda: self.port.cancel_order(m.symbol, cid, is_algo=m.is_algo, authorize=authorize),
        )
        if isinstance(sent, ActionResult):
            return sent
        outcome, attempts = sent
        detail = None if outcome is CancelOutcome.CANCELED else outcome.value
        return self.result(
            routed, ctx, ResultStatus.EXECUTED, notional=ZERO, error=detail, attempts=attempts
        )

    def flatten_client_order_id(self, symbol: str) -> str:
        cfg = self.config
        self._seq = self._seq % REMEDIATION_SEQ_MAX + 1  # ids keep a longest form
        return remediation_client_order_id(
            strategy_id=cfg.strategy_id,
            symbol=symbol,
            ts_seconds=self.clock() // 1000,
            seq=self._seq,
            prefix=cfg.client_order_id_prefix,
        )
