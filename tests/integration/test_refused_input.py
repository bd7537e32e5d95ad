"""Configuration that would weaken a safety rule, and odd budget files, against the real
commands: the service (``scripts.run_live_reconcile`` and ``grinder reconcile``) and the smoke
test refuse them with exit 2 and one line, quickly, writing nothing; a running service refuses
them on reload and through the control socket, its settings unchanged.

Every command runs with a timeout, so a hang (a FIFO opened for reading waits for a writer
forever) fails the test instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.process import start_until_ready

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[2]
QUICK_S = 30  # a refusal takes about a second; a hang would take forever
HUGE = "9" * 5000

SERVICE_FORMS = {
    "script": ("scripts.run_live_reconcile",),
    "grinder": ("grinder.cli", "reconcile"),
}


def service(
    cli: Any, tmp_path: Path, form: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    module, *sub = SERVICE_FORMS[form]
    started = time.monotonic()
    proc: subprocess.CompletedProcess[str] = cli.run(
        module,
        *sub,
        "--metrics-port",
        "0",
        *args,
        env=cli.env(scripts=True, runtime_dir=tmp_path / "run", **env),
        cwd=tmp_path,
        timeout=QUICK_S,
    )
    assert time.monotonic() - started < QUICK_S
    return proc


def smoke(cli: Any, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    proc: subprocess.CompletedProcess[str] = cli.run(
        "scripts.smoke_reconcile_e2e",
        *args,
        env=cli.env(scripts=True, **env),
        cwd=tmp_path,
        timeout=QUICK_S,
    )
    return proc


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --- budget paths that are no regular file ---------------------------------------------------


@pytest.mark.parametrize("reset", [False, True], ids=["load", "reset"])
@pytest.mark.parametrize("form", sorted(SERVICE_FORMS))
def test_the_service_refuses_a_fifo_budget_path_at_once(
    cli: Any, tmp_path: Path, form: str, reset: bool
) -> None:
    fifo = tmp_path / "budget.json"
    os.mkfifo(fifo)
    artifacts = tmp_path / "artifacts"
    args = ("--duration", "5", *(["--reset-budget-state"] if reset else []))
    proc = service(
        cli,
        tmp_path,
        form,
        *args,
        BUDGET_STATE_PATH=str(fifo),
        GRINDER_ARTIFACTS_DIR=str(artifacts),
    )
    line = one_line(proc)
    assert line.endswith(
        f"error: BUDGET_STATE_PATH: {fifo}: cannot read budget state: it is a FIFO, "
        "not a regular file"
    )
    assert proc.stdout == ""
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # never removed nor replaced
    assert not artifacts.exists()


@pytest.mark.parametrize("reset", [False, True], ids=["load", "reset"])
def test_the_smoke_test_refuses_a_fifo_budget_path_at_once(
    cli: Any, tmp_path: Path, reset: bool
) -> None:
    fifo = tmp_path / "budget.json"
    os.mkfifo(fifo)
    audit = tmp_path / "audit.jsonl"
    args = ["--reset-budget-state"] if reset else []
    proc = smoke(
        cli,
        tmp_path,
        *args,
        BUDGET_STATE_PATH=str(fifo),
        GRINDER_AUDIT_ENABLED="1",
        GRINDER_AUDIT_PATH=str(audit),
    )
    line = one_line(proc)
    assert f"BUDGET_STATE_PATH: {fifo}: cannot read budget state: it is a FIFO" in line
    assert proc.stdout == ""
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert not audit.exists()


def test_a_folder_as_budget_path_is_refused_naming_it(cli: Any, tmp_path: Path) -> None:
    folder = tmp_path / "budget.json"
    folder.mkdir()
    line = one_line(
        service(cli, tmp_path, "grinder", "--duration", "5", BUDGET_STATE_PATH=str(folder))
    )
    assert f"BUDGET_STATE_PATH: {folder}: cannot read budget state: it is a folder" in line


# --- absurd numbers, a file dated in the future -----------------------------------------------


def _state(**kv: Any) -> str:
    data = {
        "schema_version": 1,
        "day": time.strftime("%Y-%m-%d", time.gmtime()),
        "calls_used_day": 7,
        "notional_used_day": "12.5",
        "updated_ts_ms": 1,
    }
    data.update(kv)
    return json.dumps(data)


def test_a_count_of_5000_digits_is_exit_2_naming_the_file_and_the_field(
    cli: Any, tmp_path: Path
) -> None:
    budget = tmp_path / "budget.json"
    text = _state(calls_used_day="@@").replace('"@@"', HUGE)
    budget.write_text(text)
    for proc in (
        service(cli, tmp_path, "script", "--duration", "5", BUDGET_STATE_PATH=str(budget)),
        smoke(cli, tmp_path, BUDGET_STATE_PATH=str(budget)),
    ):
        line = one_line(proc)
        assert f"BUDGET_STATE_PATH: {budget}: calls_used_day must be an integer" in line
        assert "a number of 5000 digits" in line
        assert "ValueError" not in line
    assert budget.read_text() == text


def test_a_budget_file_dated_in_the_future_keeps_its_counts_with_one_warning(
    cli: Any, tmp_path: Path
) -> None:
    budget = tmp_path / "budget.json"
    text = _state(day="2099-01-01", updated_ts_ms=4_070_908_800_000)
    budget.write_text(text)
    metrics = tmp_path / "metrics.prom"
    proc = service(
        cli,
        tmp_path,
        "script",
        "--duration",
        "1",
        "--metrics-out",
        str(metrics),
        BUDGET_STATE_PATH=str(budget),
    )
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stdout.splitlines() if "dated in the future" in line]
    assert warnings == [
        f"WARNING: budget state {budget} is dated in the future (day 2099-01-01, updated "
        f"2099-01-01 00:00:00 UTC; now {time.strftime('%Y-%m-%d', time.gmtime())}): its counts "
        "are kept for today (calls_used_day=7, notional_used_day=12.5); check the clock"
    ]
    assert "grinder_reconcile_budget_calls_used_day 7.0" in metrics.read_text()
    assert budget.read_text() == text  # not replaced: usage is never lowered
    dry = smoke(cli, tmp_path, BUDGET_STATE_PATH=str(budget))
    assert dry.returncode == 0, dry.stderr
    assert sum("dated in the future" in line for line in dry.stdout.splitlines()) == 1


# --- configuration that would weaken a safety rule --------------------------------------------

BAD_CONFIGS = {
    "liquidation_prefix": (
        '[reconcile]\nclient_order_id_prefix = "autoclose-"\n',
        "[reconcile]: client_order_id_prefix: 'autoclose-' overlaps the exchange's liquidation",
    ),
    "adl_prefix": (
        '[reconcile]\nclient_order_id_prefix = "adl_"\n',
        "[reconcile]: client_order_id_prefix: 'adl_' overlaps",
    ),
    "long_strategy": (
        f'[reconcile]\nstrategy_id = "{"s" * 40}"\n',
        "[reconcile]: strategy_id: remediation ids for BTCUSDT would be up to 73 characters",
    ),
    "underscore_strategy": (
        '[reconcile]\nstrategy_id = "my_bot"\n',
        "[reconcile]: strategy_id: 'my_bot' must be letters and digits only",
    ),
    "starving_pacing": (
        "[service]\nmin_snapshot_interval_s = 0.001\nsnapshot_weight_per_minute = 1e9\n",
        "[service]: min_snapshot_interval_s: 0.001 s with snapshot_weight_per_minute = 1e+09",
    ),
    "nan_cooldown": (
        "[reconcile]\ncooldown_seconds = nan\n",
        "[reconcile]: cooldown_seconds: ",
    ),
    "negative_limit": (
        "[reconcile]\nmax_calls_per_day = -1\n",
        "[reconcile]: max_calls_per_day: ",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_the_service_refuses_to_start_on_a_rule_breaking_config(
    cli: Any, tmp_path: Path, case: str
) -> None:
    text, needle = BAD_CONFIGS[case]
    config = tmp_path / "grinder.toml"
    config.write_text(text)
    artifacts = tmp_path / "artifacts"
    budget = tmp_path / "budget.json"
    proc = service(
        cli,
        tmp_path,
        "script",
        "--duration",
        "5",
        "--config",
        str(config),
        BUDGET_STATE_PATH=str(budget),
        GRINDER_ARTIFACTS_DIR=str(artifacts),
    )
    line = one_line(proc)
    assert f"error: {config} {needle}" in line
    assert proc.stdout == ""
    assert not artifacts.exists()
    assert not budget.exists()


# --- reload and control: refused, settings unchanged ------------------------------------------


def _start(cli: Any, tmp_path: Path, config: Path, socket_path: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "scripts.run_live_reconcile", "--metrics-port", "0"]
    argv += ["--config", str(config), "--control-socket", str(socket_path)]
    return start_until_ready(
        argv, cwd=REPO, env=cli.env(scripts=True, runtime_dir=tmp_path / "run")
    )


def test_reload_and_control_refuse_a_rule_breaking_change_and_keep_the_settings(
    cli: Any, tmp_path: Path
) -> None:
    config = tmp_path / "grinder.toml"
    config.write_text('[reconcile]\naction = "cancel_all"\n')
    socket_path = tmp_path / "ctl" / "control.sock"
    proc = _start(cli, tmp_path, config, socket_path)
    env = cli.env()

    def grinder(*args: str) -> subprocess.CompletedProcess[str]:
        result: subprocess.CompletedProcess[str] = cli.run(
            "grinder.cli", "control", *args, "--socket", str(socket_path), env=env, timeout=30
        )
        return result

    def settings() -> dict[str, Any]:
        status = grinder("status")
        assert status.returncode == 0, status.stderr
        config_now: dict[str, Any] = json.loads(status.stdout)["config"]
        return config_now

    try:
        before = settings()
        assert before["action"] == "cancel_all"
        # The file now changes a harmless setting and breaks a rule: nothing of it applies.
        config.write_text('[reconcile]\naction = "none"\nclient_order_id_prefix = "autoclose-"\n')
        proc.send_signal(signal.SIGHUP)
        reloaded = grinder("reload")
        refused = [
            grinder("set", "client_order_id_prefix", "autoclose-"),
            grinder("set", "strategy_id", "s" * 40),
            grinder("set", "max_calls_per_day", HUGE),
        ]
        time.sleep(0.5)  # the SIGHUP is handled by now
        after = settings()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert after == before
    line = one_line(reloaded)
    assert f"{config} [reconcile]: client_order_id_prefix: 'autoclose-' overlaps" in line
    assert "client_order_id_prefix: 'autoclose-' overlaps" in one_line(refused[0])
    assert "strategy_id: remediation ids for BTCUSDT" in one_line(refused[1])
    assert "max_calls_per_day: expected a number" in one_line(refused[2])
    failed = [line for line in err.splitlines() if "CONFIG_RELOAD_FAILED" in line]
    assert len(failed) == 1, err
    assert f"{config} [reconcile]: client_order_id_prefix: 'autoclose-'" in failed[0]
    assert "(settings unchanged)" in failed[0]
    assert "CONTROL_CHANGE" not in err
