"""Stages 3 and 4 of runbook 13: real execution with minimal limits, then production limits."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from grinder.ceremony.checks import (
    DEFAULT_MAX_FLATTEN_NOTIONAL,
    PRODUCTION_MAX_ORDERS,
    PRODUCTION_MAX_SYMBOLS,
    PRODUCTION_MIN_COOLDOWN_S,
    REQUIRED_ALERTS,
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
from grinder.ceremony.runtime import budget_file, env_text
from grinder.ceremony.sources import Scrape, SourceError, fmt_number, instance_of
from grinder.redaction import mask_url

# --- stage 3 -------------------------------------------------------------------------------


def stage3(
    inputs: Inputs, scrape: Scrape | None, error: str | None, settings: Settings
) -> list[Item]:
    """Stage 3: the arming gates open, the minimal limits, gate 0, and a persisted daily budget."""
    items = [metrics_reachable(inputs, scrape, error)]
    expect: list[tuple[str, str, str, Callable[[Any], bool], str]] = [
        ("3.1", "action = cancel_all", "action", lambda v: v == "cancel_all", "cancel only"),
        ("3.1", "dry_run = false (NOW False)", "dry_run", lambda v: v is False, "still dry-run"),
        (
            "3.1",
            "allow_active_remediation = true",
            "allow_active_remediation",
            lambda v: v is True,
            "gate 3 closed",
        ),
        ("3.1", "Executor armed (NOW True)", "armed", lambda v: v is True, "gate 4 closed"),
        (
            "3.1",
            "Minimal limits: 1 order per run",
            "max_orders_per_action",
            lambda v: v == 1,
            "start with max_orders_per_action=1",
        ),
        (
            "3.1",
            "Minimal limits: 1 symbol per run",
            "max_symbols_per_action",
            lambda v: v == 1,
            "start with max_symbols_per_action=1",
        ),
        (
            "3.1",
            "5 minute cooldown",
            "cooldown_seconds",
            lambda v: isinstance(v, int | float) and v >= 300,
            "cooldown_seconds must be >= 300",
        ),
        (
            "3.1",
            "Single symbol first (whitelist)",
            "symbol_whitelist",
            lambda v: isinstance(v, list) and len(v) == 1,
            "one symbol, e.g. [BTCUSDT]",
        ),
    ]
    for item_id, title, name, ok, need in expect:
        items.append(setting_item(settings, item_id, title, name, ok, need))
    items.append(_mainnet(inputs, settings))

    def leader(s: Scrape) -> tuple[bool, str]:
        value = s.value("grinder_ha_is_leader")
        text = f"grinder_ha_is_leader {fmt_number(value)}"
        return value == 1, text + ("" if value == 1 else " — not the leader: gate 0 blocks")

    items.append(metric_item(scrape, error, "0", "This instance may remediate (gate 0)", leader))
    items.append(expected_state_live(inputs, scrape, error, settings, "E"))
    items.append(budget_file(inputs, scrape, "B"))
    executed = (
        scrape.by_label("grinder_reconcile_action_executed_total", "action") if scrape else {}
    )
    shown = ", ".join(f"{a}={fmt_number(v)}" for a, v in sorted(executed.items())) or "absent"
    items.append(
        Item(
            "3.4",
            "First execution verified on the exchange",
            Status.MANUAL,
            f"grinder_reconcile_action_executed_total: {shown}; check the order on Binance",
        )
    )
    items.append(
        Item("3", "Run for 24+ hours", Status.MANUAL, uptime_text(uptime_h(inputs, scrape)))
    )
    return items


def _mainnet(inputs: Inputs, settings: Settings) -> Item:
    """Gate 5 as the service has it: the value in force (its environment at start, or
    ``grinder control allow-mainnet`` since), never the checker's own shell."""
    title = "ALLOW_MAINNET_TRADE=1 set"
    start = env_text(inputs, "ALLOW_MAINNET_TRADE")
    s = settings.get("allow_mainnet_trade")
    if s is None:
        return Item(
            "3.2", title, Status.FAIL, f"{settings.missing('allow_mainnet_trade')}; {start}"
        )
    ok = s.value is True
    return Item(
        "3.2",
        title,
        Status.PASS if ok else Status.FAIL,
        s.show("service allow_mainnet_trade")
        + f"; {start}"
        + ("" if ok else " — gate 5 closed: grinder control allow-mainnet, or export before start"),
    )


# --- stage 4 -------------------------------------------------------------------------------


def stage4(
    inputs: Inputs, scrape: Scrape | None, error: str | None, settings: Settings
) -> list[Item]:
    """Stage 4: the limits in force within production, budget left, the alert rules loaded."""
    items = [metrics_reachable(inputs, scrape, error)]
    items.append(
        setting_item(
            settings,
            "4.1",
            f"Orders per run within production ({PRODUCTION_MAX_ORDERS})",
            "max_orders_per_action",
            lambda v: isinstance(v, int) and v <= PRODUCTION_MAX_ORDERS,
            f"above the production limit {PRODUCTION_MAX_ORDERS}",
        )
    )
    items.append(
        setting_item(
            settings,
            "4.1",
            f"Symbols per run within production ({PRODUCTION_MAX_SYMBOLS})",
            "max_symbols_per_action",
            lambda v: isinstance(v, int) and v <= PRODUCTION_MAX_SYMBOLS,
            f"above the production limit {PRODUCTION_MAX_SYMBOLS}",
        )
    )
    items.append(
        setting_item(
            settings,
            "4.1",
            f"Cooldown at least {PRODUCTION_MIN_COOLDOWN_S:g} s",
            "cooldown_seconds",
            lambda v: isinstance(v, int | float) and v >= PRODUCTION_MIN_COOLDOWN_S,
            f"below the production cooldown {PRODUCTION_MIN_COOLDOWN_S:g} s",
        )
    )
    items.append(_flatten_limit(settings))
    items.append(expected_state_live(inputs, scrape, error, settings, "E"))
    items.append(_budget_left(inputs, scrape, error, settings))
    items.append(budget_file(inputs, scrape, "B"))
    items.extend(_alerting(inputs))
    changes = (
        scrape.value("grinder_reconcile_control_changes_total", source="control")
        if scrape
        else None
    )
    items.append(
        Item(
            "4",
            "Rollback procedure tested",
            Status.MANUAL,
            f'grinder_reconcile_control_changes_total{{source="control"}} {fmt_number(changes)} '
            "(grinder control set action none / set dry_run true / disarm / deny-mainnet)",
        )
    )
    items.append(
        Item(
            "4.1",
            "Gradual limit increase (week by week)",
            Status.MANUAL,
            "week 1: 3 orders; week 2: 5; week 3: 2 symbols; week 4: 10 orders, 3 symbols, 60 s",
        )
    )
    return items


def _flatten_limit(settings: Settings) -> Item:
    title = "Flatten notional limit (if flatten is enabled)"
    action = settings.get("action")
    limit = settings.get("max_flatten_notional_usdt")
    if limit is None:
        return Item("4.2", title, Status.FAIL, settings.missing("max_flatten_notional_usdt"))
    value = limit.value if isinstance(limit.value, Decimal) else Decimal(str(limit.value))
    ok = value <= DEFAULT_MAX_FLATTEN_NOTIONAL
    mode = f"action={action.value}" if action else "action unknown"
    return Item(
        "4.2",
        title,
        Status.PASS if ok else Status.FAIL,
        f"{limit.show('max_flatten_notional_usdt')}; {mode}; start with 100, at most 500 (default)"
        + ("" if ok else " — above 500 USDT"),
    )


def _budget_left(
    inputs: Inputs, scrape: Scrape | None, error: str | None, settings: Settings
) -> Item:
    title = "Budget left today (limits in force)"
    if scrape is None:
        return Item("B", title, Status.FAIL, error or "metrics not read")
    calls = scrape.value("grinder_reconcile_budget_calls_remaining_day")
    notional = scrape.value("grinder_reconcile_budget_notional_remaining_day")
    limits = []
    for name in (
        "max_calls_per_run",
        "max_notional_per_run",
        "max_calls_per_day",
        "max_notional_per_day",
    ):
        s = settings.get(name)
        limits.append(f"{name}={show(s.value)}" if s else f"{name}=?")
    text = (
        f"grinder_reconcile_budget_calls_remaining_day {fmt_number(calls)}, "
        f"grinder_reconcile_budget_notional_remaining_day {fmt_number(notional)}; "
        + ", ".join(limits)
    )
    ok = calls is not None and calls > 0 and notional is not None and notional > 0
    return Item(
        "B", title, Status.PASS if ok else Status.FAIL, text + ("" if ok else " — exhausted")
    )


def _alerting(inputs: Inputs) -> list[Item]:
    title = "Alert rules loaded in Prometheus"
    url = inputs.prometheus_url
    if not url:
        return [
            Item(
                "4",
                title,
                Status.MANUAL,
                "give --prometheus-url to check that monitoring/alert_rules.yml is loaded",
            )
        ]
    try:
        rules = inputs.read_rules(url)
    except SourceError as exc:
        return [Item("4", title, Status.FAIL, str(exc))]
    missing = [a for a in REQUIRED_ALERTS if a not in rules]
    broken = [a for a in REQUIRED_ALERTS if a in rules and rules[a].health not in ("ok", "unknown")]
    firing = sorted(a for a, r in rules.items() if a in REQUIRED_ALERTS and r.state == "firing")
    loaded = len(REQUIRED_ALERTS) - len(missing)
    text = f"{mask_url(url)}: {loaded}/{len(REQUIRED_ALERTS)} GRINDER alerts loaded"
    if missing:
        text += f"; missing: {', '.join(missing)}"
    if broken:
        text += f"; evaluation errors: {', '.join(broken)}"
    text += f"; firing now: {', '.join(firing) if firing else 'none'}"
    items = [Item("4", title, Status.PASS if not missing and not broken else Status.FAIL, text)]
    instance = instance_of(inputs.metrics_url)
    promql = f'up{{instance="{instance}"}}'
    try:
        result = inputs.query(url, promql)
    except SourceError as exc:
        items.append(Item("4", "Prometheus scrapes this service", Status.FAIL, str(exc)))
        return items
    ok = any(v == 1 for _, v in result)
    jobs = sorted({labels.get("job", "?") for labels, _ in result})
    items.append(
        Item(
            "4",
            "Prometheus scrapes this service",
            Status.PASS if ok else Status.FAIL,
            f"{promql} = {', '.join(fmt_number(v) for _, v in result) or 'no series'}"
            + (f" (job {', '.join(jobs)})" if jobs else "")
            + ("" if ok else f" — add {instance} to a scrape job"),
        )
    )
    return items
