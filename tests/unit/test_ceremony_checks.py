"""grinder.ceremony: runbook 13's stage checklists on faked service readings (no I/O)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from grinder.ceremony import logscan
from grinder.ceremony.checks import REQUIRED_ALERTS, Inputs, StageResult, Status
from grinder.ceremony.report import render
from grinder.ceremony.sources import LoadedRule, Scrape, SourceError, instance_of, parse_scrape
from grinder.ceremony.stages import run_stage
from grinder.reconcile.config import ReconcileConfig

NOW = 1_800_000_000.0
METRICS_URL = "http://127.0.0.1:9090/metrics"

HEALTHY = {
    "grinder_reconcile_up": 1,
    "grinder_reconcile_runs_total": 40,
    "grinder_reconcile_runs_created": NOW - 600,
    "grinder_reconcile_last_snapshot_age_seconds": 12.5,
    "grinder_reconcile_snapshot_interval_seconds": 37,
    'grinder_reconcile_mismatch_total{type="ORDER_EXISTS_UNEXPECTED"}': 0,
    'grinder_reconcile_mismatch_total{type="POSITION_NONZERO_UNEXPECTED"}': 0,
    'grinder_reconcile_mismatch_active{type="ORDER_EXISTS_UNEXPECTED"}': 0,
    'grinder_reconcile_action_planned_total{action="cancel_all"}': 0,
    'grinder_reconcile_action_planned_total{action="flatten"}': 0,
    'grinder_reconcile_action_planned_last_hour{action="cancel_all"}': 0,
    'grinder_reconcile_action_planned_last_hour{action="flatten"}': 0,
    'grinder_reconcile_action_executed_total{action="cancel_all"}': 0,
    "grinder_reconcile_dry_run": 1,
    "grinder_reconcile_armed": 0,
    "grinder_reconcile_allow_active_remediation": 1,
    "grinder_reconcile_allow_mainnet_trade": 0,
    'grinder_reconcile_action{action="none"}': 0,
    'grinder_reconcile_action{action="cancel_all"}': 1,
    'grinder_reconcile_action{action="flatten"}': 0,
    "grinder_ha_is_leader": 1,
    "grinder_reconcile_budget_calls_used_day": 0,
    "grinder_reconcile_budget_calls_remaining_day": 100,
    "grinder_reconcile_budget_notional_remaining_day": 5000,
    'grinder_reconcile_control_changes_total{source="control"}': 2,
    "grinder_reconcile_expected_heartbeat_age_seconds": 4.2,
    "grinder_reconcile_expected_heartbeat_max_age_seconds": 60,
}


def scrape(series: Mapping[str, float] | None = None, **simple: float) -> Scrape:
    """The healthy reading with some series changed (labelled ones through ``series``)."""
    values: dict[str, float] = {**HEALTHY, **(series or {}), **simple}
    text = "".join(f"{k} {v}\n" for k, v in values.items())
    return parse_scrape(METRICS_URL, text)


def older_scrape(series: Mapping[str, float] | None = None, **simple: float) -> Scrape:
    """The reading of a service that does not count its plans of the last hour."""
    values: dict[str, float] = {**HEALTHY, **(series or {}), **simple}
    text = "".join(
        f"{k} {v}\n"
        for k, v in values.items()
        if not k.startswith("grinder_reconcile_action_planned_last_hour")
    )
    return parse_scrape(METRICS_URL, text)


def status(**config: Any) -> dict[str, Any]:
    cfg = ReconcileConfig(
        action="cancel_all",
        dry_run=True,
        allow_active_remediation=True,
        symbol_whitelist=["BTCUSDT"],
    ).summary()
    cfg.update(config)
    return {
        "venue": "sim",
        "mode": "dry_run" if cfg["dry_run"] else "live",
        "armed": False,
        "allow_mainnet_trade": False,
        "symbol_whitelist": cfg["symbol_whitelist"],
        "config": cfg,
        "runs": 40,
    }


class Clock:
    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def inputs(
    stage: int,
    reads: list[Scrape] | Callable[[], Scrape],
    *,
    status_: Mapping[str, Any] | None = None,
    clock: Clock | None = None,
    **kw: Any,
) -> Inputs:
    clock = clock or Clock()
    if callable(reads):
        read = reads
    else:
        queue = list(reads)

        def read() -> Scrape:
            return queue.pop(0) if len(queue) > 1 else queue[0]

    return Inputs(
        stage=stage,
        metrics_url=METRICS_URL,
        read_metrics=read,
        status=status_,
        now=lambda: NOW,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        **kw,
    )


def by_title(result: Any, title: str) -> Any:
    return next(i for i in result.items if i.title == title)


def test_stage1_passes_on_a_healthy_passive_service() -> None:
    runs_then = scrape()
    runs_now = scrape(grinder_reconcile_runs_total=41)
    result = run_stage(inputs(1, [runs_then, runs_then, runs_now], status_=status()))
    assert result.passed, render(result)
    item = by_title(result, "Reconcile runs increasing")
    assert item.evidence == "grinder_reconcile_runs_total 40 → 41 in 2.0 s"
    snap = by_title(result, "Snapshot age < 120 s")
    assert snap.evidence == (
        "grinder_reconcile_last_snapshot_age_seconds 12.5 (snapshot interval 37 s)"
    )
    assert by_title(result, "Mismatch history in the log: none unresolved").status is Status.MANUAL


def test_stage1_fails_when_runs_do_not_move_within_the_interval() -> None:
    clock = Clock()
    result = run_stage(inputs(1, [scrape()], status_=status(), clock=clock, interval_s=3))
    item = by_title(result, "Reconcile runs increasing")
    assert item.status is Status.FAIL
    assert item.evidence.startswith("grinder_reconcile_runs_total stayed 40 for 3.0 s")
    assert sum(clock.slept) == pytest.approx(3.0)


def test_stage1_fails_before_the_first_snapshot() -> None:
    none_yet = scrape(grinder_reconcile_last_snapshot_age_seconds=math.inf)
    more = scrape(grinder_reconcile_runs_total=41)
    result = run_stage(inputs(1, [none_yet, more], status_=status()))
    snap = by_title(result, "Snapshot age < 120 s")
    assert snap.status is Status.FAIL
    assert snap.evidence == (
        "grinder_reconcile_last_snapshot_age_seconds +Inf (snapshot interval 37 s)"
        " — no snapshot yet"
    )


def test_stage1_fails_on_stale_snapshot_and_unexpected_mismatches() -> None:
    bad = scrape(
        {
            'grinder_reconcile_mismatch_total{type="ORDER_EXISTS_UNEXPECTED"}': 2,
            'grinder_reconcile_mismatch_active{type="ORDER_EXISTS_UNEXPECTED"}': 1,
        },
        grinder_reconcile_last_snapshot_age_seconds=130,
    )
    more = scrape(grinder_reconcile_runs_total=41)
    result = run_stage(inputs(1, [bad, more], status_=status()))
    assert not result.passed
    snap = by_title(result, "Snapshot age < 120 s")
    assert snap.status is Status.FAIL
    assert snap.evidence.endswith("— must be < 120 s")
    orders = by_title(result, "No ORDER_EXISTS_UNEXPECTED mismatches")
    assert orders.evidence == (
        'grinder_reconcile_mismatch_total{type="ORDER_EXISTS_UNEXPECTED"} 2 '
        "(standing now: 1) — runbook expects 0"
    )


def test_unreachable_metrics_fail_every_metric_item_with_the_reason() -> None:
    def refuse() -> Scrape:
        raise SourceError(f"{METRICS_URL}: cannot connect ([Errno 111] Connection refused)")

    result = run_stage(inputs(1, refuse, status_=status()))
    svc = by_title(result, "Service metrics endpoint answers")
    assert svc.status is Status.FAIL
    assert "Connection refused" in svc.evidence
    assert by_title(result, "Reconcile runs increasing").status is Status.FAIL
    # Settings still come from /status.
    assert by_title(result, "Symbol whitelist configured").status is Status.PASS


def test_settings_fall_back_to_the_service_gauges_without_a_control_socket() -> None:
    result = run_stage(
        inputs(2, [scrape()], status_error="no control socket at /run/x (is the service running?)")
    )
    assert by_title(result, "dry_run = true (CRITICAL)").evidence == (
        "dry_run=true (metrics grinder_reconcile_dry_run)"
    )
    assert by_title(result, "Cancel only first (action = cancel_all)").status is Status.PASS
    assert by_title(result, "Executor not armed yet (stage 3 arms it)").status is Status.PASS


PLANNED_TITLE = "Planned actions not excessive (<= 10 per hour)"


@pytest.mark.parametrize(
    ("since_start", "last_hour", "uptime_h", "verdict", "text"),
    [
        (
            3,
            3,
            0.2,
            Status.PASS,
            "3 planned in the last hour (grinder_reconcile_action_planned_last_hour: "
            "cancel_all=3, flatten=0; the service started 12 min ago: counted since its start); "
            "grinder_reconcile_action_planned_total: cancel_all=3, flatten=0",
        ),
        # 20 plans, all in the last 30 minutes of 4 hours: 20 in the last hour, not 5 per hour.
        (
            20,
            20,
            4.0,
            Status.FAIL,
            "20 planned in the last hour (grinder_reconcile_action_planned_last_hour: "
            "cancel_all=20, flatten=0); grinder_reconcile_action_planned_total: cancel_all=20, "
            "flatten=0 — runbook: STOP, plans are excessive",
        ),
        # The same 20 spread over the 4 hours: 5 of them in the last one.
        (20, 5, 4.0, Status.PASS, "5 planned in the last hour"),
        (12, 12, 0.5, Status.FAIL, "12 planned in the last hour"),
    ],
)
def test_stage2_planned_rate_is_the_services_count_of_the_last_hour(
    since_start: int, last_hour: int, uptime_h: float, verdict: Status, text: str
) -> None:
    reading = scrape(
        {
            'grinder_reconcile_action_planned_total{action="cancel_all"}': since_start,
            'grinder_reconcile_action_planned_last_hour{action="cancel_all"}': last_hour,
        },
        grinder_reconcile_runs_created=NOW - uptime_h * 3600,
    )
    result = run_stage(inputs(2, [reading], status_=status()))
    item = by_title(result, PLANNED_TITLE)
    assert item.status is verdict, item.evidence
    assert item.evidence.startswith(text), item.evidence


def test_stage2_planned_rate_from_the_control_status_when_the_gauge_is_not_read() -> None:
    reading = older_scrape(
        {'grinder_reconcile_action_planned_total{action="cancel_all"}': 30},
        grinder_reconcile_runs_created=NOW - 4 * 3600,
    )
    service = {**status(), "planned_last_hour": {"cancel_all": 11, "flatten": 0}}
    item = by_title(run_stage(inputs(2, [reading], status_=service)), PLANNED_TITLE)
    assert item.status is Status.FAIL
    assert item.evidence.startswith(
        "11 planned in the last hour (planned_last_hour (control /status): cancel_all=11, "
        "flatten=0); "
    )


@pytest.mark.parametrize(
    ("planned", "uptime_h", "verdict", "text"),
    [
        (
            3,
            0.2,
            Status.PASS,
            "3 planned since the service started, so no more in the last hour (the service "
            "does not export grinder_reconcile_action_planned_last_hour (an older version))",
        ),
        (
            12,
            0.5,
            Status.FAIL,
            "12 planned since the service started 30 min ago, all within the last hour",
        ),
        # More than 10 over 4 hours: an average would say 5 per hour, but all 20 may be recent.
        (
            20,
            4.0,
            Status.MANUAL,
            "20 planned since the service started (service up 4.00 h (since "
            "grinder_reconcile_runs_created)), more than 10; how many in the last hour",
        ),
        (
            12,
            None,
            Status.MANUAL,
            "12 planned since the service started (service uptime unknown",
        ),
    ],
)
def test_stage2_planned_rate_of_an_older_service_is_never_an_average(
    planned: int, uptime_h: float | None, verdict: Status, text: str
) -> None:
    counter = {'grinder_reconcile_action_planned_total{action="cancel_all"}': planned}
    if uptime_h is None:
        values = {k: v for k, v in HEALTHY.items() if k != "grinder_reconcile_runs_created"}
        values.update(counter)
        text_ = "".join(f"{k} {v}\n" for k, v in values.items() if "planned_last_hour" not in k)
        reading = parse_scrape(METRICS_URL, text_)
    else:
        reading = older_scrape(counter, grinder_reconcile_runs_created=NOW - uptime_h * 3600)
    item = by_title(run_stage(inputs(2, [reading], status_=status())), PLANNED_TITLE)
    assert item.status is verdict, item.evidence
    assert item.evidence.startswith(text), item.evidence
    assert "per hour (rate" not in item.evidence


def test_stage2_planned_rate_from_prometheus_when_given() -> None:
    seen: list[str] = []

    def query(url: str, promql: str) -> list[tuple[dict[str, str], float]]:
        seen.append(promql)
        return [({}, 15.0)]

    result = run_stage(
        inputs(2, [scrape()], status_=status(), prometheus_url="http://prom:9091", query=query)
    )
    item = by_title(result, "Planned actions not excessive (<= 10 per hour)")
    assert item.status is Status.FAIL
    assert seen == [
        'sum(increase(grinder_reconcile_action_planned_total{instance="127.0.0.1:9090"}[1h]))'
    ]
    assert item.evidence.startswith("15.0 planned in the last hour")


def test_stage2_fails_on_each_misconfigured_setting() -> None:
    wrong = status(action="flatten", dry_run=False, allow_active_remediation=False)
    wrong["armed"] = True
    wrong["allow_mainnet_trade"] = True
    result = run_stage(inputs(2, [scrape()], status_=wrong))
    failed = {i.title: i.evidence for i in result.failed}
    assert failed == {
        "Cancel only first (action = cancel_all)": "action=flatten (control /status) — stage 2 "
        "starts with action=cancel_all (none plans nothing; flatten comes in stage 4)",
        "dry_run = true (CRITICAL)": "dry_run=false (control /status) — must stay true in stage "
        "2: nothing may be sent",
        "allow_active_remediation = true (allow planning)": "allow_active_remediation=false "
        "(control /status) — runbook 13 stage 2 sets it true",
        "Executor not armed yet (stage 3 arms it)": "armed=true (control /status) — armed "
        "before stage 3",
        "ALLOW_MAINNET_TRADE not set yet (stage 3 sets it)": "allow_mainnet_trade=true (control "
        "/status) — set in the service before stage 3",
    }


def stage3_status() -> dict[str, Any]:
    s = status(
        dry_run=False,
        max_orders_per_action=1,
        max_symbols_per_action=1,
        cooldown_seconds=300.0,
    )
    s["armed"] = True
    s["allow_mainnet_trade"] = True
    return s


def test_stage3_passes_with_the_minimal_limits_and_a_budget_file(tmp_path: Path) -> None:
    budget = tmp_path / "budget.json"
    budget.write_text(
        '{"schema_version": 1, "day": "2027-01-15", "calls_used_day": 0, '
        '"notional_used_day": "0", "updated_ts_ms": 1}'
    )
    result = run_stage(inputs(3, [scrape()], status_=stage3_status(), budget_path=budget, env={}))
    assert result.passed, render(result)
    mainnet = by_title(result, "ALLOW_MAINNET_TRADE=1 set")
    assert "this shell: ALLOW_MAINNET_TRADE unset" in mainnet.evidence


def test_stage3_without_a_budget_file_fails() -> None:
    result = run_stage(inputs(3, [scrape()], status_=stage3_status()))
    item = by_title(result, "Daily budget persisted (budget state file)")
    assert item.status is Status.FAIL
    assert item.evidence.startswith("BUDGET_STATE_PATH unset and no --budget-state")


def test_stage3_corrupt_budget_file_fails_with_the_error(tmp_path: Path) -> None:
    budget = tmp_path / "budget.json"
    budget.write_text("{")
    result = run_stage(inputs(3, [scrape()], status_=stage3_status(), budget_path=budget))
    item = by_title(result, "Daily budget persisted (budget state file)")
    assert item.status is Status.FAIL
    assert "budget state is not valid JSON" in item.evidence


def test_stage3_cooldown_below_300_and_two_symbols_fail() -> None:
    s = stage3_status()
    s["config"]["cooldown_seconds"] = 60.0
    s["symbol_whitelist"] = ["BTCUSDT", "ETHUSDT"]
    result = run_stage(inputs(3, [scrape()], status_=s))
    titles = [i.title for i in result.failed]
    assert "5 minute cooldown" in titles
    assert "Single symbol first (whitelist)" in titles


EXPECTED_TITLE = "The bot's expected state is live (gate E)"


@pytest.mark.parametrize("stage", [2, 3, 4])
def test_every_remediating_stage_checks_that_a_bot_keeps_the_expected_state(stage: int) -> None:
    s = stage3_status() if stage > 2 else status()
    live = by_title(run_stage(inputs(stage, [scrape()], status_=s)), EXPECTED_TITLE)
    assert live.status is Status.PASS
    assert live.evidence == (
        "grinder_reconcile_expected_heartbeat_age_seconds 4.2 "
        "(expected_heartbeat_max_age_s=60 (control /status))"
    )
    s["expected"] = {
        "where": "expected-state file /var/lib/grinder/expected.db",
        "hint": "no bot heartbeat in the file: …",
    }
    never = scrape(grinder_reconcile_expected_heartbeat_age_seconds=math.inf)
    item = by_title(run_stage(inputs(stage, [never], status_=s)), EXPECTED_TITLE)
    assert item.status is Status.FAIL
    assert item.evidence == (
        "grinder_reconcile_expected_heartbeat_age_seconds +Inf (expected_heartbeat_max_age_s=60 "
        "(control /status)); expected-state file /var/lib/grinder/expected.db — never written "
        "by a bot: every remediation is blocked (expected_state_stale); no bot heartbeat in "
        "the file: …"
    )


def test_gate_e_item_uses_the_max_age_in_force() -> None:
    aged = scrape(grinder_reconcile_expected_heartbeat_age_seconds=90)
    s = status(expected_heartbeat_max_age_s=120.0)
    assert by_title(run_stage(inputs(2, [aged], status_=s)), EXPECTED_TITLE).status is Status.PASS
    item = by_title(run_stage(inputs(2, [aged], status_=status())), EXPECTED_TITLE)
    assert item.status is Status.FAIL
    assert "the bot stopped writing" in item.evidence
    # No control socket: the service's gauge of the limit.
    item = by_title(run_stage(inputs(2, [aged])), EXPECTED_TITLE)
    assert item.status is Status.FAIL
    assert "(grinder_reconcile_expected_heartbeat_max_age_seconds 60)" in item.evidence
    older = parse_scrape(METRICS_URL, "grinder_reconcile_up 1\n")
    item = by_title(run_stage(inputs(2, [older], status_=status())), EXPECTED_TITLE)
    assert (item.status, item.evidence) == (
        Status.FAIL,
        "grinder_reconcile_expected_heartbeat_age_seconds absent (an older service?)",
    )


def rules(names: tuple[str, ...], state: str = "inactive") -> dict[str, LoadedRule]:
    return {n: LoadedRule(n, state, "ok", "grinder-reconcile", "rules.yml") for n in names}


def test_stage4_checks_the_alert_rules_loaded_in_prometheus(tmp_path: Path) -> None:
    some = tuple(a for a in REQUIRED_ALERTS if not a.startswith("GrinderHAM"))

    def query(url: str, promql: str) -> list[tuple[dict[str, str], float]]:
        return [({"job": "grinder", "instance": "127.0.0.1:9090"}, 1.0)]

    def stage4(loaded: tuple[str, ...]) -> StageResult:
        return run_stage(
            inputs(
                4,
                [scrape()],
                status_=stage3_status(),
                prometheus_url="http://prom:9091",
                read_rules=lambda url: rules(loaded),
                query=query,
            )
        )

    result = stage4(some)
    item = by_title(result, "Alert rules loaded in Prometheus")
    assert item.status is Status.FAIL
    assert item.evidence == (
        "http://prom:9091: 19/20 GRINDER alerts loaded; missing: GrinderHAMultipleLeaders; "
        "firing now: none"
    )
    assert by_title(result, "Prometheus scrapes this service").status is Status.PASS
    ok = stage4(REQUIRED_ALERTS)
    assert by_title(ok, "Alert rules loaded in Prometheus").status is Status.PASS


def test_stage4_limits_above_production_fail() -> None:
    s = stage3_status()
    s["config"].update(
        max_orders_per_action=20, cooldown_seconds=30.0, max_flatten_notional_usdt="900"
    )
    result = run_stage(inputs(4, [scrape()], status_=s))
    titles = {i.title for i in result.failed}
    assert {
        "Orders per run within production (10)",
        "Cooldown at least 60 s",
        "Flatten notional limit (if flatten is enabled)",
    } <= titles
    assert by_title(result, "Alert rules loaded in Prometheus").status is Status.MANUAL


def test_file_config_is_used_when_there_is_no_status(tmp_path: Path) -> None:
    cfg = ReconcileConfig(symbol_whitelist=["ETHUSDT"], max_flatten_notional_usdt=Decimal("100"))
    result = run_stage(
        inputs(
            1,
            [scrape(), scrape(grinder_reconcile_runs_total=41)],
            file_config=cfg,
            file_label="--config x.toml",
        )
    )
    assert by_title(result, "Symbol whitelist configured").evidence == (
        "symbol_whitelist=[ETHUSDT] (--config x.toml [reconcile])"
    )


def test_log_review_counts_only_the_latest_process(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    old = "1700000000000-aaaaaa-1"
    new = "1700000100000-bbbbbb-1"
    log.write_text(
        f"t WARNING grinder.service RECONCILE_MISMATCH run_id={old} type=ORDER_EXISTS_UNEXPECTED "
        "symbol=BTCUSDT client_order_id=grinder_d_BTCUSDT_1_1_1\n"
        f"t INFO grinder.service RECONCILE_RUN run_id={new} mode=dry_run action=none\n"
        f"t WARNING grinder.service RECONCILE_MISMATCH run_id={new} "
        "type=POSITION_NONZERO_UNEXPECTED symbol=ETHUSDT position_side=BOTH\n"
        f"t WARNING grinder.service RECONCILE_MISMATCH run_id={new} type=ORDER_EXISTS_UNEXPECTED "
        "symbol=BTCUSDT client_order_id=grinder_d_BTCUSDT_1_1_2\n"
        f"t INFO grinder.service RECONCILE_MISMATCH_CLEARED run_id={new} "
        "type=POSITION_NONZERO_UNEXPECTED symbol=ETHUSDT position_side=BOTH\n"
        f't INFO grinder.service REMEDIATION_PLANNED run_id={new} error="a b"\n'
    )
    found = logscan.review(log, events=("REMEDIATION_PLANNED",))
    assert found.detected == 3
    assert found.cleared == 1
    assert found.unresolved == ["ORDER_EXISTS_UNEXPECTED BTCUSDT grinder_d_BTCUSDT_1_1_2"]
    assert found.event_counts == {"REMEDIATION_PLANNED": 1}
    assert found.targets == {"REMEDIATION_PLANNED": {"? ?"}}
    assert logscan.fields_of(found.last_lines["REMEDIATION_PLANNED"][0], "REMEDIATION_PLANNED") == {
        "run_id": new,
        "error": "a b",
    }
    result = run_stage(
        inputs(
            1, [scrape(), scrape(grinder_reconcile_runs_total=41)], status_=status(), log_file=log
        )
    )
    item = by_title(result, "Mismatch history in the log: none unresolved")
    assert item.status is Status.FAIL
    assert item.evidence.endswith(
        "unresolved in the running service: ORDER_EXISTS_UNEXPECTED BTCUSDT grinder_d_BTCUSDT_1_1_2"
    )


def test_instance_label_of_a_metrics_url() -> None:
    assert instance_of("http://localhost:9090/metrics") == "localhost:9090"
    assert instance_of("http://127.0.0.1/metrics") == "127.0.0.1:80"


def test_render_prints_every_item_and_the_verdict() -> None:
    result = run_stage(
        inputs(1, [scrape(), scrape(grinder_reconcile_runs_total=41)], status_=status())
    )
    text = render(result, ["metrics:  " + METRICS_URL])
    assert text.splitlines()[0] == (
        "GRINDER ceremony check — stage 1: Verify passive health (runbook 13)"
    )
    assert "  PASS   1.1   Reconcile runs increasing" in text
    assert text.splitlines()[-1] == (
        "RESULT: PASS — 7/7 automatic checks passed; 4 item(s) for the operator to tick (MANUAL)"
    )


def test_whitelist_size_from_the_metrics_when_the_list_is_unknown() -> None:
    reads = [
        scrape(grinder_reconcile_symbol_whitelist_size=2),
        scrape(grinder_reconcile_runs_total=41),
    ]
    result = run_stage(inputs(1, reads, status_error="no control socket"))
    item = by_title(result, "Symbol whitelist configured")
    assert item.status is Status.PASS
    assert item.evidence == (
        "grinder_reconcile_symbol_whitelist_size 2 (the symbols: control /status)"
    )
    empty = run_stage(
        inputs(1, [scrape(grinder_reconcile_symbol_whitelist_size=0)], status_error="no socket")
    )
    assert by_title(empty, "Symbol whitelist configured").status is Status.FAIL


def test_plan_review_counts_distinct_targets(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    line = (
        "t INFO grinder.service REMEDIATION_PLANNED run_id=1-aa-{n} mode=dry_run action=cancel_all "
        "symbol=BTCUSDT client_order_id=grinder_d_BTCUSDT_1_1_{cid}\n"
    )
    log.write_text(line.format(n=1, cid=1) + line.format(n=2, cid=1) + line.format(n=3, cid=2))
    result = run_stage(inputs(2, [scrape()], status_=status(), log_file=log))
    item = by_title(result, "Plans match expectations (what would be cancelled)")
    assert item.status is Status.MANUAL
    assert "3 REMEDIATION_PLANNED line(s) for 2 distinct order(s)/position(s)" in item.evidence
    assert item.evidence.endswith(
        "client_order_id=grinder_d_BTCUSDT_1_1_2; review every plan "
        "(manual orders? another instance?) before stage 3"
    )
