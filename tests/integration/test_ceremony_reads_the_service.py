"""``grinder ceremony check`` judges the running service, never the shell it runs in.

Two services run as operators start them (``python3 -m scripts.run_live_reconcile``, each in its
own working directory, with the in-process simulator): ``stocked`` has ``BUDGET_STATE_PATH``,
``GRINDER_ARTIFACTS_DIR``, ``ALLOW_MAINNET_TRADE=1``, a relative ``--log-file`` and runbook 13's
stage-3 settings; ``bare`` has none of those and the passive settings. The checker runs with the
opposite environment: for ``stocked`` a shell with none of the variables, for ``bare`` a shell
that has them all (pointing at real files). Every verdict must be the service's. A service that
cannot be reached (never started, killed with SIGKILL, paused with SIGSTOP) is one line on stderr
and exit 2, never a verdict taken from the shell.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from grinder.cli.control import call

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[2]
STAGE3 = """\
[reconcile]
action = "cancel_all"
dry_run = false
allow_active_remediation = true
max_orders_per_action = 1
max_symbols_per_action = 1
cooldown_seconds = 300
symbol_whitelist = ["BTCUSDT"]

[service]
armed = true
full_pass_interval_s = 1.0
"""
PASSIVE = """\
[reconcile]
symbol_whitelist = ["BTCUSDT", "ETHUSDT"]

[service]
full_pass_interval_s = 1.0
"""
SIM_SECRET = "sim-secret-not-to-be-shown-0123"


@dataclass
class Service:
    cli: Any
    root: Path
    proc: subprocess.Popen[bytes] | None
    socket: Path
    metrics_url: str

    def check(self, *args: str, **shell: str) -> subprocess.CompletedProcess[str]:
        """``grinder ceremony check`` from a shell of its own: the clean test environment plus
        ``shell``, in a working directory that is not the service's."""
        elsewhere = self.root / "elsewhere"
        elsewhere.mkdir(exist_ok=True)
        return self.cli.run(
            "grinder.cli",
            "ceremony",
            "check",
            "--socket",
            str(self.socket),
            "--interval",
            "5",
            *args,
            env=self.cli.env(**shell),
            cwd=elsewhere,
        )

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = call(str(self.socket), "GET", "/status")
        return result


def start(cli: Any, root: Path, config: str, *flags: str, **env: str) -> Service:
    root.mkdir(parents=True, exist_ok=True)
    (root / "grinder.toml").write_text(config)
    port = cli.free_port()
    out = root / "service.out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scripts.run_live_reconcile",
            "--venue",
            "sim",
            "--metrics-port",
            str(port),
            "--config",
            "grinder.toml",
            *flags,
        ],
        cwd=root,
        env=cli.env(scripts=True, runtime_dir=root / "run", **env),
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )
    cli.wait_http(f"http://127.0.0.1:{port}/readyz", proc, out)
    socket = root / "run" / "grinder" / "control.sock"
    return Service(cli, root, proc, socket, f"http://127.0.0.1:{port}/metrics")


def stop(service: Service) -> None:
    assert service.proc is not None
    if service.proc.poll() is None:
        service.proc.send_signal(signal.SIGTERM)
        assert service.proc.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def stocked(cli: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("stocked")
    service = start(
        cli,
        root,
        STAGE3,
        "--log-file",
        "logs/app.log",  # relative: the service's working directory, not the checker's
        "--reset-budget-state",
        BUDGET_STATE_PATH="state/budget.json",
        GRINDER_ARTIFACTS_DIR=str(root / "artifacts"),
        ALLOW_MAINNET_TRADE="1",
        GRINDER_SIM_API_SECRET=SIM_SECRET,
    )
    try:
        yield service
    finally:
        stop(service)


@pytest.fixture(scope="module")
def bare(cli: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start(cli, tmp_path_factory.mktemp("bare"), PASSIVE)
    try:
        yield service
    finally:
        stop(service)


def item(output: str, title: str) -> str:
    """One printed item: its status and its evidence, the wrapped lines joined."""
    lines = output.splitlines()
    for n, line in enumerate(lines):
        if line.rstrip().endswith(title) and line.split()[:1] in (["PASS"], ["FAIL"], ["MANUAL"]):
            evidence = []
            for more in lines[n + 1 :]:
                if not more.startswith(" " * 15):
                    break
                evidence.append(more.strip())
            return line.split()[0] + " " + " ".join(evidence)
    raise AssertionError(f"no item {title!r} in:\n{output}")


BUDGET = "Daily budget persisted (budget state file)"
MAINNET = "ALLOW_MAINNET_TRADE=1 set"
RUN_DIR = "Artifact run-directory enabled (recommended)"
LOG = "Mismatch history in the log: none unresolved"
PASSIVE_FIRST = "No active feature enabled yet (passive first)"


def test_status_reports_the_services_runtime(stocked: Service) -> None:
    runtime = stocked.status()["runtime"]
    root = stocked.root
    paths = runtime["paths"]
    assert paths["budget_state_path"] == str(root / "state" / "budget.json")
    assert paths["log_file"] == str(root / "logs" / "app.log")
    assert paths["config_file"] == str(root / "grinder.toml")
    assert paths["artifacts_dir"] == str(root / "artifacts")
    run_dir = Path(paths["run_dir"])
    assert run_dir.parent.parent == root / "artifacts"
    assert run_dir.is_dir()
    assert paths["audit"] == str(run_dir / "audit.jsonl")
    assert paths["control_socket"] == str(stocked.socket)
    assert runtime["cwd"] == str(root)
    assert runtime["budget_store"] == "file"
    assert runtime["env"]["ALLOW_MAINNET_TRADE"] == "1"
    assert runtime["env"]["BUDGET_STATE_PATH"] == "state/budget.json"
    assert runtime["env"]["GRINDER_SIM_API_SECRET"] == "***REDACTED***"
    assert runtime["env_overrides"] == {"allow_mainnet_trade": "ALLOW_MAINNET_TRADE=1"}
    with urllib.request.urlopen(stocked.metrics_url.removesuffix("/metrics") + "/readyz") as r:
        assert r.status == 200
    # The bundled simulator's URL: where drift is injected, and every write is logged.
    venue = runtime["venue_url"]
    with urllib.request.urlopen(f"{venue}/_sim/writes?apiKey=grinder-sim-key") as resp:
        assert json.loads(resp.read()) == {"writes": []}  # live, armed, and nothing to do
    out = (root / "service.out").read_text()
    assert f"venue: {venue} (the bundled simulator: {venue}/_sim/ injects drift" in out
    assert SIM_SECRET not in json.dumps(stocked.status())
    assert SIM_SECRET not in out


def test_a_service_with_settings_the_shell_lacks_passes_on_its_own(stocked: Service) -> None:
    """The checker's shell has no BUDGET_STATE_PATH, GRINDER_ARTIFACTS_DIR,
    ALLOW_MAINNET_TRADE, and another working directory: no false FAIL."""
    stage3 = stocked.check("--stage", "3")
    assert item(stage3.stdout, BUDGET).startswith(
        f"PASS service BUDGET_STATE_PATH={stocked.root / 'state' / 'budget.json'}: day "
    )
    assert item(stage3.stdout, MAINNET) == (
        "PASS service allow_mainnet_trade=true (control /status); service environment at "
        "start: ALLOW_MAINNET_TRADE=1"
    )
    failed = [ln for ln in stage3.stdout.splitlines() if ln.startswith("  FAIL")]
    # Gate E only: this service reads no bot's expected state (its own empty memory).
    assert [ln.split(None, 2)[2] for ln in failed] == [
        "The bot's expected state is live (gate E)"
    ], stage3.stdout
    assert "runtime:  budget_state_path " + str(stocked.root / "state" / "budget.json") in (
        stage3.stdout
    )

    stage2 = stocked.check("--stage", "2")
    assert item(stage2.stdout, RUN_DIR).startswith(
        f"PASS the service's GRINDER_ARTIFACTS_DIR={stocked.root / 'artifacts'}: this run's "
    )
    stage1 = stocked.check("--stage", "1")
    log = stocked.root / "logs" / "app.log"
    assert item(stage1.stdout, LOG).startswith(f"PASS {log}: no RECONCILE_MISMATCH line")
    # Stage 3's settings are in force: stage 1 names every gate the operator opened.
    assert item(stage1.stdout, PASSIVE_FIRST).startswith(
        "FAIL active: action=cancel_all (gate 1 action permitted; passive: none), "
        "dry_run=false (gate 2 dry_run; passive: true), "
        "allow_active_remediation=true (gate 3 allow_active_remediation; passive: false), "
        "armed=true (gate 4 executor armed; passive: false), "
        "allow_mainnet_trade=true (gate 5 ALLOW_MAINNET_TRADE=1; passive: false) — "
    )
    assert stage1.returncode == 1


def test_a_shell_with_settings_the_service_lacks_reports_the_services_truth(
    bare: Service, tmp_path: Path
) -> None:
    """The checker's shell has every variable (real files behind them); the service has none."""
    budget = tmp_path / "budget.json"
    budget.write_text(
        '{"schema_version": 1, "day": "2027-01-15", "calls_used_day": 0, '
        '"notional_used_day": "0", "updated_ts_ms": 1}'
    )
    artifacts = tmp_path / "artifacts"
    (artifacts / "2027-01-15" / "run_120000_000001_1").mkdir(parents=True)
    log = tmp_path / "app.log"
    log.write_text("")
    shell = {
        "BUDGET_STATE_PATH": str(budget),
        "GRINDER_ARTIFACTS_DIR": str(artifacts),
        "ALLOW_MAINNET_TRADE": "1",
    }
    stage3 = bare.check("--stage", "3", **shell)
    assert stage3.returncode == 1
    assert item(stage3.stdout, BUDGET).startswith(
        "FAIL the service runs without BUDGET_STATE_PATH (none in its environment): its daily "
        "budget lives in memory"
    )
    assert item(stage3.stdout, MAINNET) == (
        "FAIL service allow_mainnet_trade=false (control /status); service environment at "
        "start: ALLOW_MAINNET_TRADE unset — gate 5 closed: grinder control allow-mainnet, or "
        "export before start"
    )
    named = bare.check("--stage", "3", "--budget-state", str(budget), **shell)
    assert item(named.stdout, BUDGET).endswith(
        f"(--budget-state {budget} is a file the service does not use)"
    )
    # An unreachable --metrics-url is an item's evidence, its password masked.
    closed = f"http://m:{SIM_SECRET}@127.0.0.1:{bare.cli.free_port()}/metrics"
    dark = bare.check("--stage", "3", "--metrics-url", closed, **shell)
    assert dark.returncode == 1
    assert SIM_SECRET not in dark.stdout + dark.stderr
    assert item(dark.stdout, "Service metrics endpoint answers").startswith(
        "FAIL http://m:***@127.0.0.1:"
    )
    stage2 = bare.check("--stage", "2", **shell)
    assert item(stage2.stdout, RUN_DIR).startswith(
        "MANUAL the service runs without a run directory (GRINDER_ARTIFACTS_DIR unset in its "
        "environment)"
    )
    stage1 = bare.check("--stage", "1", **shell)
    assert stage1.returncode == 0, stage1.stdout + stage1.stderr
    assert item(stage1.stdout, PASSIVE_FIRST).startswith("PASS action=none (control /status)")
    assert item(stage1.stdout, LOG).startswith("MANUAL the service writes no log file")
    # A log file the service does not write would read as "no mismatches": it fails.
    given = bare.check("--stage", "1", "--log-file", str(log), **shell)
    assert given.returncode == 1
    assert item(given.stdout, LOG) == (
        f"FAIL {log} is not the service's log: the service writes no log file (started "
        "without --log-file)"
    )


def test_a_service_that_cannot_be_reached_is_exit_2_and_one_line(cli: Any, tmp_path: Path) -> None:
    """Never started, killed (its socket file left behind), paused: no verdict from the shell."""

    def one_line_exit_2(proc: subprocess.CompletedProcess[str], says: str) -> None:
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stdout == ""
        (line,) = proc.stderr.splitlines()
        assert line.startswith("grinder: error: --socket: "), line
        assert says in line, line
        assert line.endswith("never this shell's"), line

    shell = {"BUDGET_STATE_PATH": str(tmp_path / "b.json"), "ALLOW_MAINNET_TRADE": "1"}
    absent = Service(cli, tmp_path, None, tmp_path / "none.sock", "")
    one_line_exit_2(absent.check("--stage", "3", **shell), "no control socket at")

    service = start(cli, tmp_path / "svc", PASSIVE)
    assert service.proc is not None
    try:
        os.kill(service.proc.pid, signal.SIGSTOP)
        try:
            paused = service.check("--stage", "1", **shell)
        finally:
            os.kill(service.proc.pid, signal.SIGCONT)
        one_line_exit_2(paused, "did not answer GET /status in time")
        assert service.check("--stage", "1").returncode == 0  # awake again: answered
        service.proc.kill()
        service.proc.wait(timeout=10)
        assert service.socket.exists()  # left behind by SIGKILL
        one_line_exit_2(service.check("--stage", "1", **shell), "cannot reach the service")
    finally:
        if service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait(timeout=10)
