"""The end-to-end reconcile -> remediate smoke test (runbook 14).

Three P0 scenarios, each on a fresh exchange and fresh reconcile state (the
daily budget is the one they share, as consecutive runs of the service do):

* ``order``: an unexpected order of ours -> ``ORDER_EXISTS_UNEXPECTED`` -> cancel;
* ``position``: an unexpected position -> ``POSITION_NONZERO_UNEXPECTED`` -> flatten;
* ``mixed``: both, with ``action=CANCEL_ALL`` -> only the cancel (priority 10 < 100).

Each scenario takes a REST snapshot through the exchange port, runs the real
``ReconcileRunner`` once, and checks what it planned or executed. Dry-run (the
default) must make no exchange write and never writes the budget file (unless
``--reset-budget-state`` asks to start the day clean, as for the service), but
spends an in-memory copy of the budget, so it is blocked where live mode would
be; live mode (``--confirm LIVE_REMEDIATE`` plus the four environment gates)
must execute and leave the exchange clean.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TextIO

from prometheus_client import CollectorRegistry

from grinder.budget import lifecycle
from grinder.budget.lifecycle import BudgetPlace
from grinder.budget.tracker import BudgetTracker
from grinder.clock import Clock, wall_clock_ms
from grinder.config_sources import RuntimeEnv
from grinder.exchange.fake import FakePort
from grinder.exchange.port import ExchangePort
from grinder.reconcile.config import ReconcileConfig, RemediationAction
from grinder.reconcile.engine import ReconcileEngine
from grinder.reconcile.identity import generate_client_order_id
from grinder.reconcile.types import ObservedOrder, OrderStatus, PositionSide, Side
from grinder.remediation.executor import RemediationExecutor
from grinder.remediation.runner import ReconcileRunner
from grinder.reporting.audit import AuditWriter
from grinder.reporting.metrics import ReconcileMetrics
from grinder.reporting.report import Reporter, RunReport
from grinder.state.expected import MemoryExpectedStore
from grinder.state.observed import ObservedStore

CONFIRM_PHRASE = "LIVE_REMEDIATE"
SYMBOL = "BTCUSDT"
MARK_PRICE = Decimal("50000")
STEP_SIZE = Decimal("0.001")
POSITION_QTY = Decimal("0.002")
ORDER_QTY = Decimal("0.001")
RULE = "=" * 60
DRIFT_AGE_MS = 60_000  # injected drift is older than every grace period


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    action: RemediationAction
    inject_order: bool
    inject_position: bool
    expected_action: str
    expected_mismatches: int


SCENARIOS = (
    Scenario("order", RemediationAction.CANCEL_ALL, True, False, "cancel", 1),
    Scenario("position", RemediationAction.FLATTEN, False, True, "flatten", 1),
    Scenario("mixed", RemediationAction.CANCEL_ALL, True, True, "cancel", 2),
)


@dataclass(frozen=True, slots=True)
class GateCheck:
    """One live-mode gate: the variable, the value it must have, and what it got."""

    name: str
    required: str
    got: str

    @property
    def ok(self) -> bool:
        return self.got == self.required


def live_gate_checks(env: RuntimeEnv) -> list[GateCheck]:
    def shown(name: str, default: str) -> str:
        raw = env.raw.get(name)
        return default if raw is None else raw

    return [
        GateCheck("RECONCILE_DRY_RUN", "0", shown("RECONCILE_DRY_RUN", "1")),
        GateCheck("RECONCILE_ALLOW_ACTIVE", "1", shown("RECONCILE_ALLOW_ACTIVE", "0")),
        GateCheck("ARMED", "1", shown("ARMED", "0")),
        GateCheck("ALLOW_MAINNET_TRADE", "1", shown("ALLOW_MAINNET_TRADE", "0")),
    ]


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    report: RunReport
    port_calls: int
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def actual_action(self) -> str:
        return self.report.plan_kind.value if self.report.plan_kind else "none"


@dataclass(slots=True)
class SmokeSettings:
    live: bool
    env: RuntimeEnv
    env_mapping: Mapping[str, str] = field(repr=False)
    venue: str = "fake"
    reset_budget_state: bool = False


def base_config(settings: SmokeSettings, action: RemediationAction) -> ReconcileConfig:
    return ReconcileConfig(
        enabled=True,
        action=action,
        dry_run=not settings.live,
        allow_active_remediation=settings.env.allow_active,
        symbol_whitelist=[SYMBOL],
    )


@dataclass(slots=True)
class SmokeBudget:
    """The daily budget the scenarios share, as consecutive runs of the service do.

    ``real`` is the budget live mode spends, kept in ``BUDGET_STATE_PATH`` when
    that is set; ``dry`` is what dry-run spends instead: an in-memory copy seeded
    from the real one and never written, so a dry-run is blocked exactly where
    live mode would be (CONTRACT §5).
    """

    real: BudgetTracker
    dry: BudgetTracker

    @classmethod
    def of(cls, real: BudgetTracker) -> SmokeBudget:
        return cls(real=real, dry=real.shadow())


def _fake_port(scenario: Scenario, now_ms: int) -> FakePort:
    port = FakePort(mark_prices={SYMBOL: MARK_PRICE}, step_sizes={SYMBOL: STEP_SIZE}, now_ms=now_ms)
    drift_ts = now_ms - DRIFT_AGE_MS
    if scenario.inject_order:
        cid = generate_client_order_id(
            strategy_id="d", symbol=SYMBOL, level_id=1, ts_seconds=drift_ts // 1000, seq=1
        )
        port.add_order(
            ObservedOrder(
                client_order_id=cid,
                symbol=SYMBOL,
                side=Side.BUY,
                status=OrderStatus.NEW,
                qty=ORDER_QTY,
                price=Decimal("45000"),
                created_ts_ms=drift_ts,
                update_ts_ms=drift_ts,
            )
        )
    if scenario.inject_position:
        port.set_position(SYMBOL, POSITION_QTY, PositionSide.BOTH)
        port.positions[(SYMBOL, PositionSide.BOTH)].update_ts_ms = drift_ts
    return port


async def reconcile_once(
    scenario: Scenario,
    settings: SmokeSettings,
    port: ExchangePort,
    *,
    audit: AuditWriter | None,
    budget: SmokeBudget,
    clock: Clock = wall_clock_ms,
) -> RunReport:
    """Snapshot ``port`` and run the real pipeline once with the scenario's config."""
    config = base_config(settings, scenario.action)
    expected = MemoryExpectedStore()
    # The scenario's bot runs in this process and expects nothing: the drift is unexpected.
    expected.heartbeat()
    observed = ObservedStore()
    # The REST snapshot, through the port like the live service takes it.
    sent = clock()
    observed.apply_open_orders_snapshot(await port.fetch_open_orders(), sent)
    observed.apply_positions_snapshot(await port.fetch_positions(), sent)
    step = await port.get_step_size(SYMBOL)
    engine = ReconcileEngine(
        config, expected, observed, step_sizes={SYMBOL: step} if step else None
    )
    executor = RemediationExecutor(
        config=config,
        port=port,
        armed=settings.env.armed,
        symbol_whitelist=[SYMBOL],
        budget=budget.real,
        dry_budget=budget.dry,
        env=settings.env_mapping,
        clock=clock,
        expected_heartbeat_age=lambda: expected.heartbeat_age_s(clock()),
    )
    metrics = ReconcileMetrics(CollectorRegistry())
    runner = ReconcileRunner(
        engine, executor, reporter=Reporter(metrics=metrics, audit=audit), clock=clock
    )
    return await runner.run_once()


async def run_scenario(
    scenario: Scenario,
    settings: SmokeSettings,
    *,
    audit: AuditWriter | None,
    budget: SmokeBudget,
    clock: Clock = wall_clock_ms,
) -> ScenarioResult:
    """One scenario on the recording fake port."""
    port = _fake_port(scenario, clock())
    report = await reconcile_once(scenario, settings, port, audit=audit, budget=budget, clock=clock)
    result = ScenarioResult(scenario, report, port_calls=len(port.write_calls))
    check(
        result,
        settings,
        orders_left=sorted(port.open_orders),
        position_left=any(p.qty for p in port.positions.values()),
    )
    return result


def check(
    result: ScenarioResult,
    settings: SmokeSettings,
    *,
    orders_left: list[str],
    position_left: bool,
) -> None:
    """Record every way the scenario's outcome differs from runbook 14's expectations."""
    sc, rep, fail = result.scenario, result.report, result.failures
    if len(rep.mismatches) != sc.expected_mismatches:
        fail.append(f"expected {sc.expected_mismatches} mismatches, got {len(rep.mismatches)}")
    if result.actual_action != sc.expected_action:
        fail.append(f"expected action {sc.expected_action}, got {result.actual_action}")
    if settings.live:
        if rep.executed_count != 1:
            fail.append(f"expected 1 execution, got {rep.executed_count}")
        if result.port_calls < 1:
            fail.append("expected exchange writes in live mode, got none")
        if sc.expected_action == "cancel" and orders_left:
            fail.append(f"orders still open after cancel: {orders_left}")
        if sc.expected_action == "flatten" and position_left:
            fail.append("position not flat after flatten")
    else:
        if result.port_calls != 0:
            fail.append(f"dry-run made {result.port_calls} exchange writes")
        if rep.executed_count != 0:
            fail.append(f"dry-run executed {rep.executed_count} actions")
        if rep.planned_count != 1:
            fail.append(f"expected 1 planned action, got {rep.planned_count}")
    if rep.failed_count:
        fail.append(f"{rep.failed_count} remediation(s) failed")


# --- output ---------------------------------------------------------------------------------


def _header(out: TextIO, title: str) -> None:
    out.write(f"{RULE}\n  {title}\n{RULE}\n")


def print_configuration(
    out: TextIO, settings: SmokeSettings, audit: AuditWriter | None, budget_path: str | None
) -> None:
    cfg = base_config(settings, RemediationAction.CANCEL_ALL)
    _header(out, "CONFIGURATION")
    rows = [
        ("Mode", "LIVE" if settings.live else "DRY-RUN"),
        ("action", cfg.action.value),
        ("dry_run", str(cfg.dry_run)),
        ("allow_active", str(cfg.allow_active_remediation)),
        ("armed", str(settings.env.armed)),
        ("symbol_whitelist", str(cfg.symbol_whitelist)),
        ("allow_mainnet", str(settings.env.allow_mainnet_trade)),
        ("max_orders", str(cfg.max_orders_per_action)),
        ("max_symbols", str(cfg.max_symbols_per_action)),
        ("max_notional", f"{cfg.max_flatten_notional_usdt} USDT"),
        ("venue", settings.venue),
        ("audit", str(audit.path) if audit is not None else "disabled"),
        ("budget_state", budget_path or "in memory"),
    ]
    for key, value in rows:
        out.write(f"  {key + ':':<19}{value}\n")
    out.write("\n")


def print_scenario(out: TextIO, r: ScenarioResult) -> None:
    rep = r.report
    verdict = "PASS" if r.passed else "FAIL"
    out.write(f"--- Scenario: {r.scenario.name} [{verdict}] ---\n")
    types = ", ".join(sorted({m.type.value for m in rep.mismatches})) or "-"
    # Runbook 14 shows the first four rows together, in this order.
    rows = [
        ("Mismatches detected", str(len(rep.mismatches))),
        ("Expected action", r.scenario.expected_action),
        ("Actual action", r.actual_action),
        ("Port calls", str(r.port_calls)),
        ("Mismatch types", types),
        ("Planned count", str(rep.planned_count)),
        ("Executed count", str(rep.executed_count)),
        ("Blocked count", str(rep.blocked_count)),
        ("Skipped count", str(rep.skipped_count)),
        ("Run id", rep.run_id),
    ]
    if rep.block_reasons:
        rows.append(("Block reasons", ", ".join(f"{k}={v}" for k, v in rep.block_reasons.items())))
    for key, value in rows:
        out.write(f"  {key + ':':<22}{value}\n")
    for failure in r.failures:
        out.write(f"  FAILURE: {failure}\n")
    out.write("\n")


def print_summary(out: TextIO, settings: SmokeSettings, results: list[ScenarioResult]) -> None:
    passed = sum(1 for r in results if r.passed)
    _header(out, "SUMMARY")
    out.write(f"  Mode:    {'LIVE' if settings.live else 'DRY-RUN'}\n")
    out.write(f"  Passed:  {passed}/{len(results)}\n\n")
    if passed == len(results):
        out.write("  ALL SCENARIOS PASSED\n")
    else:
        failed = ", ".join(r.scenario.name for r in results if not r.passed)
        out.write(f"  SCENARIOS FAILED: {failed}\n")


def print_gate_failure(out: TextIO, checks: list[GateCheck]) -> None:
    _header(out, "LIVE MODE GATE CHECK FAILED")
    out.write("  The following gates are not satisfied:\n")
    for c in checks:
        if not c.ok:
            out.write(f"    - {c.name} must be '{c.required}' (got '{c.got}')\n")
    out.write("\n  Live mode requires ALL gates to pass.\n")
    out.write("  Use default mode (no --confirm) for dry-run.\n")


async def run_smoke(
    settings: SmokeSettings,
    out: TextIO,
    *,
    clock: Clock = wall_clock_ms,
) -> int:
    """Run the three scenarios, print the runbook's report, return the exit code."""
    env = settings.env
    path = env.budget_state_path
    # As the service's: a corrupt file stops here, before anything runs; with
    # --reset-budget-state the day starts clean, in dry-run too.
    config = base_config(settings, RemediationAction.CANCEL_ALL)
    place = BudgetPlace(path, env.budget_state_stale_hours)
    reset = settings.reset_budget_state
    loaded = lifecycle.load(config, place, reset=reset, now_ms=clock(), clock=clock)
    audit = AuditWriter(env.audit_path) if env.audit_enabled else None
    real, texts = lifecycle.prepare(loaded, config, place, now_ms=clock(), clock=clock)
    budget = SmokeBudget.of(real)
    for text in texts:
        out.write(text + "\n\n")
    print_configuration(out, settings, audit, str(path) if path is not None else None)
    results: list[ScenarioResult] = []
    if settings.venue == "sim":
        from grinder.smoke_sim import run_sim_scenarios

        results = await run_sim_scenarios(settings, audit=audit, budget=budget, clock=clock)
    else:
        for scenario in SCENARIOS:
            results.append(
                await run_scenario(scenario, settings, audit=audit, budget=budget, clock=clock)
            )
    for result in results:
        print_scenario(out, result)
    print_summary(out, settings, results)
    if audit is not None and audit.errors:
        logging.getLogger("grinder").error("audit: %d record(s) could not be written", audit.errors)
    return 0 if all(r.passed for r in results) else 1
