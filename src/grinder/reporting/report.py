"""Reporting: every run, incident and remediation outcome to logs, metrics and audit.

The counters count every outcome of every run. A log line and an audit record are
written for an incident's first outcome and for each change of it, not for every run
it repeats in (``reconcile.repeats``): the audit's ``RECONCILE_RUN`` record counts the
results that were not written (``repeated_results``), and the next record of an
incident says how many runs repeated its previous outcome (``repeated_before``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from grinder.budget.tracker import BudgetTracker
from grinder.reconcile.actions import ActionResult, RunContext
from grinder.reconcile.engine import TriageFinding
from grinder.reconcile.labels import Event, Mode, ResultStatus, SkipReason, TriageOutcome
from grinder.reconcile.repeats import IncidentKey, RepeatFilter, result_outcome, skip_outcome
from grinder.reconcile.routing import ActionKind, Routed
from grinder.reconcile.types import Mismatch, MismatchType
from grinder.reporting.audit import AuditWriter
from grinder.reporting.logs import LOGGER_NAME, log_event
from grinder.reporting.metrics import NO_SNAPSHOT_AGE_S, ReconcileMetrics

_RESULT_EVENT = {
    ResultStatus.PLANNED: Event.REMEDIATION_PLANNED,
    ResultStatus.EXECUTED: Event.REMEDIATION_EXECUTED,
    ResultStatus.BLOCKED: Event.REMEDIATION_BLOCKED,
    ResultStatus.FAILED: Event.REMEDIATION_FAILED,
    ResultStatus.SKIPPED: Event.REMEDIATE_SKIP,
}


@dataclass(slots=True)
class RunReport:
    """What one reconcile run saw and did."""

    run_id: str
    ts_ms: int
    mode: Mode
    action: str
    mismatches: list[Mismatch] = field(default_factory=list)
    new_incidents: list[Mismatch] = field(default_factory=list)
    cleared_incidents: list[Mismatch] = field(default_factory=list)
    plan_kind: ActionKind | None = None
    results: list[ActionResult] = field(default_factory=list)
    skipped: list[tuple[Mismatch, SkipReason]] = field(default_factory=list)
    triage: Counter[TriageOutcome] = field(default_factory=Counter)
    foreign_open_orders: int = 0
    is_leader: bool = True

    def _count(self, status: ResultStatus) -> int:
        return sum(1 for r in self.results if r.status is status)

    @property
    def planned_count(self) -> int:
        return self._count(ResultStatus.PLANNED)

    @property
    def executed_count(self) -> int:
        return self._count(ResultStatus.EXECUTED)

    @property
    def blocked_count(self) -> int:
        return self._count(ResultStatus.BLOCKED)

    @property
    def failed_count(self) -> int:
        return self._count(ResultStatus.FAILED)

    @property
    def skipped_count(self) -> int:
        return len(self.skipped) + self._count(ResultStatus.SKIPPED)

    @property
    def mismatch_counts(self) -> dict[str, int]:
        counts = Counter(m.type.value for m in self.mismatches)
        return {t.value: counts.get(t.value, 0) for t in MismatchType}

    @property
    def symbols(self) -> list[str]:
        return sorted({m.symbol for m in self.mismatches})

    @property
    def block_reasons(self) -> dict[str, int]:
        return dict(
            Counter(str(r.reason) for r in self.results if r.status is ResultStatus.BLOCKED)
        )

    @property
    def blocking_gates(self) -> dict[str, int]:
        """Blocked candidates under every gate that blocked them (``block_reasons``: the
        first gate only)."""
        return dict(Counter(gate for r in self.results for gate in r.blocking))

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "ts_ms": self.ts_ms,
            "mode": self.mode,
            "action": self.action,
            "plan_action": self.plan_kind.label.value if self.plan_kind else None,
            "mismatches_total": len(self.mismatches),
            "mismatch_counts": self.mismatch_counts,
            "new_incidents": len(self.new_incidents),
            "cleared_incidents": len(self.cleared_incidents),
            "symbols": self.symbols,
            "planned_count": self.planned_count,
            "executed_count": self.executed_count,
            "blocked_count": self.blocked_count,
            "failed_count": self.failed_count,
            "skipped_count": self.skipped_count,
            "block_reasons": self.block_reasons,
            "blocked_by": self.blocking_gates,
            "triage": {k.value: v for k, v in sorted(self.triage.items())},
            "foreign_open_orders": self.foreign_open_orders,
        }


def _repeated_before(runs: int) -> dict[str, int]:
    """The field a reported outcome carries when the incident's previous one repeated
    without a report: in how many runs."""
    return {"repeated_before": runs} if runs else {}


def _result_fields(result: ActionResult, repeated: int) -> dict[str, Any]:
    """A result's log line fields (and its audit record's, with a few more)."""
    fields: dict[str, Any] = {
        "run_id": result.run_id,
        "mode": result.mode,
        "action": result.kind.label.value,
        "symbol": result.symbol,
        "client_order_id": result.client_order_id,
    }
    m = result.mismatch
    if m.position_side is not None:
        fields["position_side"] = m.position_side.value
    if result.reason is not None:
        fields["reason"] = result.reason
    if result.blocking:
        fields["blocked_by"] = result.blocking
    if result.error_type is not None:
        fields["error_type"] = result.error_type
    for name in ("qty", "notional", "remediation_order_id", "error"):
        value = getattr(result, name)
        if value is not None:
            fields[name] = value
    if result.attempts:
        fields["attempts"] = ",".join(a.value for a in result.attempts)
    fields.update(_repeated_before(repeated))
    return fields


class IncidentSink(Protocol):
    """The incident ledger's hook (``grinder.incidents.sink.IncidentLedger``)."""

    def triaged(self, findings: Iterable[TriageFinding]) -> None: ...

    def incidents(
        self, run_id: str, new: Iterable[Mismatch], cleared: Iterable[Mismatch]
    ) -> Mapping[tuple[str, str, str], Mapping[str, Any]]: ...

    def result(self, result: ActionResult) -> None: ...

    def run_end(self, run_id: str, standing: Iterable[Mismatch]) -> None: ...


def _mismatch_fields(m: Mismatch) -> dict[str, Any]:
    d = m.as_dict()
    d.update(m.details)
    return d


class Reporter:
    """Writes reconcile and remediation events to the log, the metrics and the audit trail."""

    def __init__(
        self,
        *,
        metrics: ReconcileMetrics | None = None,
        audit: AuditWriter | None = None,
        logger: logging.Logger | None = None,
        ledger: IncidentSink | None = None,
    ) -> None:
        self.metrics = metrics
        self.audit = audit
        self.ledger = ledger
        self.log = logger or logging.getLogger(f"{LOGGER_NAME}.reconcile")
        self.repeats = RepeatFilter()
        self._held: dict[IncidentKey, dict[str, Any]] = {}
        """Attempt records of incidents already reported, written with their result when
        the result is news (``attempt``)."""
        self._repeated = 0
        """Results of the current run not written: they repeat their incident's last."""
        if audit is not None and metrics is not None and audit.on_error is None:
            audit.on_error = lambda _exc: metrics.audit_write_errors.inc()

    # --- incidents -----------------------------------------------------------------------

    def triaged(self, findings: Iterable[TriageFinding]) -> None:
        if self.ledger is not None:
            self.ledger.triaged(findings)

    def incidents(self, run_id: str, new: Iterable[Mismatch], cleared: Iterable[Mismatch]) -> None:
        new, cleared = list(new), list(cleared)
        self.repeats.forget(m.key for m in cleared)
        ids = self.ledger.incidents(run_id, new, cleared) if self.ledger is not None else {}
        for m in new:
            if self.metrics is not None:
                self.metrics.mismatch.labels(type=m.type.value).inc()
            log_event(
                self.log,
                Event.RECONCILE_MISMATCH,
                logging.WARNING,
                run_id=run_id,
                **_mismatch_fields(m),
                **ids.get(m.key, {}),
            )
        for m in cleared:
            log_event(
                self.log,
                Event.RECONCILE_MISMATCH_CLEARED,
                run_id=run_id,
                **m.as_dict(),
                **ids.get(m.key, {}),
            )

    def skipped(
        self, run_id: str, mode: Mode, skipped: Iterable[tuple[Mismatch, SkipReason]]
    ) -> None:
        for m, reason in skipped:
            if self.metrics is not None:
                self.metrics.skipped.labels(reason=reason.value).inc()
            repeated = self.repeats.report(m.key, skip_outcome(mode, reason.value))
            if repeated is None:
                continue
            log_event(
                self.log,
                Event.REMEDIATE_SKIP,
                run_id=run_id,
                mode=mode,
                reason=reason.value,
                **m.as_dict(),
                **_repeated_before(repeated),
            )

    # --- remediation (RemediationReporter) -----------------------------------------------

    def attempt(self, ctx: RunContext, routed: Routed, mode: Mode) -> None:
        if self.audit is None:
            return
        m = routed.mismatch
        record = {
            "ts_ms": ctx.started_ms,
            "run_id": ctx.run_id,
            "mode": mode,
            "action": routed.kind.label.value,
            "priority": routed.priority,
            "mismatch_type": m.type.value,
            "symbol": m.symbol,
            "client_order_id": m.client_order_id,
            "position_side": m.position_side.value if m.position_side else None,
        }
        if self.repeats.known(m.key):
            self._held[m.key] = record  # written with its result, if that is news
        else:
            self.audit.write(Event.REMEDIATE_ATTEMPT, record)

    def result(self, ctx: RunContext, result: ActionResult) -> None:
        self._count(result)
        m = result.mismatch
        if self.ledger is not None:
            self.ledger.result(result)  # every result: the ledger keeps the steps itself
        held = self._held.pop(m.key, None)
        repeated = self.repeats.report(m.key, result_outcome(result))
        if repeated is None:
            self._repeated += 1
            return
        fields = _result_fields(result, repeated)
        status = result.status
        level = logging.INFO
        if status in (ResultStatus.EXECUTED, ResultStatus.FAILED):
            level = logging.WARNING
        log_event(self.log, _RESULT_EVENT[status], level, **fields)
        if self.audit is not None:
            if held is not None:
                self.audit.write(Event.REMEDIATE_ATTEMPT, held)
            self.audit.write(
                Event.REMEDIATE_RESULT,
                {
                    **fields,
                    "ts_ms": result.ts_ms,
                    "status": status.value,
                    "block_reason": result.reason if status is ResultStatus.BLOCKED else None,
                    "mismatch_type": m.type.value,
                },
            )

    def _count(self, result: ActionResult) -> None:
        """The counters of one result: every result of every run, repeated or not."""
        if self.metrics is None:
            return
        label = result.kind.label.value
        status = result.status
        if status is ResultStatus.PLANNED:
            self.metrics.observe_planned(label, result.ts_ms)
        elif status is ResultStatus.EXECUTED:
            self.metrics.executed.labels(action=label).inc()
            self.metrics.observe_last_remediation(result.ts_ms)
        elif status is ResultStatus.BLOCKED:
            self.metrics.blocked.labels(reason=str(result.reason)).inc()
        elif status is ResultStatus.FAILED:
            self.metrics.failed.labels(action=label, reason=str(result.reason)).inc()
        elif status is ResultStatus.SKIPPED:
            self.metrics.skipped.labels(reason=str(result.reason)).inc()
        for outcome in result.attempts:
            self.metrics.write_attempts.labels(action=label, outcome=outcome.value).inc()

    # --- the run -------------------------------------------------------------------------

    def run(self, report: RunReport, *, snapshot_age_s: float | None = None) -> None:
        if self.ledger is not None:
            self.ledger.run_end(report.run_id, report.mismatches)
        if self.metrics is not None:
            mx = self.metrics
            mx.runs.inc()
            if report.mismatches:
                mx.runs_with_mismatch.inc()
            if report.executed_count and report.plan_kind is not None:
                mx.runs_with_remediation.labels(action=report.plan_kind.label.value).inc()
            for t, n in report.mismatch_counts.items():
                mx.mismatch_active.labels(type=t).set(n)
            for outcome, n in report.triage.items():
                mx.triage.labels(outcome=outcome.value).inc(n)
            mx.foreign_open_orders.set(report.foreign_open_orders)
            mx.set_blocked_candidates(report.blocking_gates)
            mx.ha_is_leader.set(1 if report.is_leader else 0)
            age = NO_SNAPSHOT_AGE_S if snapshot_age_s is None else snapshot_age_s
            mx.last_snapshot_age.set(age)
        s = report.summary()
        log_event(
            self.log,
            Event.RECONCILE_RUN,
            run_id=s["run_id"],
            mode=s["mode"],
            action=s["action"],
            plan_action=s["plan_action"],
            mismatches=s["mismatches_total"],
            new=s["new_incidents"],
            cleared=s["cleared_incidents"],
            planned=s["planned_count"],
            executed=s["executed_count"],
            blocked=s["blocked_count"],
            failed=s["failed_count"],
            skipped=s["skipped_count"],
            symbols=s["symbols"],
        )
        if self.audit is not None:
            self.audit.write(Event.RECONCILE_RUN, {**s, "repeated_results": self._repeated})
        self._repeated = 0
        self._held.clear()
        self.repeats.keep_only(m.key for m in report.mismatches)

    def budget(self, budget: BudgetTracker, now_ms: int) -> None:
        if self.metrics is not None:
            self.metrics.set_budget(budget, now_ms)
