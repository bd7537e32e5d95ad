"""``grinder gates``: the gate chain's readings as the running service reports them.

From its control socket's ``/status``: the settings in force (config, armed,
ALLOW_MAINNET_TRADE, the whitelist), the operator state's problem (gate O), the cooldown
anchors the next run starts from (gate 6; with HA the shared one, the last write of any
instance), the age of the bot's heartbeat (gate E). From its metrics:
``grinder_ha_is_leader`` (gate 0) and the day's budget use. Each reading that has to be
guessed or taken from a second source says so in a note. ``ServiceReading.gate_inputs``
hands the readings to ``gate_inputs_from``, the function the executor builds its own
inputs with: nothing of what the executor computes is computed again here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from grinder.budget.ledger import BudgetState, utc_day
from grinder.ceremony.sources import Scrape, fmt_number
from grinder.reconcile.actions import RunContext
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.gate_inputs import GateSettings, ProposedWrite, gate_inputs_from
from grinder.reconcile.gates import GateInputs

EXPECTED_AGE_METRIC = "grinder_reconcile_expected_heartbeat_age_seconds"


@dataclass(frozen=True, slots=True)
class ServiceReading:
    """What the service reports, read once, as the readings of the next run's first
    candidate (``run``: its context, with the service's cooldown anchors)."""

    settings: GateSettings
    is_leader: bool
    heartbeat_age_s: float
    operator_problem: str | None
    day: BudgetState
    run: RunContext
    now_ms: int
    notes: tuple[str, ...]

    def gate_inputs(self, write: ProposedWrite) -> GateInputs:
        return gate_inputs_from(
            write,
            self.settings,
            is_leader=self.is_leader,
            now_ms=self.now_ms,
            heartbeat_age_s=self.heartbeat_age_s,
            run=self.run,
            day=self.day,
            operator_problem=self.operator_problem,
        )


def read_service(status: dict[str, Any], scrape: Scrape | None, now_ms: int) -> ServiceReading:
    """The readings from ``/status`` and the metrics (``scrape`` None: not read)."""
    notes: list[str] = []
    raw = status.get("config", {})
    known = {k: v for k, v in raw.items() if k in ReconcileConfig.model_fields}
    config = ReconcileConfig.model_validate(known)
    leader_value = scrape.value("grinder_ha_is_leader") if scrape else None
    if leader_value is None:
        notes.append("grinder_ha_is_leader unknown: gate 0 evaluated as leader")
    day = _budget_day(status, scrape, now_ms, notes, dry_run=config.dry_run)
    expected_age = _expected_age(status, scrape, notes)
    live_anchor, dry_anchor = _cooldown_anchors(status, scrape, config, notes)
    settings = GateSettings(
        config=config,
        armed=bool(status.get("armed")),
        symbol_whitelist=tuple(status.get("symbol_whitelist", config.symbol_whitelist)),
        mainnet_trade_allowed=bool(status.get("allow_mainnet_trade")),
    )
    run = RunContext(
        run_id="grinder-gates",
        started_ms=now_ms,
        live_anchor_ms=live_anchor,
        dry_anchor_ms=dry_anchor,
    )
    return ServiceReading(
        settings=settings,
        is_leader=leader_value is None or leader_value == 1,
        heartbeat_age_s=expected_age,
        operator_problem=_operator_problem(status),
        day=day,
        run=run,
        now_ms=now_ms,
        notes=tuple(notes),
    )


def _budget_day(
    status: dict[str, Any], scrape: Scrape | None, now_ms: int, notes: list[str], *, dry_run: bool
) -> BudgetState:
    """Today's budget use as the service counts it: in dry-run its shadow budget's
    (``/status`` → ``dry_run_budget``), else its gauges, else ``/status``."""
    shadow = status.get("dry_run_budget")
    calls = scrape.value("grinder_reconcile_budget_calls_used_day") if scrape else None
    notional = scrape.value("grinder_reconcile_budget_notional_used_day") if scrape else None
    if dry_run and isinstance(shadow, dict):
        calls = float(shadow.get("calls_used_day", 0))
        notional = float(shadow.get("notional_used_day", 0))
    elif calls is None or notional is None:
        day = status.get("budget", {})
        calls = float(day.get("calls_used_day", 0))
        notional = float(day.get("notional_used_day", 0))
        notes.append("budget use from /status (the service's metrics were not read)")
    return BudgetState(
        day=utc_day(now_ms),
        calls_used_day=int(calls),
        notional_used_day=Decimal(fmt_number(notional)),
        updated_ts_ms=now_ms,
    )


def _operator_problem(status: dict[str, Any]) -> str | None:
    """Gate O as the service reported it (``/status`` → ``operator.problem``)."""
    operator = status.get("operator")
    problem = operator.get("problem") if isinstance(operator, dict) else None
    return problem if isinstance(problem, str) else None


def _expected_age(status: dict[str, Any], scrape: Scrape | None, notes: list[str]) -> float:
    """Gate E's input as the service sees it: the age of the bot's heartbeat in its expected
    state (``math.inf``: never written by a bot), from ``/status``, else its gauge."""
    expected = status.get("expected")
    if isinstance(expected, dict) and "heartbeat_age_s" in expected:
        age = expected["heartbeat_age_s"]
        if age is None:
            return math.inf
        if isinstance(age, int | float) and not isinstance(age, bool):
            return float(age)
    value = scrape.value(EXPECTED_AGE_METRIC) if scrape else None
    if value is not None:
        notes.append(f"gate E from {EXPECTED_AGE_METRIC} (the service's /status does not say)")
        return value
    notes.append(
        "the service reports no expected-state heartbeat: gate E evaluated as never written"
    )
    return math.inf


def expected_source(status: dict[str, Any]) -> str:
    expected = status.get("expected")
    if not isinstance(expected, dict):
        return "expected state: not reported by the service"
    line = f"expected state: {expected.get('where')} ({expected.get('source')}), via /status"
    hint = expected.get("hint")
    return line + (f"; {hint}" if hint else "")


def _ms(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cooldown_anchors(
    status: dict[str, Any], scrape: Scrape | None, config: ReconcileConfig, notes: list[str]
) -> tuple[int | None, int | None]:
    """Gate 6's anchors as the service's next run would read them: (live, dry-run)."""
    cooldown = status.get("cooldown")
    if isinstance(cooldown, dict):
        # What RemediationExecutor.begin_run computes, read by the service just now (with
        # HA: the shared anchor, the last write of any instance).
        return _ms(cooldown.get("live_anchor_ts_ms")), _ms(cooldown.get("dry_run_anchor_ts_ms"))
    # A service that does not report its anchors: this instance's own last write only.
    notes.append(
        "the service does not report its cooldown anchors: gate 6 evaluated from this "
        "instance's grinder_reconcile_last_remediation_ts_ms (with HA, another instance's "
        "write may hold it closed)"
    )
    last = scrape.value("grinder_reconcile_last_remediation_ts_ms") if scrape else None
    last_ms = int(last) if last else None
    if scrape is None:
        notes.append("cooldown: last remediation time unknown (metrics not read)")
    planned = _ms(status.get("last_planned_ts_ms"))
    dry_anchor = max((t for t in (last_ms, planned) if t is not None), default=None)
    ever_planned = scrape.total("grinder_reconcile_action_planned_total") if scrape else None
    if config.dry_run and planned is None and ever_planned != 0:
        notes.append(
            "dry-run cooldown also runs from the last plan, which the service does not export: "
            "evaluated from the last execution only"
        )
    return last_ms, dry_anchor


def cooldown_source(status: dict[str, Any]) -> str:
    cooldown = status.get("cooldown")
    if not isinstance(cooldown, dict):
        return "cooldown anchor: grinder_reconcile_last_remediation_ts_ms (this instance)"
    if cooldown.get("source") == "redis":
        return "cooldown anchor: shared in Redis (the last write of any instance), via /status"
    return "cooldown anchor: this instance's last write, via /status"
