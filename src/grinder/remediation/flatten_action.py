"""One flatten, as the executor performs it: read, decide, reserve, send, send the rest.

1. The gates up to ownership, then the position, the mark price and the step (and the
   tick, for a bounded flatten) read now: never trade more than what is there.
2. The order (``reconcile.flatten``, pure): a reduce-only MARKET order, or with
   ``flatten_max_slippage_bps`` a reduce-only IOC LIMIT at the mark that many basis
   points worse; then the rest of the gates over its notional, then the budget.
3. The write, through the executor's attempt loop (authorized at the wire, at most
   ``max_write_attempts`` requests for the whole action, D44). Before a further
   attempt the position is read again (and, bounded, the mark: a new limit).
4. What did not fill -- an IOC's rest beyond the bound, a MARKET order's rest on a thin
   book -- is flattened again from the position read now, within the same reservation
   and request count: never more than the first order's unfilled rest, never more than
   the unspent part of its reservation is worth at the price now (the worse of the mark
   and the new limit), never on the other side. A rest
   expired by self-trade prevention (``EXPIRED_IN_MATCH``: the remediation order met a
   resting order of the same account and expired itself, D63) is not sent again: the
   same resting order would stop it again. What is left is for the next run.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING

from grinder.exchange.port import ExchangeError
from grinder.reconcile.actions import ActionResult, RunContext, WriteInFlight
from grinder.reconcile.flatten import FlattenOrder, bounded_price, flatten_order, position_qty
from grinder.reconcile.identity import ClientOrderIdError
from grinder.reconcile.labels import AttemptOutcome, FailReason, ResultStatus, SkipReason
from grinder.reconcile.routing import ActionKind, Routed
from grinder.reconcile.types import ZERO, ObservedOrder, OrderStatus, PositionSide

if TYPE_CHECKING:
    from grinder.remediation.executor import RemediationExecutor


@dataclass(frozen=True, slots=True)
class MarketRead:
    """What a flatten reads before it decides: the position now and the symbol's prices."""

    position: Decimal
    step: Decimal | None
    mark: Decimal | None
    tick: Decimal | None


class FlattenAction:
    """One flatten candidate, from its gates to its last request."""

    def __init__(self, executor: RemediationExecutor, routed: Routed, ctx: RunContext) -> None:
        self.ex = executor
        self.routed = routed
        self.ctx = ctx
        self.m = routed.mismatch
        self.side_key = self.m.position_side or PositionSide.BOTH
        self.bps = executor.config.flatten_max_slippage_bps
        self.authorize = executor.authorizer(ActionKind.FLATTEN, self.m, ctx)

    async def run(self) -> ActionResult:
        ex, routed, ctx, m = self.ex, self.routed, self.ctx, self.m
        blocks = ex.blocks(
            ActionKind.FLATTEN, m.symbol, None, None, ctx, through_ownership_only=True
        )
        if blocks:
            return ex.result(routed, ctx, ResultStatus.BLOCKED, reason=blocks[0], blocked_by=blocks)
        try:
            read = await self._read()
        except ExchangeError as exc:
            return ex.result(
                routed,
                ctx,
                ResultStatus.FAILED,
                reason=FailReason.PORT_ERROR,
                error=str(exc),
                error_type=type(exc).__name__,
            )
        order = flatten_order(
            read.position, read.step, read.mark, max_slippage_bps=self.bps, tick=read.tick
        )
        if order is None:
            return ex.result(
                routed, ctx, ResultStatus.SKIPPED, reason=SkipReason.ALREADY_RESOLVED, qty=ZERO
            )
        qty, notional = order.qty, order.notional
        blocks = ex.blocks(ActionKind.FLATTEN, m.symbol, None, notional, ctx)
        if blocks:
            return ex.result(
                routed,
                ctx,
                ResultStatus.BLOCKED,
                reason=blocks[0],
                blocked_by=blocks,
                notional=notional,
                qty=qty,
            )
        assert notional is not None  # gate 9 passed
        try:
            cid = ex.flatten_client_order_id(m.symbol)
        except ClientOrderIdError as exc:
            return ex.result(
                routed,
                ctx,
                ResultStatus.FAILED,
                reason=FailReason.CLIENT_ORDER_ID_ERROR,
                error=str(exc),
                qty=qty,
            )
        done = ex.commit(routed, ctx, notional, qty=qty, cid=cid)
        if done is not None:
            return done
        return await self._send(order, cid)

    # --- reading -------------------------------------------------------------------------

    async def _read(self) -> MarketRead:
        port, symbol = self.ex.port, self.m.symbol
        positions = await port.fetch_positions([symbol])
        mark = await port.get_mark_price(symbol)
        step = await port.get_step_size(symbol)
        tick = await port.get_tick_size(symbol) if self.bps is not None else None
        return MarketRead(position_qty(positions, symbol, self.side_key), step, mark, tick)

    # --- sending -------------------------------------------------------------------------

    async def _send(self, order: FlattenOrder, cid: str) -> ActionResult:
        """The first order, then its rest while it expires unfilled and requests are left."""
        ex = self.ex
        self.order = order
        self.write = WriteInFlight(notional=order.notional, qty=order.qty, remediation_order_id=cid)
        self.limit = order.limit_price
        self.filled = ZERO
        attempts: tuple[AttemptOutcome, ...] = ()
        while True:
            sent = await ex.send_attempts(
                self.routed, self.ctx, self.write, self._place, self._read_again, prior=attempts
            )
            if not isinstance(sent, tuple):  # failed, withheld, or flat before a request
                if self.filled == ZERO or sent.status is ResultStatus.EXECUTED:
                    return sent  # (an executed one already says what filled)
                return self._partly(sent)
            answer, done = sent
            attempts = tuple(done)
            expired = answer.status in (OrderStatus.EXPIRED, OrderStatus.EXPIRED_IN_MATCH)
            before = self.filled
            self.filled += answer.executed_qty
            rest = answer.status is OrderStatus.EXPIRED and answer.executed_qty < answer.qty
            if rest and len(attempts) < ex.max_write_attempts:
                continue
            assert self.write.qty is not None
            qty = self.filled if expired else before + self.write.qty
            return self._executed(attempts, qty, answer if expired else None)

    def _place(self) -> Awaitable[ObservedOrder]:
        write, port = self.write, self.ex.port
        assert write.qty is not None  # set from the order, then by every read
        assert write.remediation_order_id is not None
        if self.limit is None:
            return port.place_reduce_only_market(
                self.m.symbol,
                self.order.side,
                write.qty,
                position_side=self.side_key,
                client_order_id=write.remediation_order_id,
                authorize=self.authorize,
            )
        return port.place_reduce_only_ioc(
            self.m.symbol,
            self.order.side,
            write.qty,
            self.limit,
            position_side=self.side_key,
            client_order_id=write.remediation_order_id,
            authorize=self.authorize,
        )

    async def _read_again(
        self, attempt: int, attempts: list[AttemptOutcome]
    ) -> ActionResult | None:
        """Before every further request: what is left now (an earlier request may have been
        executed), never more than this action reserved, on the same side; bounded, the
        limit from the mark now. A result ends the action instead."""
        ex, write = self.ex, self.write
        try:
            read = await self._read()
            write.remediation_order_id = ex.flatten_client_order_id(self.m.symbol)
        except (ExchangeError, ClientOrderIdError) as exc:
            failed = write.result(
                ex,
                self.routed,
                self.ctx,
                ResultStatus.FAILED,
                attempts,
                reason=FailReason.PORT_ERROR,
                error=f"{exc} (reading the position before attempt {attempt})",
                error_type=type(exc).__name__,
            )
            return failed if self.filled == ZERO else self._partly(failed)
        mark = read.mark if read.mark is not None and read.mark > 0 else None
        if self.bps is not None and mark is not None:
            self.limit = bounded_price(self.order.side, mark, self.bps, read.tick)
        price = None if mark is None else max(mark, self.limit or mark)
        write.qty = self.order.rest_qty(read.position, read.step, self.filled, price)
        if write.qty != ZERO:
            return None
        if self.filled != ZERO:
            return self._executed(tuple(attempts), self.filled, None)
        return self.ex.result(
            self.routed,
            self.ctx,
            ResultStatus.SKIPPED,
            reason=SkipReason.ALREADY_RESOLVED,
            error="the position is flat after an attempt whose outcome is unknown",
            qty=ZERO,
            remediation_order_id=write.remediation_order_id,
            attempts=attempts,
        )

    # --- results -------------------------------------------------------------------------

    def _executed(
        self, attempts: tuple[AttemptOutcome, ...], qty: Decimal, last: ObservedOrder | None
    ) -> ActionResult:
        """Executed, for ``qty`` in all; when the last order expired short, why."""
        note = None
        if last is not None and qty < self.order.qty:
            if last.status is OrderStatus.EXPIRED_IN_MATCH:
                why = "self-trade prevention: a resting order of the account was in the way"
            elif self.bps is not None:
                why = f"no more within {self.bps} bps of the mark"
            else:
                why = "the book had no more"
            note = (
                f"filled {qty} of {self.order.qty}; the rest expired ({why}); left to the next run"
            )
        result = self.write.result(
            self.ex, self.routed, self.ctx, ResultStatus.EXECUTED, attempts, error=note
        )
        return replace(result, qty=qty)

    def _partly(self, result: ActionResult) -> ActionResult:
        """A later request of a flatten that had already filled some: executed for what
        filled, with what became of the rest."""
        then = f"{result.status.value} ({result.reason}): {result.error}"
        return replace(
            result,
            status=ResultStatus.EXECUTED,
            reason=None,
            qty=self.filled,
            error=f"filled {self.filled} of {self.order.qty}; then {then}",
        )
