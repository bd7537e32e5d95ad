"""Stages 1 and 2 of runbook 13: passive health, then dry-run (nothing is live yet)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from grinder.ceremony import logscan
from grinder.ceremony.checks import (
    PASSIVE_RUNS,
    PLANNED_PER_HOUR_LIMIT,
    SNAPSHOT_AGE_LIMIT_S,
    Inputs,
    Item,
    Settings,
    Status,
    expected_state_live,
    metric_item,
    metrics_reachable,
    setting_item,
    show,
    uptime_h,
    uptime_text,
)
from grinder.ceremony.runtime import event_log, log_mismatches, run_directory
from grinder.ceremony.sources import Scrape, SourceError, fmt_number, fmt_series, instance_of
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.gates import GATES
from grinder.redaction import mask_url
from grinder.service.options import ServiceConfig

# --- stage 1 -------------------------------------------------------------------------------


def stage1(
    inputs: Inputs, scrape: Scrape | None, error: str | None, settings: Settings
) -> list[Item]:
    """Stage 1: the service answers, nothing is live, runs increase, snapshots are fresh,
    no unexpected order or position mismatch, the whitelist is set."""
    items = [metrics_reachable(inputs, scrape, error)]
    items.append(_nothing_active(settings))
    items.append(_runs_increasing(inputs, scrape, error))
    uptime = uptime_h(inputs, scrape)
    runs = scrape.value("grinder_reconcile_runs_total") if scrape else None
    items.append(
        Item(
            "1.1",
            f"Passive reconciliation for 24+ hours ({PASSIVE_RUNS}+ runs)",
            Status.MANUAL,
            f"grinder_reconcile_runs_total {fmt_number(runs)}; {uptime_text(uptime)}; "
            f"runbook: {PASSIVE_RUNS}+ runs, passive for 24+ hours before enabling anything",
        )
    )

    def snapshot(s: Scrape) -> tuple[bool, str]:
        age = s.value("grinder_reconcile_last_snapshot_age_seconds")
        interval = s.value("grinder_reconcile_snapshot_interval_seconds")
        text = f"grinder_reconcile_last_snapshot_age_seconds {fmt_number(age)}"
        if interval is not None:
            text += f" (snapshot interval {fmt_number(interval)} s)"
        if age is None:
            return False, text + " — absent"
        if math.isinf(age):
            return False, text + " — no snapshot yet"
        if age >= SNAPSHOT_AGE_LIMIT_S:
            return False, text + f" — must be < {SNAPSHOT_AGE_LIMIT_S:g} s"
        return True, text

    items.append(metric_item(scrape, error, "1.1", "Snapshot age < 120 s", snapshot))
    for mtype in ("ORDER_EXISTS_UNEXPECTED", "POSITION_NONZERO_UNEXPECTED"):
        items.append(
            metric_item(scrape, error, "1.1", f"No {mtype} mismatches", _no_mismatch(mtype))
        )
    items.append(log_mismatches(inputs))
    items.append(_whitelist_configured(settings, scrape))
    wl = settings.get("symbol_whitelist")
    items.append(
        Item(
            "1.3",
            "Whitelist matches your intended trading scope",
            Status.MANUAL,
            (wl.show("whitelist") if wl else settings.missing("symbol_whitelist"))
            + "; expected: the symbols you actively trade",
        )
    )
    items.append(
        Item("pre", "Team aware of the go-live schedule", Status.MANUAL, "runbook 13 prerequisites")
    )
    return items


def _passive_settings() -> tuple[tuple[str, str, Any], ...]:
    """The settings of the gates an operator opens (1-5 of ``reconcile.gates.GATES``), each
    with its gate and its passive value: the defaults of ``ReconcileConfig`` and of
    ``[service] armed``, and ``ALLOW_MAINNET_TRADE`` unset."""
    cfg, names = ReconcileConfig(), {g.id: g.name for g in GATES}
    return (
        ("action", f"gate 1 {names['1']}", cfg.action.value),
        ("dry_run", f"gate 2 {names['2']}", cfg.dry_run),
        ("allow_active_remediation", f"gate 3 {names['3']}", cfg.allow_active_remediation),
        ("armed", f"gate 4 {names['4']}", ServiceConfig().armed),
        ("allow_mainnet_trade", f"gate 5 {names['5']}", False),
    )


def _nothing_active(settings: Settings) -> Item:
    """Stage 1 comes before any active feature: every gate an operator opens is closed."""
    title = "No active feature enabled yet (passive first)"
    shown, active, unknown = [], [], []
    for name, gate, passive in _passive_settings():
        s = settings.get(name)
        if s is None:
            unknown.append(settings.missing(name))
            continue
        shown.append(s.show(name))
        if s.value != passive:
            active.append(f"{name}={show(s.value)} ({gate}; passive: {show(passive)})")
    evidence = "; ".join(shown + unknown)
    if active:
        return Item(
            "1",
            title,
            Status.FAIL,
            f"active: {', '.join(active)} — stage 1 comes before any active feature; "
            f"in force: {evidence}",
        )
    return Item("1", title, Status.FAIL if unknown else Status.PASS, evidence)


def _whitelist_configured(settings: Settings, scrape: Scrape | None) -> Item:
    title = "Symbol whitelist configured"
    empty = "empty: with require_whitelist every action is blocked (whitelist_required)"
    if settings.get("symbol_whitelist") is None and scrape is not None:
        size = scrape.value("grinder_reconcile_symbol_whitelist_size")
        if size is not None:
            text = f"grinder_reconcile_symbol_whitelist_size {fmt_number(size)}"
            if size > 0:
                return Item("1.3", title, Status.PASS, text + " (the symbols: control /status)")
            return Item("1.3", title, Status.FAIL, f"{text} — {empty}")
    return setting_item(
        settings,
        "1.3",
        title,
        "symbol_whitelist",
        lambda v: isinstance(v, list) and len(v) > 0,
        empty,
    )


def _runs_increasing(inputs: Inputs, scrape: Scrape | None, error: str | None) -> Item:
    title = "Reconcile runs increasing"
    if scrape is None:
        return Item("1.1", title, Status.FAIL, error or "metrics not read")
    first = scrape.value("grinder_reconcile_runs_total")
    if first is None:
        return Item("1.1", title, Status.FAIL, "grinder_reconcile_runs_total absent")
    start = inputs.monotonic()
    last: float | None = first
    while True:
        elapsed = inputs.monotonic() - start
        if last is not None and last > first:
            return Item(
                "1.1",
                title,
                Status.PASS,
                f"grinder_reconcile_runs_total {fmt_number(first)} → {fmt_number(last)} "
                f"in {elapsed:.1f} s",
            )
        if elapsed >= inputs.interval_s:
            return Item(
                "1.1",
                title,
                Status.FAIL,
                f"grinder_reconcile_runs_total stayed {fmt_number(first)} for {elapsed:.1f} s "
                f"(--interval {inputs.interval_s:g}; a full pass runs every 10 s)",
            )
        inputs.sleep(min(1.0, max(0.05, inputs.interval_s - elapsed)))
        try:
            last = inputs.read_metrics().value("grinder_reconcile_runs_total")
        except SourceError as exc:
            return Item("1.1", title, Status.FAIL, f"second sample: {exc}")


def _no_mismatch(mtype: str) -> Callable[[Scrape], tuple[bool, str]]:
    def decide(s: Scrape) -> tuple[bool, str]:
        total = s.value("grinder_reconcile_mismatch_total", type=mtype)
        active = s.value("grinder_reconcile_mismatch_active", type=mtype)
        name = fmt_series("grinder_reconcile_mismatch_total", {"type": mtype})
        text = f"{name} {fmt_number(total)} (standing now: {fmt_number(active)})"
        if total is None:
            return False, text + " — absent"
        return total == 0, text + ("" if total == 0 else " — runbook expects 0")

    return decide


# --- stage 2 -------------------------------------------------------------------------------


def stage2(
    inputs: Inputs, scrape: Scrape | None, error: str | None, settings: Settings
) -> list[Item]:
    """Stage 2: the dry-run settings (cancel only, dry-run, planning allowed, not armed yet)
    and the planned rate."""
    items = [metrics_reachable(inputs, scrape, error)]
    items.append(
        setting_item(
            settings,
            "2.1",
            "Cancel only first (action = cancel_all)",
            "action",
            lambda v: v == "cancel_all",
            "stage 2 starts with action=cancel_all (none plans nothing; flatten comes in stage 4)",
        )
    )
    items.append(
        setting_item(
            settings,
            "2.1",
            "dry_run = true (CRITICAL)",
            "dry_run",
            lambda v: v is True,
            "must stay true in stage 2: nothing may be sent",
        )
    )
    items.append(
        setting_item(
            settings,
            "2.1",
            "allow_active_remediation = true (allow planning)",
            "allow_active_remediation",
            lambda v: v is True,
            "runbook 13 stage 2 sets it true",
        )
    )
    items.append(
        setting_item(
            settings,
            "2.1",
            "Executor not armed yet (stage 3 arms it)",
            "armed",
            lambda v: v is False,
            "armed before stage 3",
        )
    )
    items.append(
        setting_item(
            settings,
            "2.1",
            "ALLOW_MAINNET_TRADE not set yet (stage 3 sets it)",
            "allow_mainnet_trade",
            lambda v: v is False,
            "set in the service before stage 3",
        )
    )
    items.append(expected_state_live(inputs, scrape, error, settings, "2.1"))
    items.append(_planned_rate(inputs, scrape, error))

    def no_flatten(s: Scrape) -> tuple[bool, str]:
        flatten = s.value("grinder_reconcile_action_planned_total", action="flatten")
        action = settings.get("action")
        text = f'grinder_reconcile_action_planned_total{{action="flatten"}} {fmt_number(flatten)}'
        if action is None or action.value != "cancel_all":
            return True, text + " (only checked with action=cancel_all)"
        return flatten == 0, text + ("" if flatten == 0 else " — expected 0 with action=cancel_all")

    items.append(
        metric_item(scrape, error, "2.3", "No flatten planned while cancel only", no_flatten)
    )
    uptime = uptime_h(inputs, scrape)
    items.append(
        Item(
            "2.3",
            "Dry-run ran for at least 1 hour",
            Status.MANUAL,
            uptime_text(uptime) + "; the hour counts from when dry-run was enabled",
        )
    )
    items.append(_review_plans(inputs, scrape))
    items.append(run_directory(inputs))
    return items


PLANNED_LAST_HOUR = "grinder_reconcile_action_planned_last_hour"
EXCESSIVE = " — runbook: STOP, plans are excessive"


def _planned_last_hour(inputs: Inputs, scrape: Scrape) -> tuple[dict[str, float], str] | None:
    """The service's own count of plans in the last hour, by action, and where it was read."""
    gauge = scrape.by_label(PLANNED_LAST_HOUR, "action")
    if gauge:
        return gauge, PLANNED_LAST_HOUR
    raw = inputs.status.get("planned_last_hour") if inputs.status is not None else None
    if isinstance(raw, dict) and all(isinstance(v, int | float) for v in raw.values()):
        values = {str(k): float(v) for k, v in raw.items()}
        return values, f"planned_last_hour ({inputs.status_label})"
    return None


PLANNED_RATE_TITLE = f"Planned actions not excessive (<= {PLANNED_PER_HOUR_LIMIT:g} per hour)"


def _planned_rate(inputs: Inputs, scrape: Scrape | None, error: str | None) -> Item:
    """Plans in the last hour against the limit: from Prometheus when given, else the
    service's own sliding count; a counter since start decides only what it can bound."""
    if scrape is None:
        return Item("2.3", PLANNED_RATE_TITLE, Status.FAIL, error or "metrics not read")
    planned = scrape.by_label("grinder_reconcile_action_planned_total", "action")
    counts = ", ".join(f"{a}={fmt_number(v)}" for a, v in sorted(planned.items())) or "absent"
    if inputs.prometheus_url:
        item = _rate_from_prometheus(inputs, inputs.prometheus_url, counts)
        if item is not None:
            return item
    uptime = uptime_h(inputs, scrape)
    recent = _planned_last_hour(inputs, scrape)
    if recent is not None:
        return _rate_from_last_hour_count(recent, uptime, counts)
    return _rate_from_counter_since_start(sum(planned.values()), uptime, counts)


def _judged_rate(count: float, evidence: str) -> Item:
    """``count`` plans in the last hour against the limit, with ``evidence`` shown."""
    ok = count <= PLANNED_PER_HOUR_LIMIT
    status = Status.PASS if ok else Status.FAIL
    return Item("2.3", PLANNED_RATE_TITLE, status, evidence + ("" if ok else EXCESSIVE))


def _rate_from_prometheus(inputs: Inputs, prometheus_url: str, counts: str) -> Item | None:
    """The increase over the last hour as Prometheus computes it; ``None`` when it has no
    series for this service (the other sources decide then)."""
    instance = instance_of(inputs.metrics_url)
    promql = f'sum(increase(grinder_reconcile_action_planned_total{{instance="{instance}"}}[1h]))'
    try:
        result = inputs.query(prometheus_url, promql)
    except SourceError as exc:
        return Item("2.3", PLANNED_RATE_TITLE, Status.FAIL, f"{exc}")
    if not result:
        return None
    rate = result[0][1]
    return _judged_rate(
        rate,
        f"{rate:.1f} planned in the last hour "
        f"({promql} at {mask_url(prometheus_url)}); counters: {counts}",
    )


def _rate_from_last_hour_count(
    recent: tuple[dict[str, float], str], uptime: float | None, counts: str
) -> Item:
    """The service's own sliding count of the last hour (``_planned_last_hour``)."""
    by_action, source = recent
    last_hour = sum(by_action.values())
    shown = ", ".join(f"{a}={fmt_number(v)}" for a, v in sorted(by_action.items()))
    since = (
        f"; the service started {uptime * 60:.0f} min ago: counted since its start"
        if uptime is not None and uptime < 1
        else ""
    )
    return _judged_rate(
        last_hour,
        f"{fmt_number(last_hour)} planned in the last hour ({source}: {shown}{since}); "
        f"grinder_reconcile_action_planned_total: {counts}",
    )


def _rate_from_counter_since_start(total: float, uptime: float | None, counts: str) -> Item:
    """A service without its own last-hour count: the counter since start bounds the last
    hour from above, and is the last hour's count while the service is less than an hour
    old; past that and over the limit, only an operator can tell (MANUAL)."""
    missing = f"the service does not export {PLANNED_LAST_HOUR} (an older version)"
    if total <= PLANNED_PER_HOUR_LIMIT:
        return _judged_rate(
            total,
            f"{fmt_number(total)} planned since the service started, so no more in the last "
            f"hour ({missing}); grinder_reconcile_action_planned_total: {counts}",
        )
    if uptime is not None and uptime <= 1:
        return _judged_rate(
            total,
            f"{fmt_number(total)} planned since the service started {uptime * 60:.0f} min ago, "
            f"all within the last hour ({missing}); grinder_reconcile_action_planned_total: "
            f"{counts}",
        )
    return Item(
        "2.3",
        PLANNED_RATE_TITLE,
        Status.MANUAL,
        f"{fmt_number(total)} planned since the service started ({uptime_text(uptime)}), "
        f"more than {PLANNED_PER_HOUR_LIMIT:g}; how many in the last hour a counter read once "
        f"cannot tell and {missing}: give --prometheus-url, or count the last hour's "
        f"REMEDIATION_PLANNED lines in the log; grinder_reconcile_action_planned_total: {counts}",
    )


def _review_plans(inputs: Inputs, scrape: Scrape | None) -> Item:
    title = "Plans match expectations (what would be cancelled)"
    planned = scrape.total("grinder_reconcile_action_planned_total") if scrape else None
    evidence = f"grinder_reconcile_action_planned_total {fmt_number(planned)}"
    log, problem = event_log(inputs)
    if problem is not None:
        evidence += f"; {problem}"
    elif log is not None:
        try:
            found = logscan.review(log, events=("REMEDIATION_PLANNED",), keep_last=1)
        except SourceError as exc:
            evidence += f"; {exc}"
        else:
            n = found.event_counts.get("REMEDIATION_PLANNED", 0)
            targets = len(found.targets.get("REMEDIATION_PLANNED", ()))
            evidence += (
                f"; {log}: {n} REMEDIATION_PLANNED line(s) for {targets} distinct "
                "order(s)/position(s) (a standing mismatch is planned once per incident)"
            )
            last = found.last_lines.get("REMEDIATION_PLANNED")
            if last:
                evidence += f", last: {last[-1]}"
    evidence += "; review every plan (manual orders? another instance?) before stage 3"
    return Item("2.3", title, Status.MANUAL, evidence)
