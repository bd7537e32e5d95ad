"""grinder ceremony check, grinder gates and the monitoring assets against a running service.

The service runs as runbook 13 starts it (``python3 -m scripts.run_live_reconcile``, the
in-process simulator, dry-run, ``--expected-db`` of a bot) with the settings stage 2 needs; its
full pass runs every second so "runs increasing" is quick to observe. The bot (``recorder_bot``
of tests/conftest.py: a recorder heartbeating every second) keeps the expected state live. Settings
are changed at run time through the control socket, as an operator would, and restored after
each test.
"""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from grinder.ceremony.sources import fetch_scrape
from grinder.cli.control import call
from tests.support.wait import wait_until

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[2]
STAGE2 = """\
[reconcile]
action = "cancel_all"
dry_run = true
allow_active_remediation = true
symbol_whitelist = ["BTCUSDT", "ETHUSDT"]

[service]
full_pass_interval_s = 1.0
"""


@dataclass
class Service:
    cli: Any
    tmp: Path
    env: dict[str, str]
    metrics_url: str
    socket: Path
    budget: Path
    log_file: Path
    config: Path
    bot: Any

    def grinder(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.cli.run("grinder.cli", *args, env={**self.env, **env})

    def control(self, route: str, body: dict[str, Any]) -> Any:
        return call(str(self.socket), "POST", route, body)

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = call(str(self.socket), "GET", "/status")
        return result


@pytest.fixture(scope="module")
def service(
    cli: Any, tmp_path_factory: pytest.TempPathFactory, recorder_bot: Any
) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("operator")
    config = tmp / "grinder.toml"
    config.write_text(STAGE2)
    budget = tmp / "budget.json"
    log_file = tmp / "app.log"
    port = cli.free_port()
    env = cli.env(scripts=True, runtime_dir=tmp / "run")
    out = tmp / "service.out"
    bot = recorder_bot(tmp / "expected.db")
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
            str(config),
            "--log-file",
            str(log_file),
            "--expected-db",
            str(tmp / "expected.db"),
            "--reset-budget-state",
        ],
        cwd=REPO,
        env={**env, "BUDGET_STATE_PATH": str(budget)},
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        cli.wait_http(f"{base}/readyz", proc, out)
        yield Service(
            cli,
            tmp,
            env,
            f"{base}/metrics",
            tmp / "run" / "grinder" / "control.sock",
            budget,
            log_file,
            config,
            bot,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        bot.stop()
    assert proc.returncode == 0, out.read_text(errors="replace")[-3000:]


def item(output: str, title: str) -> str:
    """The status and evidence of one printed item (its status line and wrapped evidence)."""
    lines = output.splitlines()
    for n, line in enumerate(lines):
        if line.rstrip().endswith(title) and re.match(r"^  (PASS|FAIL|MANUAL)", line):
            evidence = []
            for more in lines[n + 1 :]:
                if not more.startswith(" " * 15):
                    break
                evidence.append(more.strip())
            return line.split()[0] + " " + " ".join(evidence)
    raise AssertionError(f"no item {title!r} in:\n{output}")


def test_every_metric_the_rules_and_dashboard_use_is_in_the_service_output(
    service: Service,
) -> None:
    assets = REPO / "tests" / "unit" / "test_monitoring_assets.py"
    spec = importlib.util.spec_from_file_location("monitoring_assets", assets)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    used: set[str] = module.used_metric_names()
    scrape = fetch_scrape(service.metrics_url)
    exported = scrape.names()
    suffixes = ("_bucket", "_sum", "_count", "_total", "_created")
    missing = []
    for name in sorted(used - {"up"}):  # up: Prometheus' own, per target
        base = next((name.removesuffix(s) for s in suffixes if name.endswith(s)), name)
        if name not in exported and base not in scrape.families:
            missing.append(name)
    assert not missing, f"used by monitoring/ but not in {service.metrics_url}: {missing}"


def test_stage_1_and_2_pass_against_a_dry_run_service(service: Service) -> None:
    # Stage 2's settings are in force: stage 1 names them; passive again, it passes.
    active = service.grinder("ceremony", "check", "--stage", "1")
    assert active.returncode == 1, active.stdout + active.stderr
    assert item(active.stdout, "No active feature enabled yet (passive first)").startswith(
        "FAIL active: action=cancel_all (gate 1 action permitted; passive: none), "
        "allow_active_remediation=true (gate 3 allow_active_remediation; passive: false)"
    )
    service.control("/set", {"field": "action", "value": "none"})
    service.control("/set", {"field": "allow_active_remediation", "value": False})
    try:
        stage1 = service.grinder(
            "ceremony", "check", "--stage", "1", "--log-file", str(service.log_file)
        )
    finally:  # the rollback and the word lifted: back to the file's stage-2 settings
        service.control("/lift", {"name": "action-none"})
        service.control("/lift", {"name": "allow_active_remediation"})
    assert stage1.returncode == 0, stage1.stdout + stage1.stderr
    assert "RESULT: PASS" in stage1.stdout
    runs = item(stage1.stdout, "Reconcile runs increasing")
    assert re.match(r"PASS grinder_reconcile_runs_total \d+ → \d+ in [\d.]+ s", runs), runs
    assert item(stage1.stdout, "Snapshot age < 120 s").startswith("PASS")
    assert item(stage1.stdout, "Symbol whitelist configured").startswith(
        "PASS symbol_whitelist=[BTCUSDT, ETHUSDT] (control /status)"
    )
    stage2 = service.grinder(
        "ceremony", "check", "--stage", "2", "--log-file", str(service.log_file)
    )
    assert stage2.returncode == 0, stage2.stdout + stage2.stderr
    rate = item(stage2.stdout, "Planned actions not excessive (<= 10 per hour)")
    assert re.match(
        r"PASS \d+ planned in the last hour \(grinder_reconcile_action_planned_last_hour: "
        r"cancel_all=\d+, flatten=0; the service started \d+ min ago: counted since its start\)",
        rate,
    ), rate


def test_a_misconfigured_gate_fails_with_the_evidence(service: Service) -> None:
    service.control("/set", {"field": "dry_run", "value": False})
    try:
        stage2 = service.grinder("ceremony", "check", "--stage", "2")
    finally:
        service.control("/lift", {"name": "dry_run"})  # back to the file's value
    assert stage2.returncode == 1, stage2.stdout + stage2.stderr
    assert item(stage2.stdout, "dry_run = true (CRITICAL)") == (
        "FAIL dry_run=false (control /status) — must stay true in stage 2: nothing may be sent"
    )
    assert "RESULT: FAIL — 1/" in stage2.stdout
    # Stage 3 on a dry-run service: each closed gate and limit says what it is.
    stage3 = service.grinder("ceremony", "check", "--stage", "3", "--json")
    assert stage3.returncode == 1
    items = {i["title"]: i for i in json.loads(stage3.stdout)["items"]}
    assert items["Executor armed (NOW True)"]["status"] == "FAIL"
    assert items["Executor armed (NOW True)"]["evidence"].startswith(
        "armed=false (control /status)"
    )
    assert items["Minimal limits: 1 order per run"]["evidence"] == (
        "max_orders_per_action=10 (control /status) — start with max_orders_per_action=1"
    )
    assert items["ALLOW_MAINNET_TRADE=1 set"]["status"] == "FAIL"


def test_a_config_file_is_checked_with_the_live_gates_from_the_metrics(
    service: Service, tmp_path: Path
) -> None:
    wide = tmp_path / "wide.toml"
    wide.write_text('[reconcile]\nmax_orders_per_action = 50\nsymbol_whitelist = ["BTCUSDT"]\n')
    url = service.metrics_url
    stage2 = service.grinder(
        "ceremony", "check", "--stage", "2", "--config", str(wide), "--metrics-url", url
    )
    assert stage2.returncode == 0, stage2.stdout
    # The gates in force are live in the service's metrics; the file is what it would load.
    assert item(stage2.stdout, "dry_run = true (CRITICAL)") == (
        "PASS dry_run=true (metrics grinder_reconcile_dry_run)"
    )
    stage4 = service.grinder(
        "ceremony", "check", "--stage", "4", "--config", str(wide), "--metrics-url", url
    )
    assert stage4.returncode == 1
    assert item(stage4.stdout, "Orders per run within production (10)") == (
        f"FAIL max_orders_per_action=50 (--config {wide} [reconcile]) — above the production "
        "limit 10"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("[reconcile]\ndry_run = 'yes'\n")
    proc = service.grinder("ceremony", "check", "--stage", "2", "--config", str(bad))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "dry_run" in proc.stderr


def test_stage_3_and_4_pass_once_the_operator_opens_the_gates(service: Service) -> None:
    before = service.status()
    changes: list[tuple[str, dict[str, Any]]] = [
        ("/set", {"field": "dry_run", "value": False}),
        ("/set", {"field": "max_orders_per_action", "value": 1}),
        ("/set", {"field": "max_symbols_per_action", "value": 1}),
        ("/set", {"field": "cooldown_seconds", "value": 300.0}),
        ("/set", {"field": "symbol_whitelist", "value": ["BTCUSDT"]}),
        ("/arm", {"armed": True}),
        ("/mainnet", {"allow": True}),
    ]
    try:
        for route, body in changes:
            service.control(route, body)
        stage3 = service.grinder(
            "ceremony", "check", "--stage", "3", "--budget-state", str(service.budget)
        )
        stage4 = service.grinder(
            "ceremony", "check", "--stage", "4", BUDGET_STATE_PATH=str(service.budget)
        )
    finally:
        lifted = service.control("/lift", {"name": "all"})  # every word: back to the file
    words = {"dry_run", "max_orders_per_action", "max_symbols_per_action", "cooldown_seconds"}
    assert set(lifted["lifted"]) == words | {"symbol_whitelist", "armed", "allow_mainnet_trade"}
    assert service.status()["config"] == before["config"]
    assert stage3.returncode == 0, stage3.stdout
    assert item(stage3.stdout, "ALLOW_MAINNET_TRADE=1 set") == (
        "PASS service allow_mainnet_trade=true (control /status); service environment at "
        "start: ALLOW_MAINNET_TRADE unset"
    )
    assert item(stage3.stdout, "Daily budget persisted (budget state file)").startswith(
        f"PASS --budget-state={service.budget}: day "
    )
    assert stage4.returncode == 0, stage4.stdout
    assert item(stage4.stdout, "Alert rules loaded in Prometheus").startswith("MANUAL give")
    assert service.status()["mode"] == "dry_run"


def test_gates_explains_a_cancel_and_a_flatten_from_the_live_settings(service: Service) -> None:
    order = "grinder_d_BTCUSDT_1_1704067200_1"
    cancel = service.grinder("gates", "--symbol", "BTCUSDT", "--order", order, "--json")
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    data = json.loads(cancel.stdout)
    assert data["outcome"] == "planned"
    assert data["gate_reason"] is None
    verdicts = {c["gate"]: c["verdict"] for c in data["checks"]}
    assert verdicts["4"] == "skipped"  # arming gates are not evaluated in dry-run
    assert verdicts["8"] == "pass"

    flatten = service.grinder(
        "gates", "--symbol", "BTCUSDT", "--position", "--qty", "0.01", "--price", "60000"
    )
    assert flatten.returncode == 1
    assert "First blocking gate: 1 action permitted — reason action_not_permitted" in flatten.stdout
    assert "RemediationExecutor.gate: action_not_permitted" in flatten.stdout
    assert "notional 600.00 USDT = |0.01| x 60000 (--price)" in flatten.stdout

    foreign = service.grinder("gates", "--symbol", "DOGEUSDT", "--order", "web_123", "--json")
    data = json.loads(foreign.stdout)
    assert foreign.returncode == 1
    assert data["first_block"] == data["gate_reason"] == "symbol_not_in_whitelist"
    failing = [c["reason"] for c in data["checks"] if c["verdict"] == "fail"]
    assert failing == ["symbol_not_in_whitelist", "no_grinder_prefix"]


def test_gates_and_ceremony_show_gate_e_closed_while_the_bot_is_silent(service: Service) -> None:
    """The explainer (grinder gates) and the checker (stages 2-4) see what the executor sees:
    the age of the bot's heartbeat against the limit in force."""
    order = "grinder_d_BTCUSDT_1_1704067200_1"
    service.bot.paused.set()
    service.control("/set", {"field": "expected_heartbeat_max_age_s", "value": 0.5})
    try:
        time.sleep(1.5)  # silent for longer than the limit
        status = service.status()["expected"]
        cancel = service.grinder("gates", "--symbol", "BTCUSDT", "--order", order)
        stage2 = service.grinder("ceremony", "check", "--stage", "2")
    finally:
        service.control("/lift", {"name": "expected_heartbeat_max_age_s"})
        service.bot.paused.clear()
    assert status["live"] is False
    assert status["source"] == "sqlite"
    assert status["heartbeat_age_s"] > 0.5
    assert cancel.returncode == 1, cancel.stdout + cancel.stderr
    assert "First blocking gate: E expected state live — reason expected_state_stale" in (
        cancel.stdout
    )
    assert "RemediationExecutor.gate: expected_state_stale" in cancel.stdout
    assert "to open it: run the bot" in cancel.stdout
    assert stage2.returncode == 1
    gate_e = item(stage2.stdout, "The bot's expected state is live (gate E)")
    assert gate_e.startswith("FAIL grinder_reconcile_expected_heartbeat_age_seconds ")
    assert "expected_heartbeat_max_age_s=0.5 (control /status)" in gate_e
    assert "the bot stopped writing" in gate_e
    # Beating again: open.
    service.bot.recorder.heartbeat()
    again = service.grinder("gates", "--symbol", "BTCUSDT", "--order", order, "--json")
    assert again.returncode == 0, again.stdout
    assert json.loads(again.stdout)["outcome"] == "planned"


def test_gates_and_ceremony_without_a_service(tmp_path: Path, cli: Any) -> None:
    env = cli.env(runtime_dir=tmp_path)
    dead = f"http://127.0.0.1:{cli.free_port()}/metrics"

    def grinder(*args: str) -> subprocess.CompletedProcess[str]:
        return cli.run("grinder.cli", *args, env=env)

    gates = grinder("gates", "--symbol", "BTCUSDT", "--order", "grinder_d_BTCUSDT_1_1_1")
    assert gates.returncode == 2
    assert gates.stderr.startswith("grinder: error: --socket: no control socket at ")
    check = grinder("ceremony", "check", "--stage", "1", "--metrics-url", dead)
    assert check.returncode == 2
    assert check.stdout == ""
    (line,) = check.stderr.splitlines()
    assert line.startswith("grinder: error: --socket: no control socket at "), line
    assert line.endswith("never this shell's"), line
    usage = grinder("gates", "--symbol", "BTCUSDT")
    assert usage.returncode == 2
    assert "exactly one of --order" in usage.stderr


# --- a service on a simulator of the test's own: positions and plans to look at -------------


@dataclass
class VenueService(Service):
    sim_url: str = ""

    def sim(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            f"{self.sim_url}/_sim{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def position(self, symbol: str) -> dict[str, Any]:
        result: dict[str, Any] = call(str(self.socket), "GET", f"/position?symbol={symbol}")
        return result


@pytest.fixture
def venue_service(cli: Any, tmp_path: Path, recorder_bot: Any) -> Iterator[VenueService]:
    """``grinder sim serve`` and the service on it (``--venue-url``), as runbook 12 shows."""
    env = cli.env(scripts=True, runtime_dir=tmp_path / "run")
    sim_port, metrics_port = cli.free_port(), cli.free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    config = tmp_path / "grinder.toml"
    config.write_text(STAGE2.replace("dry_run = true", "dry_run = true\norder_grace_ms = 200"))
    procs: list[subprocess.Popen[bytes]] = []
    out = tmp_path / "service.out"
    bot = recorder_bot(tmp_path / "expected.db")
    try:
        sim_log = tmp_path / "sim.log"
        sim = subprocess.Popen(
            cli.sim_argv(sim_port, "BTCUSDT,ETHUSDT"),
            env=env,
            stdout=sim_log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(sim)
        cli.wait_http(f"{sim_url}/fapi/v1/ping", sim, sim_log)
        budget = tmp_path / "budget.json"
        svc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scripts.run_live_reconcile",
                "--venue-url",
                sim_url,
                "--metrics-port",
                str(metrics_port),
                "--config",
                str(config),
                "--log-file",
                str(tmp_path / "app.log"),
                "--expected-db",
                str(tmp_path / "expected.db"),
                "--reset-budget-state",
            ],
            cwd=REPO,
            env={**env, "BUDGET_STATE_PATH": str(budget)},
            stdout=out.open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(svc)
        base = f"http://127.0.0.1:{metrics_port}"
        cli.wait_http(f"{base}/readyz", svc, out)
        vs = VenueService(
            cli,
            tmp_path,
            env,
            f"{base}/metrics",
            tmp_path / "run" / "grinder" / "control.sock",
            budget,
            tmp_path / "app.log",
            config,
            bot,
            sim_url,
        )
        vs.sim("/walk", {"frozen": True})
        yield vs
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        bot.stop()
    assert procs[-1].returncode == 0, out.read_text(errors="replace")[-3000:]


def test_gates_flatten_takes_the_services_position_and_mark_price(
    venue_service: VenueService,
) -> None:
    svc = venue_service
    svc.sim("/mark", {"symbol": "ETHUSDT", "price": "3000"})
    svc.sim("/positions", {"symbol": "ETHUSDT", "quantity": "-0.05", "via": "set"})
    wait_until(lambda: svc.position("ETHUSDT")["positions"], "the service sees the position")
    assert svc.position("ETHUSDT")["positions"][0]["position_side"] == "BOTH"

    proc = svc.grinder("gates", "--symbol", "ETHUSDT", "--position", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # stage 2: action=cancel_all
    chain = json.loads(proc.stdout)
    assert chain["subject"] == "flatten ETHUSDT"
    assert chain["first_block"] == chain["gate_reason"] == "action_not_permitted"
    notional = next(c for c in chain["context"] if c.startswith("notional "))
    assert re.match(
        r"notional 150\.0*\d* USDT = \|-0\.050*\| x 3000\.?0* \(the service's observed "
        r"position; mark price from the service's venue \w+\)",
        notional,
    ), notional
    gate9 = next(c for c in chain["checks"] if c["gate"] == "9")
    assert gate9["verdict"] == "pass"

    # Explicit values win, one at a time.
    price = svc.grinder("gates", "--symbol", "ETHUSDT", "--position", "--price", "100")
    assert "= |-0.05" in price.stdout
    assert "| x 100 (the service's observed position; --price)" in price.stdout
    qty = svc.grinder("gates", "--symbol", "ETHUSDT", "--position", "--qty", "1")
    assert re.search(r"notional 3000\.?0* USDT = \|1\| x 3000\.?0* \(mark price from", qty.stdout)
    assert "First blocking gate: 1 action permitted" in qty.stdout

    # No position on the symbol: the chain for notional 0, and a note that it would be skipped.
    none = svc.grinder("gates", "--symbol", "BTCUSDT", "--position")
    assert none.returncode == 1
    assert "Note: the service sees no BTCUSDT position: a flatten would be skipped" in none.stdout

    # Hedge mode with both sides held: which one is a question only the operator answers.
    svc.sim("/positions", {"symbol": "ETHUSDT", "quantity": "0", "via": "set"})
    svc.sim("/position-mode", {"dualSidePosition": True})
    svc.sim("/positions", {"symbol": "ETHUSDT", "quantity": "0.2", "positionSide": "LONG"})
    svc.sim(
        "/positions",
        {"symbol": "ETHUSDT", "quantity": "-0.1", "positionSide": "SHORT", "via": "set"},
    )
    wait_until(
        lambda: len(svc.position("ETHUSDT")["positions"]) == 2,
        "the service sees both sides",
    )
    both = svc.grinder("gates", "--symbol", "ETHUSDT", "--position")
    assert both.returncode == 2
    assert both.stderr == (
        "grinder: error: --position: the service holds ETHUSDT LONG and SHORT positions "
        "(hedge mode): give --position-side LONG or SHORT\n"
    )
    short = svc.grinder(
        "gates", "--symbol", "ETHUSDT", "--position", "--position-side", "SHORT", "--json"
    )
    chain = json.loads(short.stdout)
    assert chain["subject"] == "flatten ETHUSDT SHORT"
    notional = next(c for c in chain["context"] if c.startswith("notional "))
    assert "= |-0.1" in notional


def test_plans_of_the_last_hour_are_counted_by_the_service(venue_service: VenueService) -> None:
    svc = venue_service
    order = "grinder_d_BTCUSDT_1_1704067200_9"
    svc.sim(
        "/orders",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "quantity": "0.002",
            "price": "20000",
            "timeInForce": "GTC",
            "clientOrderId": order,
        },
    )
    wait_until(
        lambda: (
            fetch_scrape(svc.metrics_url).value(
                "grinder_reconcile_action_planned_last_hour", action="cancel_all"
            )
            == 1
        ),
        "the orphan is planned",
    )
    assert svc.status()["planned_last_hour"] == {"cancel_all": 1, "flatten": 0}
    stage2 = svc.grinder("ceremony", "check", "--stage", "2")
    rate = item(stage2.stdout, "Planned actions not excessive (<= 10 per hour)")
    assert rate.startswith(
        "PASS 1 planned in the last hour (grinder_reconcile_action_planned_last_hour: "
        "cancel_all=1, flatten=0; the service started "
    ), rate
