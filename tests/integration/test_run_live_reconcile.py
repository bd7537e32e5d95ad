"""Runbook 13's service commands, run as written, in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from grinder.state.sqlite import SqliteExpectedStore
from tests.support.process import start_until_ready

pytestmark = pytest.mark.subprocess

Run = Callable[..., subprocess.CompletedProcess[str]]
EnvFor = Callable[..., dict[str, str]]


@pytest.fixture
def env_for(cli: Any, tmp_path: Path) -> EnvFor:
    """The service's environment in ``tmp_path`` (control socket under ``run/``), plus ``extra``."""

    def env_for(**extra: str) -> dict[str, str]:
        return cli.env(scripts=True, runtime_dir=tmp_path / "run", **extra)

    return env_for


@pytest.fixture
def run(cli: Any, tmp_path: Path, env_for: EnvFor) -> Run:
    """``python3 -m scripts.run_live_reconcile --metrics-port 0 ARGS`` in ``tmp_path``, as the
    runbook writes it; keyword arguments are environment variables."""

    def run(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return cli.run(
            "scripts.run_live_reconcile",
            "--metrics-port",
            "0",
            *args,
            env=env_for(**env),
            cwd=tmp_path,
            timeout=timeout,
            python="python3",
        )

    return run


def start_ready(cwd: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``python3 -m scripts.run_live_reconcile ARGS`` in the background, returned once it
    printed ``ready:`` (or after 30 s)."""
    return start_until_ready(
        ["python3", "-m", "scripts.run_live_reconcile", *args], cwd=cwd, env=env
    )


def latest_run_dir(artifacts: Path) -> Path:
    days = sorted(p for p in artifacts.iterdir() if p.is_dir())
    runs = sorted(days[-1].glob("run_*"))
    return runs[-1]


def test_reset_budget_state_run_writes_every_runbook_file(tmp_path: Path, run: Run) -> None:
    budget = tmp_path / "budget.json"
    artifacts = tmp_path / "artifacts"
    proc = run(
        "--reset-budget-state",
        "--duration",
        "2",
        BUDGET_STATE_PATH=str(budget),
        GRINDER_ARTIFACTS_DIR=str(artifacts),
    )
    assert proc.returncode == 0, proc.stderr
    assert f"budget_state_reset=1 path={budget}" in proc.stdout.splitlines()
    run_dir = latest_run_dir(artifacts)
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == [
        "audit.jsonl",
        "budget_state.json",
        "metrics.prom",
        "metrics_summary.json",
        "stdout.log",
    ]
    stdout_log = (run_dir / "stdout.log").read_text()
    assert "  GRINDER RECONCILE SERVICE" in stdout_log
    assert stdout_log.rstrip().endswith("exit_code=0")
    assert "grinder_reconcile_runs_total" in (run_dir / "metrics.prom").read_text()
    summary = json.loads((run_dir / "metrics_summary.json").read_text())
    assert summary["exit_code"] == 0
    assert summary["metrics"]["grinder_reconcile_runs_total"] >= 1
    events = [json.loads(x) for x in (run_dir / "audit.jsonl").read_text().splitlines()]
    assert any(e["event_type"] == "RECONCILE_RUN" for e in events)
    state = json.loads((run_dir / "budget_state.json").read_text())
    assert state["calls_used_day"] == 0
    assert json.loads(budget.read_text())["schema_version"] == 1


def test_multi_run_without_reset_keeps_the_budget_and_sorts_run_dirs(
    tmp_path: Path, run: Run
) -> None:
    budget = tmp_path / "budget.json"
    budget.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "day": time.strftime("%Y-%m-%d", time.gmtime()),
                "calls_used_day": 7,
                "notional_used_day": "120.5",
                "updated_ts_ms": 1,
            }
        )
    )
    artifacts = tmp_path / "artifacts"
    for _ in range(2):
        proc = run(
            "--duration",
            "1",
            BUDGET_STATE_PATH=str(budget),
            GRINDER_ARTIFACTS_DIR=str(artifacts),
        )
        assert proc.returncode == 0, proc.stderr
        assert "budget_state_reset" not in proc.stdout
    runs = sorted(next(artifacts.iterdir()).glob("run_*"))
    assert len(runs) == 2
    assert runs[0].name < runs[1].name
    assert json.loads(budget.read_text())["calls_used_day"] == 7
    assert json.loads((runs[-1] / "budget_state.json").read_text())["calls_used_day"] == 7


def test_stale_budget_file_prints_the_runbook_warning(tmp_path: Path, run: Run) -> None:
    budget = tmp_path / "budget.json"
    budget.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "day": "2024-01-14",
                "calls_used_day": 1,
                "notional_used_day": "0",
                "updated_ts_ms": 1,
            }
        )
    )
    old = time.time() - 25.3 * 3600
    os.utime(budget, (old, old))
    proc = run("--duration", "1", BUDGET_STATE_PATH=str(budget))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("WARNING: Budget state"))
    assert lines[start] == "WARNING: Budget state is stale (25.3h old, threshold=24h)"
    assert lines[start + 1].startswith("         Last modified: ")
    assert lines[start + 1].endswith(" UTC")
    assert lines[start + 2] == f"         Path: {budget}"
    assert lines[start + 3] == "         Consider using --reset-budget-state for a clean start."


def test_corrupt_budget_file_is_exit_2_and_left_untouched(tmp_path: Path, run: Run) -> None:
    budget = tmp_path / "budget.json"
    budget.write_text('{"schema_version": 1, "day": ')
    artifacts = tmp_path / "artifacts"
    proc = run(
        "--duration", "1", BUDGET_STATE_PATH=str(budget), GRINDER_ARTIFACTS_DIR=str(artifacts)
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"run_live_reconcile: error: BUDGET_STATE_PATH: {budget}: ")
    assert budget.read_text() == '{"schema_version": 1, "day": '
    # found before the run starts: no run directory, like any other bad input
    assert not artifacts.exists()


def test_real_venue_without_credentials_is_exit_2_naming_the_variable(run: Run) -> None:
    proc = run("--venue", "testnet", "--duration", "1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "BINANCE_API_KEY" in lines[0]


def test_bad_flag_and_bad_env_are_exit_2_with_one_line(tmp_path: Path, run: Run) -> None:
    for args, env, needle in (
        (("--duration", "-5"), {}, "--duration"),
        (("--duration", "inf"), {}, "--duration"),
        (("--duration", "nan"), {}, "--duration"),
        (("--duration", "1e306"), {}, "--duration"),
        (("--venue", "moon"), {}, "--venue"),
        ((), {"GRINDER_VENUE": "moon"}, "GRINDER_VENUE"),
        ((), {"GRINDER_VENUE": ""}, "GRINDER_VENUE"),
        ((), {"GRINDER_REDIS_URL": ""}, "GRINDER_REDIS_URL"),
        ((), {"GRINDER_ARTIFACT_TTL_DAYS": "inf"}, "GRINDER_ARTIFACT_TTL_DAYS"),
        ((), {"ARMED": "yes"}, "ARMED"),
        (("--config", str(tmp_path / "missing.toml")), {}, "missing.toml"),
        (("--log-file", ""), {}, "--log-file"),
    ):
        proc = run(*args, **env)
        assert proc.returncode == 2, (args, env, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert needle in lines[0]


def test_unusable_paths_are_exit_2_with_one_line_naming_flag_and_path(
    tmp_path: Path, run: Run
) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    foreign = tmp_path / "passwd"
    foreign.write_text("root:x:0:0:root:/root:/bin/bash\n")
    long_socket = tmp_path / ("s" * 120) / "control.sock"
    budget = tmp_path / "budget.json"
    budget.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "day": "2024-01-14",
                "calls_used_day": 3,
                "notional_used_day": "0",
                "updated_ts_ms": 1,
            }
        )
    )
    before = budget.read_text()
    artifacts = tmp_path / "artifacts"
    cases: list[tuple[tuple[str, ...], dict[str, str], str, Path]] = [
        (("--log-file", str(blocker / "x.log")), {}, "--log-file", blocker / "x.log"),
        (
            ("--expected-db", str(tmp_path / "nope" / "x.db")),
            {},
            "--expected-db",
            tmp_path / "nope",
        ),
        (("--expected-db", str(foreign)), {}, "--expected-db", foreign),
        (
            (),
            {"GRINDER_EXPECTED_DB": str(tmp_path / "no" / "dir" / "x.db")},
            "GRINDER_EXPECTED_DB",
            tmp_path / "no" / "dir",
        ),
        (("--control-socket", str(long_socket)), {}, "--control-socket", long_socket),
        (("--control-socket", str(foreign)), {}, "--control-socket", foreign),
        (
            ("--metrics-out", str(tmp_path / "nope" / "m.prom")),
            {},
            "--metrics-out",
            tmp_path / "nope",
        ),
        (("--audit-out", str(blocker / "a.jsonl")), {}, "--audit-out", blocker),
        ((), {"BUDGET_STATE_PATH": str(blocker / "b.json")}, "BUDGET_STATE_PATH", blocker),
        ((), {"GRINDER_ARTIFACTS_DIR": str(blocker)}, "GRINDER_ARTIFACTS_DIR", blocker),
    ]
    for args, env, where, path in cases:
        env = {"GRINDER_ARTIFACTS_DIR": str(artifacts), "BUDGET_STATE_PATH": str(budget), **env}
        proc = run("--duration", "1", *args, **env)
        assert proc.returncode == 2, (args, env, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"run_live_reconcile: error: {where}: "), lines[0]
        assert str(path) in lines[0], lines[0]
        # nothing lost, nothing half-written
        assert not artifacts.exists(), (args, env)
        assert budget.read_text() == before
        assert foreign.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
        assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["budget.json", "file.txt", "passwd"]


@pytest.mark.parametrize("named_by", ["--expected-db", "GRINDER_EXPECTED_DB"])
def test_a_missing_expected_db_is_exit_2_in_one_line_and_creates_nothing(
    tmp_path: Path, run: Run, named_by: str
) -> None:
    """A typo in the path must not become a new, empty file that says "the bot expects
    nothing" (every order of the bot unexpected, cancelled with the gates open)."""
    typo = tmp_path / "var" / "expectd.db"
    typo.parent.mkdir()
    artifacts = tmp_path / "artifacts"
    args = ("--expected-db", str(typo)) if named_by == "--expected-db" else ()
    env = {} if args else {"GRINDER_EXPECTED_DB": str(typo)}
    gates = {"RECONCILE_DRY_RUN": "0", "RECONCILE_ALLOW_ACTIVE": "1", "ARMED": "1"}
    proc = run("--duration", "1", *args, GRINDER_ARTIFACTS_DIR=str(artifacts), **gates, **env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr == (
        f"run_live_reconcile: error: {named_by}: {typo} does not exist (the bot's recorder "
        "creates it; to start with an empty one on purpose: --create-expected-db, or grinder "
        "expected adopt)\n"
    )
    assert list(typo.parent.iterdir()) == []  # no file, no -wal, no -shm
    assert not artifacts.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["var"]


def test_create_expected_db_creates_an_empty_file_that_blocks_remediation(
    tmp_path: Path, run: Run
) -> None:
    db = tmp_path / "expected.db"
    proc = run("--duration", "1", "--expected-db", str(db), "--create-expected-db")
    assert proc.returncode == 0, proc.stderr
    assert f"EXPECTED_DB_CREATED path={db}" in proc.stderr
    assert "EXPECTED_STATE_STALE source=sqlite" in proc.stderr
    assert "heartbeat_age_s=inf" in proc.stderr
    assert db.is_file()
    with SqliteExpectedStore(db, readonly=True) as store:
        assert store.bot_heartbeat_ms is None  # created by the service: no bot wrote it
    again = run("--duration", "1", "--expected-db", str(db))  # it exists now: no flag needed
    assert again.returncode == 0, again.stderr
    assert "EXPECTED_DB_CREATED" not in again.stderr
    lonely = run("--duration", "1", "--create-expected-db")
    assert lonely.returncode == 2
    assert lonely.stderr == (
        "run_live_reconcile: error: --create-expected-db: needs --expected-db FILE (or "
        "GRINDER_EXPECTED_DB) to create\n"
    )


@pytest.mark.parametrize(
    ("module", "prog"),
    [("scripts.run_live_reconcile", "run_live_reconcile"), ("grinder.cli", "grinder")],
)
def test_error_after_start_is_one_line_on_stderr_and_recorded_in_the_run_dir(
    tmp_path: Path, cli: Any, env_for: EnvFor, module: str, prog: str
) -> None:
    artifacts = tmp_path / "artifacts"
    log_file = tmp_path / "log" / "app.log"
    command = ["reconcile"] if prog == "grinder" else []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = cli.run(
            module,
            *command,
            "--metrics-port",
            str(port),
            "--log-file",
            str(log_file),
            "--duration",
            "5",
            env=env_for(GRINDER_ARTIFACTS_DIR=str(artifacts)),
            cwd=tmp_path,
        )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line or "error" in line]
    expected = f"{prog}: error: --metrics-port: cannot listen on 127.0.0.1:{port} ("
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(expected), errors
    assert "SERVICE_FATAL" not in proc.stderr
    assert "SERVICE_FATAL exit_code=2 error=--metrics-port: cannot listen" in log_file.read_text()
    stdout_log = (latest_run_dir(artifacts) / "stdout.log").read_text().splitlines()
    assert stdout_log[-2].startswith("error: --metrics-port: cannot listen on")
    assert stdout_log[-1] == "exit_code=2"
    assert proc.stdout.rstrip().endswith("exit_code=2")


def test_a_metrics_host_that_cannot_be_bound_is_named_as_such(run: Run) -> None:
    proc = run("--metrics-host", "no-such-host.invalid", "--duration", "5")
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(
        "run_live_reconcile: error: --metrics-host: cannot listen on no-such-host.invalid:0 ("
    )


def test_a_failed_artifact_write_keeps_the_others_and_exits_1_naming_the_file(
    tmp_path: Path, env_for: EnvFor
) -> None:
    artifacts = tmp_path / "artifacts"
    budget = tmp_path / "budget.json"
    out = tmp_path / "out"
    out.mkdir()
    proc = start_ready(
        tmp_path,
        env_for(GRINDER_ARTIFACTS_DIR=str(artifacts), BUDGET_STATE_PATH=str(budget)),
        "--metrics-port",
        "0",
        "--metrics-out",
        str(out / "m.prom"),
    )
    out.rmdir()
    out.write_text("the folder of --metrics-out became a file during the run")
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert errors == [
        f"run_live_reconcile: error: cannot write --metrics-out {out / 'm.prom'} "
        f"(File exists: {out})"
    ], err
    # every other file is still written, the budget file above all
    assert json.loads(budget.read_text())["schema_version"] == 1
    run_dir = latest_run_dir(artifacts)
    assert (run_dir / "budget_state.json").is_file()
    assert json.loads((run_dir / "metrics_summary.json").read_text())["exit_code"] == 1
    stdout_log = (run_dir / "stdout.log").read_text()
    assert f"  NOT written:       --metrics-out {out / 'm.prom'}" in stdout_log
    assert stdout_log.rstrip().endswith("exit_code=1")
    assert rest.rstrip().endswith("exit_code=1")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_gracefully_and_writes_artifacts(
    tmp_path: Path, env_for: EnvFor, signum: signal.Signals
) -> None:
    artifacts = tmp_path / "artifacts"
    proc = start_ready(
        tmp_path, env_for(GRINDER_ARTIFACTS_DIR=str(artifacts)), "--metrics-port", "0"
    )
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "exit_code=0" in out
    run_dir = latest_run_dir(artifacts)
    assert (run_dir / "metrics.prom").is_file()
    for name in ("stdout.log", "audit.jsonl", "metrics.prom", "metrics_summary.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "budget_state.json").is_file()
    assert f"SERVICE_STOP signal={signum.name}" in err


def test_sighup_rereads_the_config_file(tmp_path: Path, env_for: EnvFor) -> None:
    config = tmp_path / "grinder.toml"
    config.write_text('[reconcile]\naction = "cancel_all"\n')
    audit = tmp_path / "audit.jsonl"
    proc = start_ready(
        tmp_path,
        env_for(),
        "--metrics-port",
        "0",
        "--config",
        str(config),
        "--audit-out",
        str(audit),
    )
    config.write_text(
        '[reconcile]\naction = "none"\ndry_run = true\n'
        "[service]\nfull_pass_interval_s = 5.0\n[ha]\nlease_ttl_s = 20.0\n"
    )
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    changes: list[dict[str, str]] = []
    while time.monotonic() < deadline and not changes:
        time.sleep(0.1)
        if audit.exists():
            changes = [
                r
                for r in map(json.loads, audit.read_text().splitlines())
                if r["event_type"] == "CONTROL_CHANGE"
            ]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert [(c["source"], c["field"], c["old"], c["new"]) for c in changes] == [
        ("sighup", "action", "cancel_all", "none")
    ]
    assert "CONTROL_CHANGE source=sighup field=action old=cancel_all new=none" in err
    # read at start: reported, not silently dropped, and not applied
    assert (
        "CONFIG_RELOAD_NOT_APPLIED source=sighup "
        "fields=service.full_pass_interval_s,ha.lease_ttl_s why=read_at_start_restart_to_apply"
    ) in err


def test_a_refused_start_never_removes_the_control_socket_of_another_service(
    tmp_path: Path, run: Run
) -> None:
    """The socket another service listens on stays: this one is refused and removes
    nothing on its way out (only a socket it bound itself is ever removed)."""
    folder = tmp_path / "ctl"
    folder.mkdir(mode=0o700)
    path = folder / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(path))
        other.listen(1)
        proc = run("--duration", "5", "--control-socket", str(path))
        assert proc.returncode == 2, proc.stderr
        assert "another service is listening" in proc.stderr
        assert stat.S_ISSOCK(path.lstat().st_mode)  # still there, still the other's
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.connect(str(path))


def test_a_clean_stop_removes_the_control_socket_it_bound(tmp_path: Path, run: Run) -> None:
    path = tmp_path / "ctl" / "control.sock"
    proc = run("--duration", "1", "--control-socket", str(path))
    assert proc.returncode == 0, proc.stderr
    assert not path.exists()


def test_the_budget_file_is_never_written_back_with_less_than_it_records(
    tmp_path: Path, run: Run, env_for: EnvFor
) -> None:
    """Another process recorded more use while this run went on (here: before it stopped):
    the run's end does not write its own smaller figure over it."""
    budget = tmp_path / "budget.json"
    artifacts = tmp_path / "artifacts"
    proc = run("--duration", "1", BUDGET_STATE_PATH=str(budget))
    assert proc.returncode == 0, proc.stderr
    state = json.loads(budget.read_text())
    assert state["calls_used_day"] == 0
    writer = start_ready(
        tmp_path,
        env_for(BUDGET_STATE_PATH=str(budget), GRINDER_ARTIFACTS_DIR=str(artifacts)),
        "--metrics-port",
        "0",
    )
    state["calls_used_day"] = 3  # what another process reserved meanwhile
    budget.write_text(json.dumps(state))
    writer.send_signal(signal.SIGTERM)
    _out, err = writer.communicate(timeout=30)
    assert writer.returncode == 0, err
    assert json.loads(budget.read_text())["calls_used_day"] == 3


def test_an_empty_expected_db_file_is_refused_unless_creating_on_purpose(
    tmp_path: Path, run: Run
) -> None:
    db = tmp_path / "expected.db"
    db.touch()
    proc = run("--duration", "1", "--expected-db", str(db))
    assert proc.returncode == 2
    assert proc.stderr == (
        f"run_live_reconcile: error: --expected-db: {db} is empty, not an expected-state "
        "database (the bot's recorder creates it; to start with an empty one on purpose: "
        "--create-expected-db, or grinder expected adopt)\n"
    )
    assert db.stat().st_size == 0  # left as it was
    made = run("--duration", "1", "--expected-db", str(db), "--create-expected-db")
    assert made.returncode == 0, made.stderr
    assert db.stat().st_size > 0
