"""Runbook 13's checklists: the items, the inputs, and where each setting is read.

Each item is PASS or FAIL when it can be decided from what the service exposes
(metrics, the settings in force, the budget file, the event log, a Prometheus
server), MANUAL when it needs the operator's judgement; every item carries its
evidence: the metric value, the config field and where it was read, the
environment variable. A stage passes when no automatic item fails. The stages
themselves are in ``passive`` (1-2) and ``active`` (3-4); ``stages.run_stage``
runs one.

Where settings come from, most authoritative first: the control socket's
``/status`` (what the running service has in force), the service's own gauges
(``grinder_reconcile_dry_run``, ``…_armed``, … — live too), then a ``--config``
TOML file (what the service would load). The service's environment, the paths it
writes and reads (budget file, event log, run directory) and its start time come
from ``/status``'s ``runtime`` (``grinder.service.runtime_status``), never from the
shell the checker runs in: a variable exported there says nothing about the service.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any

from grinder.ceremony.sources import (
    LoadedRule,
    Scrape,
    fetch_alert_rules,
    fmt_number,
    query_vector,
)
from grinder.reconcile.config import ReconcileConfig
from grinder.redaction import mask_url

STAGES: dict[int, str] = {
    1: "Verify passive health",
    2: "Dry-run mode",
    3: "Real execution with minimal limits",
    4: "Gradual limit increase (production)",
}

# The alerts monitoring/alert_rules.yml ships (a test keeps this list and the file in step).
REQUIRED_ALERTS: tuple[str, ...] = (
    "GrinderReconcileDown",
    "GrinderReconcileSnapshotStale",
    "GrinderReconcileMismatchSpike",
    "GrinderReconcileMismatchUnremediated",
    "GrinderRemediationExecuted",
    "GrinderRemediationExecutedRateHigh",
    "GrinderRemediationPlanned",
    "GrinderRemediationPlannedRateHigh",
    "GrinderRemediationBlocked",
    "GrinderRemediationFailed",
    "GrinderRemediationBudgetLow",
    "GrinderUserDataStreamDown",
    "GrinderRequestWeightHigh",
    "GrinderExpectedStateStale",
    "GrinderDeadmanRenewalsWithheld",
    "GrinderDeadmanNotArmed",
    "GrinderIncidentUnacknowledged",
    "GrinderHANoLeader",
    "GrinderHAMultipleLeaders",
    "GrinderHARedisDown",
    "GrinderHALeadershipFlapping",
    "GrinderHAFencedWrite",
)

SNAPSHOT_AGE_LIMIT_S = 120.0
PLANNED_PER_HOUR_LIMIT = 10.0
PRODUCTION_MAX_ORDERS = 10
PRODUCTION_MAX_SYMBOLS = 3
PRODUCTION_MIN_COOLDOWN_S = 60.0
DEFAULT_MAX_FLATTEN_NOTIONAL = Decimal("500")
PASSIVE_RUNS = 500


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    MANUAL = "MANUAL"


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    title: str
    status: Status
    evidence: str

    def as_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "evidence": self.evidence,
        }


@dataclass
class Inputs:
    """Everything a stage check reads; the CLI fills it, tests fake it."""

    stage: int
    metrics_url: str
    read_metrics: Callable[[], Scrape]
    status: Mapping[str, Any] | None = None
    status_label: str = "control /status"
    status_error: str | None = None
    file_config: ReconcileConfig | None = None
    file_armed: bool | None = None
    file_label: str = "--config"
    runtime: Mapping[str, Any] | None = None
    """``/status``'s ``runtime``: the service's paths, environment, start time (None: the
    service does not report it)."""
    budget_path: Path | None = None
    """``--budget-state``, when given (else the service's own budget file)."""
    log_file: Path | None = None
    """``--log-file``, when given (else the service's own log file)."""
    prometheus_url: str | None = None
    interval_s: float = 15.0
    now: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    read_rules: Callable[[str], dict[str, LoadedRule]] = fetch_alert_rules
    query: Callable[[str, str], list[tuple[dict[str, str], float]]] = query_vector


# --- settings in force -----------------------------------------------------------------

_GAUGES = {
    "dry_run": "grinder_reconcile_dry_run",
    "allow_active_remediation": "grinder_reconcile_allow_active_remediation",
    "armed": "grinder_reconcile_armed",
    "allow_mainnet_trade": "grinder_reconcile_allow_mainnet_trade",
}
_STATUS_TOP = ("armed", "allow_mainnet_trade", "symbol_whitelist")


@dataclass(frozen=True, slots=True)
class Setting:
    value: Any
    source: str

    def show(self, name: str) -> str:
        return f"{name}={show(self.value)} ({self.source})"


def show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if hasattr(value, "value") and not isinstance(value, Decimal):
        return str(value.value)
    if isinstance(value, float) and value == int(value):
        return f"{value:g}"
    return str(value) if not isinstance(value, list) else "[" + ", ".join(map(str, value)) + "]"


class Settings:
    """Looks up a setting in /status, then the service's gauges, then the config file."""

    def __init__(self, inputs: Inputs, scrape: Scrape | None) -> None:
        self.inputs = inputs
        self.scrape = scrape

    def get(self, name: str) -> Setting | None:
        status = self.inputs.status
        if status is not None:
            where = status if name in _STATUS_TOP else status.get("config", {})
            if isinstance(where, Mapping) and name in where:
                return Setting(_normalise(name, where[name]), f"{self.inputs.status_label}")
        if self.scrape is not None:
            gauge = _GAUGES.get(name)
            if gauge is not None:
                value = self.scrape.value(gauge)
                if value is not None:
                    return Setting(value == 1, f"metrics {gauge}")
            if name == "action":
                on = [
                    a
                    for a, v in self.scrape.by_label("grinder_reconcile_action", "action").items()
                    if v == 1
                ]
                if len(on) == 1:
                    return Setting(on[0], 'metrics grinder_reconcile_action{action="…"}')
        cfg = self.inputs.file_config
        if cfg is not None:
            label = self.inputs.file_label
            if name == "armed":
                if self.inputs.file_armed is not None:
                    return Setting(self.inputs.file_armed, f"{label} [service] armed")
                return None
            if name == "allow_mainnet_trade":
                return None
            if name in ReconcileConfig.model_fields:
                return Setting(_normalise(name, getattr(cfg, name)), f"{label} [reconcile]")
        return None

    def missing(self, name: str) -> str:
        why = self.inputs.status_error or "no control socket answer and no --config"
        return f"{name}: unknown ({why})"


def _normalise(name: str, value: Any) -> Any:
    if hasattr(value, "value") and not isinstance(value, Decimal):
        return value.value
    if name in ("max_flatten_notional_usdt", "max_notional_per_run", "max_notional_per_day"):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return value
    return value


# --- item helpers ----------------------------------------------------------------------


def setting_item(
    settings: Settings,
    item_id: str,
    title: str,
    name: str,
    ok: Callable[[Any], bool],
    need: str,
) -> Item:
    s = settings.get(name)
    if s is None:
        return Item(item_id, title, Status.FAIL, settings.missing(name))
    passed = ok(s.value)
    evidence = s.show(name) + ("" if passed else f" — {need}")
    return Item(item_id, title, Status.PASS if passed else Status.FAIL, evidence)


def metric_item(
    scrape: Scrape | None,
    error: str | None,
    item_id: str,
    title: str,
    decide: Callable[[Scrape], tuple[bool, str]],
) -> Item:
    if scrape is None:
        return Item(item_id, title, Status.FAIL, error or "metrics not read")
    ok, evidence = decide(scrape)
    return Item(item_id, title, Status.PASS if ok else Status.FAIL, evidence)


def uptime_h(inputs: Inputs, scrape: Scrape | None) -> float | None:
    """Hours since the service started: ``runtime.started_ts_ms`` of ``/status``, else (an
    older service) its counters' ``_created`` time."""
    started_ms = inputs.runtime.get("started_ts_ms") if inputs.runtime is not None else None
    if isinstance(started_ms, int | float) and not isinstance(started_ms, bool):
        started: float | None = started_ms / 1000
    else:
        started = scrape.started_at() if scrape is not None else None
    if started is None:
        return None
    return max(0.0, inputs.now() - started) / 3600


def uptime_text(uptime_h: float | None) -> str:
    if uptime_h is None:
        return "service uptime unknown (no start time in /status runtime or its metrics)"
    return f"service up {uptime_h:.2f} h"


# --- shared items ----------------------------------------------------------------------


def metrics_reachable(inputs: Inputs, scrape: Scrape | None, error: str | None) -> Item:
    if scrape is None:
        return Item("svc", "Service metrics endpoint answers", Status.FAIL, error or "not read")
    up = scrape.value("grinder_reconcile_up")
    ok = up == 1
    evidence = (
        f"{mask_url(inputs.metrics_url)}: {len(scrape.samples)} samples; "
        f"grinder_reconcile_up {fmt_number(up)}"
    )
    return Item(
        "svc", "Service metrics endpoint answers", Status.PASS if ok else Status.FAIL, evidence
    )


EXPECTED_AGE = "grinder_reconcile_expected_heartbeat_age_seconds"
EXPECTED_MAX_AGE = "grinder_reconcile_expected_heartbeat_max_age_seconds"


def expected_state_live(
    inputs: Inputs, scrape: Scrape | None, error: str | None, settings: Settings, item_id: str
) -> Item:
    """Gate E: a bot keeps the expected state the service reads (its heartbeat is at most
    ``expected_heartbeat_max_age_s`` old); otherwise every remediation, planned or live, is
    blocked with ``expected_state_stale``."""
    title = "The bot's expected state is live (gate E)"
    if scrape is None:
        return Item(item_id, title, Status.FAIL, error or "metrics not read")
    age = scrape.value(EXPECTED_AGE)
    if age is None:
        return Item(item_id, title, Status.FAIL, f"{EXPECTED_AGE} absent (an older service?)")
    limit = settings.get("expected_heartbeat_max_age_s")
    if limit is not None and isinstance(limit.value, int | float):
        max_age, shown = float(limit.value), limit.show("expected_heartbeat_max_age_s")
    else:
        gauge = scrape.value(EXPECTED_MAX_AGE)
        max_age = gauge if gauge is not None else ReconcileConfig().expected_heartbeat_max_age_s
        shown = f"{EXPECTED_MAX_AGE} {fmt_number(max_age)}"
    ok = age <= max_age
    evidence = f"{EXPECTED_AGE} {fmt_number(age)} ({shown})"
    status = inputs.status.get("expected") if inputs.status is not None else None
    if isinstance(status, Mapping) and status.get("where"):
        evidence += f"; {status.get('where')}"
    if ok:
        return Item(item_id, title, Status.PASS, evidence)
    why = "never written by a bot" if age == float("inf") else "the bot stopped writing"
    hint = status.get("hint") if isinstance(status, Mapping) else None
    evidence += f" — {why}: every remediation is blocked (expected_state_stale); " + (
        hint or "start the bot, it must heartbeat (docs/EXPECTED_STATE.md)"
    )
    return Item(item_id, title, Status.FAIL, evidence)


@dataclass(frozen=True)
class StageResult:
    stage: int
    items: tuple[Item, ...]

    @property
    def failed(self) -> list[Item]:
        return [i for i in self.items if i.status is Status.FAIL]

    @property
    def passed(self) -> bool:
        return not self.failed


def summary_counts(items: Sequence[Item]) -> dict[Status, int]:
    return {s: sum(1 for i in items if i.status is s) for s in Status}
