"""``grinder demo --fast`` (dry-run and live) in subprocesses: verdicts, artifacts, safety."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.subprocess

ARTIFACTS = ("stdout.log", "audit.jsonl", "metrics.prom", "metrics_summary.json")
VERDICT = re.compile(r"^  verdict \[(\w+)\]: ([A-Z][A-Z ]*?) -- ", re.MULTILINE)


RunDemo = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_demo(cli: Any, tmp_path: Path) -> RunDemo:
    """``grinder demo --fast ARGS`` with its artifacts in ``tmp_path``."""

    def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
        return cli.run(
            "grinder.cli",
            "demo",
            "--fast",
            "--artifacts-dir",
            str(tmp_path),
            *args,
            cwd=tmp_path,
            timeout=90,
        )

    return run_demo


def run_dir_of(tmp: Path) -> Path:
    dirs = sorted(tmp.glob("*/run_*"))
    assert len(dirs) == 1, dirs
    return dirs[0]


def audit_records(run_dir: Path) -> list[dict[str, Any]]:
    text = (run_dir / "audit.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def manual_order_id(stdout: str) -> str:
    found = re.search(r"manual order (web_\w+): (\w+), untouched", stdout)
    assert found is not None, stdout
    assert found.group(2) == "NEW"
    return found.group(1)


def check_common(proc: subprocess.CompletedProcess[str], tmp: Path) -> Path:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "exit_code=0" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "grinder-sim-secret" not in proc.stdout + proc.stderr
    run_dir = run_dir_of(tmp)
    for name in (*ARTIFACTS, "budget_state.json"):
        assert (run_dir / name).is_file(), name
        assert (run_dir / name).stat().st_size > 0, name
    assert (run_dir / "stdout.log").read_text(encoding="utf-8") == proc.stdout
    summary = json.loads((run_dir / "metrics_summary.json").read_text(encoding="utf-8"))
    assert summary["exit_code"] == 0
    assert summary["runs"] > 10
    return run_dir


def test_dry_run_demo_detects_every_case_and_writes_nothing(
    tmp_path: Path, run_demo: RunDemo
) -> None:
    proc = run_demo()
    run_dir = check_common(proc, tmp_path)
    out = proc.stdout
    assert dict(VERDICT.findall(out)) == {
        "0": "QUIET",
        "a": "DETECTED",
        "b": "LEFT ALONE",
        "c": "DETECTED",
        "d": "DETECTED",
        "e": "DETECTED",
        "end": "UNTOUCHED",
    }
    assert "mode:              DRY-RUN" in out
    assert "order grace 500 ms" in out
    for event in (
        "RECONCILE_MISMATCH type=ORDER_EXISTS_UNEXPECTED",
        "REMEDIATION_PLANNED mode=dry_run action=cancel_all",
        "RECONCILE_MISMATCH type=POSITION_NONZERO_UNEXPECTED symbol=ETHUSDT",
        "REMEDIATION_PLANNED mode=dry_run action=flatten symbol=ETHUSDT",
        "RECONCILE_TRIAGE outcome=not_found",
        "RECONCILE_MISMATCH type=ORDER_MISSING_ON_EXCHANGE",
        "REMEDIATE_SKIP reason=alert_only type=ORDER_MISSING_ON_EXCHANGE",
        "RECONCILE_TRIAGE outcome=found_filled",
        "RECONCILE_MISMATCH type=POSITION_QTY_DIVERGENCE symbol=BTCUSDT",
        "foreign open orders: 1",
    ):
        assert event in out, event
    assert "REMEDIATION_EXECUTED" not in out
    assert "exchange writes by GRINDER: 0" in out
    records = audit_records(run_dir)
    assert records
    assert all(r["mode"] == "dry_run" for r in records if "mode" in r)
    assert not [r for r in records if r.get("status") == "EXECUTED"]
    manual = manual_order_id(out)
    assert not [r for r in records if r.get("client_order_id") == manual]
    budget = json.loads((run_dir / "budget_state.json").read_text(encoding="utf-8"))
    assert budget["calls_used_day"] == 0


def test_live_demo_remediates_on_the_simulator_and_spares_the_manual_order(
    tmp_path: Path, run_demo: RunDemo
) -> None:
    proc = run_demo("--live")
    run_dir = check_common(proc, tmp_path)
    out = proc.stdout
    assert "LIVE MODE -- against the bundled SIMULATOR, not Binance" in out
    assert dict(VERDICT.findall(out)) == {
        "0": "QUIET",
        "a": "REMEDIATED",
        "b": "LEFT ALONE",
        "c": "REMEDIATED",
        "d": "DETECTED",
        "e": "DETECTED",
        "end": "REMEDIATED",
    }
    assert "REMEDIATION_EXECUTED mode=live action=cancel_all symbol=BTCUSDT" in out
    assert "REMEDIATION_EXECUTED mode=live action=flatten symbol=ETHUSDT" in out
    assert "exchange: the orphan is gone" in out
    assert "exchange: ETHUSDT is flat" in out
    assert "exchange writes by GRINDER: 2" in out
    # What stands at the end is only what GRINDER leaves to an operator (cases d and e).
    assert (
        "mismatches that stand: 2 (left to an operator: "
        "ORDER_MISSING_ON_EXCHANGE, POSITION_QTY_DIVERGENCE)" in out
    )
    assert "open orders of ours: 2, not recorded by the bot: 0" in out
    manual = manual_order_id(out)
    records = audit_records(run_dir)
    executed = [r for r in records if r.get("status") == "EXECUTED"]
    assert sorted(r["action"] for r in executed) == ["cancel_all", "flatten"]
    assert not [r for r in records if r.get("client_order_id") == manual]
    assert manual not in (run_dir / "service.log").read_text(encoding="utf-8")
    budget = json.loads((run_dir / "budget_state.json").read_text(encoding="utf-8"))
    assert budget["calls_used_day"] == 2


@pytest.mark.parametrize("bad", [["--seed", "x"], ["--nope"]])
def test_bad_usage_is_exit_2(run_demo: RunDemo, bad: list[str]) -> None:
    proc = run_demo(*bad)
    assert proc.returncode == 2
    assert proc.stderr.startswith("grinder: error:")
