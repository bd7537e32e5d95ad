"""The runbook-14 smoke test, run exactly as the runbook writes it, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.subprocess

LIVE_ENV = {
    "RECONCILE_DRY_RUN": "0",
    "RECONCILE_ALLOW_ACTIVE": "1",
    "ARMED": "1",
    "ALLOW_MAINNET_TRADE": "1",
}
RunSmoke = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_smoke(cli: Any, tmp_path: Path) -> RunSmoke:
    """``python3 -m scripts.smoke_reconcile_e2e ARGS`` in ``tmp_path``, as runbook 14 writes it;
    ``env`` is added to the clean environment."""

    def run_smoke(
        *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return cli.run(
            "scripts.smoke_reconcile_e2e",
            *args,
            env=cli.env(scripts=True, **(env or {})),
            cwd=tmp_path,
            timeout=120,
            python="python3",
        )

    return run_smoke


def scenario_block(stdout: str, name: str) -> str:
    start = stdout.index(f"--- Scenario: {name} ")
    end = stdout.find("--- Scenario:", start + 1)
    return stdout[start : end if end != -1 else None]


def test_dry_run_prints_runbook_output_and_passes_checklist(
    tmp_path: Path, run_smoke: RunSmoke
) -> None:
    proc = run_smoke()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for line in (
        "  CONFIGURATION",
        "  Mode:              DRY-RUN",
        "  action:            cancel_all",
        "  dry_run:           True",
        "  allow_active:      False",
        "  armed:             False",
        "  symbol_whitelist:  ['BTCUSDT']",
        "--- Scenario: order [PASS] ---",
        "--- Scenario: position [PASS] ---",
        "--- Scenario: mixed [PASS] ---",
        "  SUMMARY",
        "  Mode:    DRY-RUN",
        "  Passed:  3/3",
        "  ALL SCENARIOS PASSED",
    ):
        assert line in out.splitlines(), line
    for name in ("order", "position", "mixed"):
        block = scenario_block(out, name)
        assert "  Port calls:           0\n" in block
        assert "  Executed count:       0\n" in block
        assert "  Planned count:        1\n" in block
    order = scenario_block(out, "order")
    assert order.startswith(
        "--- Scenario: order [PASS] ---\n"
        "  Mismatches detected:  1\n"
        "  Expected action:      cancel\n"
        "  Actual action:        cancel\n"
        "  Port calls:           0\n"
        "  Mismatch types:       ORDER_EXISTS_UNEXPECTED\n"
    )
    position = scenario_block(out, "position")
    assert "  Actual action:        flatten\n" in position
    mixed = scenario_block(out, "mixed")
    assert "  Mismatches detected:  2\n" in mixed
    assert "  Actual action:        cancel\n" in mixed
    assert not (tmp_path / "audit").exists()


def test_audit_enabled_writes_reconcile_run_events(tmp_path: Path, run_smoke: RunSmoke) -> None:
    proc = run_smoke(env={"GRINDER_AUDIT_ENABLED": "1"})
    assert proc.returncode == 0, proc.stderr
    audit = tmp_path / "audit" / "reconcile.jsonl"
    assert audit.is_file()
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    runs = [r for r in records if r["event_type"] == "RECONCILE_RUN"]
    assert len(runs) == 3
    assert [r["mismatches_total"] for r in runs] == [1, 1, 2]
    assert [r["plan_action"] for r in runs] == ["cancel_all", "flatten", "cancel_all"]
    assert runs[0]["mismatch_counts"]["ORDER_EXISTS_UNEXPECTED"] == 1
    assert {r["mode"] for r in records} == {"dry_run"}
    assert all(r["schema_version"] == 1 for r in records)


def test_confirm_without_env_gates_prints_each_failed_gate(run_smoke: RunSmoke) -> None:
    proc = run_smoke("--confirm", "LIVE_REMEDIATE")
    assert proc.returncode == 1
    expected = "\n".join(
        [
            "=" * 60,
            "  LIVE MODE GATE CHECK FAILED",
            "=" * 60,
            "  The following gates are not satisfied:",
            "    - RECONCILE_DRY_RUN must be '0' (got '1')",
            "    - RECONCILE_ALLOW_ACTIVE must be '1' (got '0')",
            "    - ARMED must be '1' (got '0')",
            "    - ALLOW_MAINNET_TRADE must be '1' (got '0')",
            "",
            "  Live mode requires ALL gates to pass.",
            "  Use default mode (no --confirm) for dry-run.",
        ]
    )
    assert proc.stdout.strip("\n") == expected


def test_confirm_with_one_gate_missing_lists_only_that_gate(run_smoke: RunSmoke) -> None:
    env = dict(LIVE_ENV, ARMED="0")
    proc = run_smoke("--confirm", "LIVE_REMEDIATE", env=env)
    assert proc.returncode == 1
    gate_lines = [line for line in proc.stdout.splitlines() if line.startswith("    - ")]
    assert gate_lines == ["    - ARMED must be '1' (got '0')"]


def test_live_mode_executes_and_audits_live(tmp_path: Path, run_smoke: RunSmoke) -> None:
    budget = tmp_path / "budget.json"
    env = dict(LIVE_ENV, GRINDER_AUDIT_ENABLED="1", BUDGET_STATE_PATH=str(budget))
    proc = run_smoke("--confirm", "LIVE_REMEDIATE", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "  Mode:              LIVE" in proc.stdout
    for name in ("order", "position", "mixed"):
        block = scenario_block(proc.stdout, name)
        assert "  Port calls:           1\n" in block
        assert "  Executed count:       1\n" in block
    records = [json.loads(x) for x in (tmp_path / "audit/reconcile.jsonl").read_text().splitlines()]
    assert {r["mode"] for r in records} == {"live"}
    results = [r for r in records if r["event_type"] == "REMEDIATE_RESULT"]
    assert [r["status"] for r in results] == ["EXECUTED"] * 3
    state = json.loads(budget.read_text())
    assert state["calls_used_day"] == 3
    assert state["notional_used_day"] == "100.000"


def budget_file(path: Path, calls_used_day: int) -> Path:
    """A budget state file for today (UTC) with ``calls_used_day`` calls spent."""
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    state = {
        "schema_version": 1,
        "day": day,
        "calls_used_day": calls_used_day,
        "notional_used_day": "0",
        "updated_ts_ms": 0,
    }
    path.write_text(json.dumps(state))
    return path


def scenario_rows(block: str) -> dict[str, str]:
    rows = {}
    for line in block.splitlines()[1:]:
        key, sep, value = line.strip().partition(":")
        if sep and key in ("Planned count", "Executed count", "Blocked count", "Block reasons"):
            rows[key] = value.strip()
    return rows


@pytest.mark.parametrize(
    ("calls_used_day", "passing"),
    [(100, []), (99, ["order"]), (97, ["order", "position", "mixed"])],
)
def test_dry_run_spends_a_copy_of_the_budget_file_and_is_blocked_where_live_is(
    calls_used_day: int, passing: list[str], tmp_path: Path, run_smoke: RunSmoke
) -> None:
    dry_file = budget_file(tmp_path / "dry.json", calls_used_day)
    live_file = budget_file(tmp_path / "live.json", calls_used_day)
    before = (dry_file.read_bytes(), dry_file.stat().st_mtime_ns)
    dry = run_smoke(env={"BUDGET_STATE_PATH": str(dry_file)})
    live = run_smoke(
        "--confirm", "LIVE_REMEDIATE", env=dict(LIVE_ENV, BUDGET_STATE_PATH=str(live_file))
    )
    # The default limit is 100 calls a day; the scenarios share the day's budget.
    assert (dry_file.read_bytes(), dry_file.stat().st_mtime_ns) == before
    all_pass = len(passing) == 3
    assert dry.returncode == live.returncode == (0 if all_pass else 1), dry.stdout + live.stdout
    for name in ("order", "position", "mixed"):
        dry_rows = scenario_rows(scenario_block(dry.stdout, name))
        live_rows = scenario_rows(scenario_block(live.stdout, name))
        verdict = "PASS" if name in passing else "FAIL"
        assert f"--- Scenario: {name} [{verdict}] ---" in dry.stdout
        assert f"--- Scenario: {name} [{verdict}] ---" in live.stdout
        assert dry_rows["Planned count"] == live_rows["Executed count"]
        assert dry_rows["Blocked count"] == live_rows["Blocked count"]
        assert dry_rows.get("Block reasons") == live_rows.get("Block reasons")
        if name not in passing:
            assert dry_rows["Block reasons"] == "max_calls_per_day=1"
    assert json.loads(live_file.read_text())["calls_used_day"] == calls_used_day + len(passing)


def test_dry_run_does_not_create_the_budget_file(tmp_path: Path, run_smoke: RunSmoke) -> None:
    budget = tmp_path / "budget.json"
    proc = run_smoke(env={"BUDGET_STATE_PATH": str(budget)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "  ALL SCENARIOS PASSED" in proc.stdout.splitlines()
    assert not budget.exists()


def test_stale_budget_warning_names_a_flag_the_smoke_command_accepts(
    tmp_path: Path, run_smoke: RunSmoke
) -> None:
    budget = budget_file(tmp_path / "budget.json", 100)
    old = time.time() - 30 * 3600
    os.utime(budget, (old, old))
    env = {"BUDGET_STATE_PATH": str(budget)}
    warned = run_smoke(env=env)
    assert warned.returncode == 1  # the day's calls are used up
    lines = warned.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("WARNING: Budget state"))
    assert lines[start + 2] == f"         Path: {budget}"
    hint = lines[start + 3]
    assert hint == "         Consider using --reset-budget-state for a clean start."
    flag = hint.split()[2]
    reset = run_smoke(flag, env=env)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    out = reset.stdout.splitlines()
    assert out[:2] == [f"budget_state_reset=1 path={budget}", ""]
    assert not any(line.startswith("WARNING") for line in out)
    assert "  ALL SCENARIOS PASSED" in out
    state = json.loads(budget.read_text())
    assert (state["day"], state["calls_used_day"]) == (datetime.now(UTC).strftime("%Y-%m-%d"), 0)


def test_reset_budget_state_without_a_budget_file_says_the_budget_is_in_memory(
    run_smoke: RunSmoke,
) -> None:
    proc = run_smoke("--reset-budget-state")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first == "budget_state_reset=1 path=- (no BUDGET_STATE_PATH: budget kept in memory)"


def test_reset_budget_state_before_live_mode_starts_the_day_clean(
    tmp_path: Path, run_smoke: RunSmoke
) -> None:
    budget = budget_file(tmp_path / "budget.json", 100)
    env = dict(LIVE_ENV, BUDGET_STATE_PATH=str(budget))
    proc = run_smoke("--confirm", "LIVE_REMEDIATE", "--reset-budget-state", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == f"budget_state_reset=1 path={budget}"
    assert json.loads(budget.read_text())["calls_used_day"] == 3


@pytest.mark.parametrize(
    ("env", "args", "needle"),
    [
        ({"ARMED": "yes"}, (), "ARMED: expected '0' or '1', got 'yes'"),
        ({"RECONCILE_DRY_RUN": "true"}, (), "RECONCILE_DRY_RUN"),
        ({"GRINDER_AUDIT_ENABLED": "on"}, (), "GRINDER_AUDIT_ENABLED"),
        ({"BUDGET_STATE_STALE_HOURS": "soon"}, (), "BUDGET_STATE_STALE_HOURS"),
        ({}, ("--confirm", "YES"), "--confirm must be 'LIVE_REMEDIATE'"),
        ({}, ("--no-such-flag",), "No such option"),
    ],
)
def test_bad_input_is_exit_2_with_one_line(
    env: dict[str, str], args: tuple[str, ...], needle: str, run_smoke: RunSmoke
) -> None:
    proc = run_smoke(*args, env=env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]


def test_corrupt_budget_state_is_exit_2_naming_the_file(
    tmp_path: Path, run_smoke: RunSmoke
) -> None:
    budget = tmp_path / "budget.json"
    budget.write_text("{not json")
    proc = run_smoke(env={"BUDGET_STATE_PATH": str(budget)})
    # Dry-run never touches the real budget, but a corrupt file is still reported.
    assert proc.returncode == 2
    assert str(budget) in proc.stderr
    assert budget.read_text() == "{not json"


def test_grinder_smoke_subcommand_matches_script(tmp_path: Path, cli: Any) -> None:
    proc = cli.run("grinder.cli", "smoke", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "  ALL SCENARIOS PASSED" in proc.stdout.splitlines()


@pytest.mark.parametrize("live", [False, True], ids=["dry_run", "live"])
def test_venue_sim_runs_the_scenarios_through_the_real_adapter(
    live: bool, run_smoke: RunSmoke
) -> None:
    args = ("--venue", "sim", "--confirm", "LIVE_REMEDIATE") if live else ("--venue", "sim")
    proc = run_smoke(*args, env=LIVE_ENV if live else {})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "  venue:             sim" in proc.stdout.splitlines()
    writes = "1" if live else "0"
    for name in ("order", "position", "mixed"):
        block = scenario_block(proc.stdout, name)
        assert f"--- Scenario: {name} [PASS] ---" in block
        assert f"  Port calls:           {writes}\n" in block
        assert f"  Executed count:       {writes}\n" in block
