"""monitoring/: the alert rules (promtool check + unit tests), the dashboard, their links.

promtool comes from Debian's ``prometheus`` package (``bin/test`` installs it where missing).
Without it these tests fail in CI (``CI=true``) and are skipped elsewhere.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from grinder.ceremony.checks import REQUIRED_ALERTS

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
RULES = MONITORING / "alert_rules.yml"
RULE_TESTS = MONITORING / "alert_rules_test.yml"
DASHBOARD = MONITORING / "grafana" / "grinder-reconcile.json"


Promtool = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def promtool(require_tool: Callable[[str, str], str]) -> Promtool:
    """``promtool(*args, cwd=monitoring/)``; where promtool is missing, the call fails the test
    in CI and skips it elsewhere."""

    def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [require_tool("promtool", "prometheus"), *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return promtool


def alert_blocks() -> dict[str, str]:
    """Each alert's text in the rules file, by name."""
    text = RULES.read_text(encoding="utf-8")
    parts = re.split(r"^\s*- alert:\s*", text, flags=re.M)[1:]
    return {p.split("\n", 1)[0].strip(): p for p in parts}


def rule_groups() -> dict[str, str]:
    """Each rule group's text in the rules file, by name."""
    text = RULES.read_text(encoding="utf-8")
    parts = re.split(r"^  - name:\s*", text, flags=re.M)[1:]
    return {p.split("\n", 1)[0].strip(): p for p in parts}


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*$", doc.read_text(encoding="utf-8"), flags=re.M)
    return {slug(h) for h in heads}


def test_promtool_checks_the_rules(promtool: Promtool) -> None:
    proc = promtool("check", "rules", "alert_rules.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(REQUIRED_ALERTS)} rules found" in proc.stdout


def test_promtool_unit_tests_of_the_rules_pass(promtool: Promtool) -> None:
    proc = promtool("test", "rules", "alert_rules_test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_example_prometheus_config_is_valid(promtool: Promtool) -> None:
    proc = promtool("check", "config", "prometheus.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_checker_knows_every_shipped_alert() -> None:
    assert tuple(alert_blocks()) == REQUIRED_ALERTS


def test_rule_groups_evaluate_at_prometheus_evaluation_interval() -> None:
    """No group sets an ``interval:`` of its own: Prometheus' ``evaluation_interval`` governs
    every rule (15 s in prometheus.yml), and the end-to-end test evaluates the shipped file,
    unchanged, every second (tests/integration/test_prometheus_e2e.py)."""
    groups = rule_groups()
    assert list(groups) == ["grinder-reconcile", "grinder-ha"]
    for name, text in groups.items():
        assert not re.search(r"^\s{4}interval:", text, flags=re.M), name
    example = (MONITORING / "prometheus.yml").read_text(encoding="utf-8")
    assert re.search(r"^  evaluation_interval: 15s$", example, flags=re.M)


def test_the_ha_document_names_the_shipped_ha_alerts_and_no_rules_of_its_own() -> None:
    ha_doc = (REPO / "docs" / "HA.md").read_text(encoding="utf-8")
    shipped = re.findall(r"^\s*- alert:\s*(\S+)", rule_groups()["grinder-ha"], flags=re.M)
    assert set(re.findall(r"\bGrinderHA\w+", ha_doc)) == set(shipped)
    assert "monitoring/alert_rules.yml" in ha_doc
    for promql in ("increase(", "sum(", "sum by", "rate("):
        assert promql not in ha_doc, f"docs/HA.md has an expression of its own ({promql}…)"


def test_every_alert_has_severity_summary_description_and_a_runbook_link() -> None:
    for name, block in alert_blocks().items():
        severity = re.search(r"^\s+severity:\s*(\S+)", block, flags=re.M)
        assert severity, name
        assert severity.group(1) in ("critical", "warning", "info"), name
        for key in ("summary", "description", "runbook_url"):
            assert re.search(rf"^\s+{key}:\s*\S", block, flags=re.M), f"{name}: no {key}"
        url = re.search(r'^\s+runbook_url:\s*"([^"]+)"', block, flags=re.M)
        assert url, name
        path, _, anchor = url.group(1).partition("#")
        doc = REPO / path
        assert doc.is_file(), f"{name}: {path} does not exist"
        assert anchor in anchors(doc), f"{name}: no heading for #{anchor} in {path}"


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    blocks = alert_blocks()
    severities = {
        n: re.search(r"severity:\s*(\S+)", b).group(1)  # type: ignore[union-attr]
        for n, b in blocks.items()
    }
    assert severities["GrinderRemediationExecuted"] == "critical"
    assert severities["GrinderRemediationPlanned"] == "info"
    assert severities["GrinderRemediationBlocked"] == "info"
    exprs = " ".join(blocks.values())
    for metric in (
        "grinder_reconcile_runs_total",
        "grinder_reconcile_last_snapshot_age_seconds",
        "grinder_reconcile_mismatch_total",
        "grinder_reconcile_action_executed_total",
        "grinder_reconcile_budget_calls_remaining_day",
        "grinder_stream_connected",
        "grinder_ha_is_leader",
        "grinder_exchange_request_weight_used_1m",
    ):
        assert metric in exprs, metric


def test_every_alert_fires_in_some_unit_test() -> None:
    text = RULE_TESTS.read_text(encoding="utf-8")
    firing = set()
    for case in re.split(r"^\s+- eval_time:", text, flags=re.M)[1:]:
        name = re.search(r"alertname:\s*(\S+)", case)
        if name and "exp_labels" in case:
            firing.add(name.group(1))
    assert firing == set(REQUIRED_ALERTS)


# --- the dashboard -----------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p.get("type") != "row"]


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in panels() for t in p.get("targets", [])]


def test_dashboard_layout_is_sound() -> None:
    data = dashboard()
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for p in data["panels"]:
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24, p["title"]
    for p in panels():
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p.get("targets"), p["title"]
    names = {v["name"] for v in data["templating"]["list"]}
    assert names == {"datasource", "job", "instance"}


def test_dashboard_shows_what_the_issue_lists() -> None:
    exprs = " ".join(dashboard_exprs())
    for metric in (
        "grinder_reconcile_runs_total",
        "grinder_reconcile_mismatch_total",
        "grinder_reconcile_action_planned_total",
        "grinder_reconcile_action_executed_total",
        "grinder_reconcile_action_blocked_total",
        "grinder_reconcile_budget_calls_used_day",
        "grinder_reconcile_budget_calls_remaining_day",
        "grinder_reconcile_budget_notional_remaining_day",
        "grinder_reconcile_last_snapshot_age_seconds",
        "grinder_stream_state",
        "grinder_exchange_request_weight_used_1m",
        "grinder_reconcile_detection_latency_seconds_bucket",
        "grinder_ha_is_leader",
    ):
        assert metric in exprs, metric
    assert "sum by (type)" in exprs
    assert "sum by (reason)" in exprs
    assert "sum by (action)" in exprs


def test_promtool_parses_every_dashboard_query(tmp_path: Path, promtool: Promtool) -> None:
    lines = ["groups:", "  - name: dashboard-queries", "    rules:"]
    for n, expr in enumerate(dashboard_exprs()):
        promql = expr.replace("$__rate_interval", "5m").replace("$job", ".*")
        promql = promql.replace("$instance", ".*")
        lines.append(f"      - record: dashboard:query_{n}")
        lines.append(f"        expr: {json.dumps(promql)}")
    (tmp_path / "dashboard_rules.yml").write_text("\n".join(lines) + "\n")
    proc = promtool("check", "rules", "dashboard_rules.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def metric_names(promql: str) -> set[str]:
    """Metric names a query selects (GRINDER's own, and Prometheus' ``up``)."""
    return set(re.findall(r"\b(grinder_[a-z0-9_]+|up)\b(?=\s*[{\[)\s]|$)", promql))


def test_metric_name_extraction() -> None:
    assert metric_names('sum by (le) (rate(grinder_x_bucket{job=~"$job"}[5m])) * 60') == {
        "grinder_x_bucket"
    }
    assert metric_names('up{job="grinder"} == 0 or grinder_a == 0') == {"up", "grinder_a"}


def used_metric_names() -> set[str]:
    """Every metric the rules and the dashboard select, for the /metrics cross-check."""
    names: set[str] = set()
    for block in alert_blocks().values():
        expr = block.split("expr:", 1)[1].split("labels:", 1)[0]
        names |= metric_names(expr)
    for expr in dashboard_exprs():
        names |= metric_names(expr)
    return names


def test_used_metric_names_are_found() -> None:
    names = used_metric_names()
    assert "grinder_reconcile_action_executed_total" in names
    assert "grinder_reconcile_detection_latency_seconds_bucket" in names
    assert "up" in names
