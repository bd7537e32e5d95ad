"""What the running service shows: ``/status``, the probes, a position, the dead-man
switch's health, and an audit record outside a run.

Each reads the running parts it is given (never the service): ``ServiceViews`` serves
``/status``, ``/healthz``, ``/readyz`` and the control socket's ``position``;
``DeadmanHealth`` is what the dead-man switch renews on; ``EventAudit`` writes the
records of leadership and Redis events and of the dead-man switch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grinder.budget.tracker import BudgetTracker
from grinder.clock import Clock
from grinder.deadman.decision import Health
from grinder.exchange.binance.stream import StreamState, UserDataStream
from grinder.exchange.port import ExchangeError
from grinder.reconcile.config import ReconcileConfig
from grinder.remediation.executor import RemediationExecutor
from grinder.reporting.audit import AuditWriter
from grinder.reporting.metrics import ReconcileMetrics
from grinder.service.deadman import DeadmanSwitch
from grinder.service.ha import ServiceHa
from grinder.service.live import LiveSettings
from grinder.service.loop import RunTally
from grinder.service.operator import OperatorControl
from grinder.service.options import ServiceOptions
from grinder.service.runtime_status import ServiceRuntime
from grinder.service.settings_status import settings_status
from grinder.service.shutdown import StopSignal
from grinder.service.state import ExpectedWatch
from grinder.service.venue import VenueConnection
from grinder.state.observed import ObservedStore

__all__ = ["DeadmanHealth", "EventAudit", "ServiceViews", "ViewParts", "may_remediate"]


def may_remediate(hagate: ServiceHa | None) -> bool:
    """Gate 0: HA off, or the lease is held and a snapshot was taken since it was acquired."""
    return hagate is None or hagate.may_remediate()


def ha_status(hagate: ServiceHa | None) -> dict[str, Any]:
    return {"enabled": False, "leader": True} if hagate is None else hagate.status()


@dataclass(frozen=True)
class EventAudit:
    """An audit record outside a run (leadership changes, Redis state, the dead-man switch)."""

    audit: AuditWriter | None
    clock: Clock
    config: ReconcileConfig
    executor: RemediationExecutor

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        if self.audit is None:
            return
        self.audit.write(
            event,
            {
                "ts_ms": self.clock(),
                "run_id": None,
                "mode": self.executor.mode,
                "action": self.config.action.value,
                **fields,
            },
        )


@dataclass(frozen=True)
class DeadmanHealth:
    """What the dead-man switch renews on: leadership, the bot, the stream, snapshots."""

    opts: ServiceOptions
    clock: Clock
    observed: ObservedStore
    expected: ExpectedWatch
    stream: UserDataStream
    hagate: ServiceHa | None

    def __call__(self) -> Health:
        hagate = self.hagate
        return Health(
            acting=may_remediate(hagate),
            lease_left_ms=None if hagate is None else hagate.lease_window_ms(),
            heartbeat_age_s=self.expected.heartbeat_age(),
            heartbeat_max_age_s=self.opts.reconcile.expected_heartbeat_max_age_s,
            stream_live=self.stream.state is StreamState.LIVE,
            snapshot_age_ms=self.observed.snapshot_age_ms(self.clock()),
            max_snapshot_age_ms=self.opts.deadman.max_snapshot_age_ms,
        )


def dry_run_day(executor: RemediationExecutor, now_ms: int) -> dict[str, Any] | None:
    """The day's use dry-run judges by (gate 9's input): its shadow budget, raised to the
    real one's as the next run raises it (``begin_run``); None in live mode."""
    if not executor.config.dry_run:
        return None
    day = executor.dry_budget().today(now_ms).at_least(executor.budget.today(now_ms))
    return {"calls_used_day": day.calls_used_day, "notional_used_day": str(day.notional_used_day)}


@dataclass(frozen=True)
class ViewParts:
    """The running parts the views read."""

    opts: ServiceOptions
    runtime: ServiceRuntime
    clock: Clock
    budget: BudgetTracker
    metrics: ReconcileMetrics
    observed: ObservedStore
    expected: ExpectedWatch
    executor: RemediationExecutor
    stream: UserDataStream
    venue: VenueConnection
    hagate: ServiceHa | None
    deadman: DeadmanSwitch | None
    operator: OperatorControl
    live: LiveSettings
    tally: RunTally
    stop: StopSignal


class ServiceViews:
    """``/status``, the probes and a position, over the running parts."""

    def __init__(self, parts: ViewParts) -> None:
        self.parts = parts
        self.ready = False
        """Set once the first snapshot is in (the endpoints serve before that)."""
        self.metrics_url: str | None = None
        """Set once the metrics endpoint is bound (what serves these views)."""

    def healthy(self) -> tuple[bool, dict[str, Any]]:
        return (not self.parts.stop.is_set(), {"runs": self.parts.tally.runs})

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        p = self.parts
        age = p.observed.snapshot_age_ms(p.clock())
        return (
            self.ready,
            {
                "first_snapshot": self.ready,
                "stream": p.stream.state.name.lower(),
                "snapshot_age_s": None if age is None else round(age / 1000, 3),
                "ha": ha_status(p.hagate),
            },
        )

    def status(self) -> dict[str, Any]:
        p = self.parts
        p.operator.refresh()  # every instance shows the deployment's words as they are now
        executor, budget, now = p.executor, p.budget, p.clock()
        report = p.tally.last_report
        return {
            "venue": p.opts.venue,
            "mode": executor.mode,
            "ready": self.ready,
            "stream": p.stream.state.name.lower(),
            "runs": p.tally.runs,
            "armed": executor.armed,
            "allow_mainnet_trade": p.live.allow_mainnet,
            "symbol_whitelist": executor.symbol_whitelist,
            "config": p.opts.reconcile.summary(),
            "budget": {
                "calls_used_day": budget.state.calls_used_day,
                "notional_used_day": str(budget.state.notional_used_day),
                "calls_remaining_day": budget.calls_remaining_day(now),
                "notional_remaining_day": str(budget.notional_remaining_day(now)),
            },
            "dry_run_budget": dry_run_day(executor, now),
            "last_run": report.summary() if report else None,
            "last_remediation_ts_ms": executor.last_remediation_ms,
            "last_planned_ts_ms": executor.last_planned_ms,
            "cooldown": self.cooldown_status(),
            "planned_last_hour": p.metrics.planned_in_last_hour(),
            "expected": p.expected.status(),
            "metrics_url": self.metrics_url,
            "ha": ha_status(p.hagate),
            "deadman": None if p.deadman is None else p.deadman.status(),
            "runtime": p.runtime.section(p.venue.rest.base_url),
            **settings_status(p.operator),
        }

    def cooldown_status(self) -> dict[str, Any]:
        """Gate 6 as the next run sees it: the anchors ``begin_run`` would use now.

        With HA the live anchor is the shared one (Redis ``<ns>:last_write_ms``: the
        last write of any instance), read now; ``last_remediation_ts_ms`` above is
        this instance's own last write only.
        """
        executor = self.parts.executor
        live, dry = executor.cooldown_anchors()
        self.parts.metrics.observe_last_remediation(live)
        return {
            "seconds": self.parts.opts.reconcile.cooldown_seconds,
            "source": "redis" if executor.cooldown is not None else "local",
            "live_anchor_ts_ms": live,
            "dry_run_anchor_ts_ms": dry,
        }

    async def position(self, symbol: str) -> dict[str, Any]:
        """The observed position of ``symbol`` (each side) and its mark price now.

        The mark price is read from the venue the way a flatten reads it
        (``premiumIndex``, weight 1); when it cannot be read, ``mark_price`` is None
        and ``mark_price_error`` says why.
        """
        p = self.parts
        port = p.venue.port
        positions = [
            {
                "position_side": pos.position_side.value,
                "qty": str(pos.qty),
                "entry_price": str(pos.entry_price),
                "changed_ts_ms": pos.changed_ts_ms,
            }
            for pos in sorted(p.observed.positions(), key=lambda x: x.position_side.value)
            if pos.symbol == symbol and pos.qty != 0
        ]
        mark: str | None = None
        error: str | None = None
        try:
            price = await port.get_mark_price(symbol)
        except ExchangeError as exc:
            error = " ".join(str(exc).split())
        else:
            if price is None:
                error = "the venue gave no mark price"
            else:
                mark = str(price)
        try:
            step = await port.get_step_size(symbol)
        except ExchangeError:
            step = None
        age = p.observed.snapshot_age_ms(p.clock())
        return {
            "symbol": symbol,
            "positions": positions,
            "mark_price": mark,
            "mark_price_error": error,
            "step_size": None if step is None else str(step),
            "venue": p.opts.venue,
            "snapshot_age_s": None if age is None else round(age / 1000, 3),
        }
