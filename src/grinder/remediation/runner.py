"""One reconcile run: detect -> route -> gate -> execute -> report."""

from __future__ import annotations

from grinder.clock import Clock
from grinder.reconcile.actions import ActionResult
from grinder.reconcile.engine import OrderQuery, ReconcileEngine
from grinder.reconcile.labels import ResultStatus, SkipReason
from grinder.reconcile.routing import ActionKind, plan
from grinder.reconcile.types import ObservedOrder, OrderStatus
from grinder.remediation.executor import RemediationExecutor
from grinder.reporting.report import Reporter, RunReport


class ReconcileRunner:
    """Runs the whole pipeline once per call and reports it."""

    def __init__(
        self,
        engine: ReconcileEngine,
        executor: RemediationExecutor,
        *,
        reporter: Reporter | None = None,
        triage_port: OrderQuery | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.engine = engine
        self.executor = executor
        self.reporter = reporter or Reporter()
        if executor.reporter is None:
            executor.reporter = self.reporter
        self.triage_port: OrderQuery | None = (
            triage_port if triage_port is not None else executor.port
        )
        self.clock = clock or executor.clock
        self._planned: set[tuple[str, str, str]] = set()
        # The budget gauges read the real budget from the start, not 0 ("used up").
        self.reporter.budget(executor.budget, self.clock())

    async def run_once(self) -> RunReport:
        cfg = self.engine.config
        ctx = self.executor.begin_run()
        now = ctx.started_ms
        report = RunReport(
            run_id=ctx.run_id, ts_ms=now, mode=self.executor.mode, action=cfg.action.value
        )
        if cfg.enabled:
            found = await self.engine.reconcile(now, self.triage_port)
            report.mismatches = found.mismatches
            report.new_incidents = found.new_incidents
            report.cleared_incidents = found.cleared_incidents
            report.triage = found.triage
            report.foreign_open_orders = found.foreign_open_orders
            self.reporter.triaged(found.triaged)
            self.reporter.incidents(ctx.run_id, found.new_incidents, found.cleared_incidents)
            # Dry-run plans a standing mismatch once: live mode would have acted on it
            # and it would have cleared, so re-planning it every run overstates the plan.
            standing = {m.key for m in found.mismatches}
            self._planned &= standing
            if not self.executor.config.dry_run:
                self._planned.clear()
            fresh = [m for m in found.mismatches if m.key not in self._planned]
            the_plan = plan(fresh)
            the_plan.skipped.extend(
                (m, SkipReason.ALREADY_PLANNED) for m in found.mismatches if m.key in self._planned
            )
            report.plan_kind = the_plan.kind
            report.skipped = the_plan.skipped
            self.reporter.skipped(ctx.run_id, report.mode, the_plan.skipped)
            for routed in the_plan.candidates:
                result = await self.executor.execute(routed, ctx)
                report.results.append(result)
                if result.status is ResultStatus.EXECUTED:
                    self._apply_own_write(result)
                elif result.status is ResultStatus.PLANNED:
                    self._planned.add(routed.mismatch.key)
        report.mode = self.executor.mode
        report.is_leader = self.executor.is_leader()
        self.reporter.budget(self.executor.budget, now)
        age = self.engine.observed.snapshot_age_ms(self.clock())
        self.reporter.run(report, snapshot_age_s=None if age is None else age / 1000)
        return report

    def _apply_own_write(self, result: ActionResult) -> None:
        """Book a remediation's own effect so the next run does not act on it again."""
        observed = self.engine.observed
        m = result.mismatch
        if result.kind is ActionKind.CANCEL and m.client_order_id is not None:
            current = observed.get_order(m.client_order_id)
            if current is not None and current.status.is_open:
                observed.apply_order(
                    ObservedOrder(
                        client_order_id=current.client_order_id,
                        symbol=current.symbol,
                        side=current.side,
                        status=OrderStatus.CANCELED,
                        qty=current.qty,
                        executed_qty=current.executed_qty,
                        price=current.price,
                        order_type=current.order_type,
                        position_side=current.position_side,
                        order_id=current.order_id,
                        created_ts_ms=current.created_ts_ms,
                        update_ts_ms=current.update_ts_ms,
                        seen_ts_ms=result.ts_ms,
                        is_algo=current.is_algo,
                    )
                )
