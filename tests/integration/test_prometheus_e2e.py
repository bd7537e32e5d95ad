"""A real Prometheus server scrapes the service and evaluates the shipped alert rules.

Everything is real and on loopback: the simulator (``grinder sim serve``), the service against
it (``python3 -m scripts.run_live_reconcile --venue-url …``), and ``/usr/bin/prometheus`` from
Debian's ``prometheus`` package scraping the service with ``monitoring/alert_rules.yml`` loaded
as shipped (the file itself, by its path). Drift injected on the simulator (orphan orders of
ours) must show in Prometheus' own HTTP API: the mismatch alert without a ``for:``
(``GrinderReconcileMismatchSpike``) firing, and the one that waits five minutes
(``GrinderReconcileMismatchUnremediated``, ``for: 5m``) pending, its condition met.

Timing comes from Prometheus' own configuration only: ``scrape_interval`` and
``evaluation_interval`` of 1 s. No rule group of the shipped file sets an ``interval:`` of its
own (tests/unit/test_monitoring_assets.py keeps it so), so the global evaluation interval governs
every rule, here as in a deployment. The ``for:`` durations themselves (a pending alert becoming
firing) are covered by the promtool unit tests (``monitoring/alert_rules_test.yml``). Without the
prometheus binary the test fails in CI (``CI=true``) and is skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from grinder.exchange.simulator.client import SimControl

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "monitoring" / "alert_rules.yml"
WAIT_S = 60


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


class Procs:
    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.stoppers: list[Callable[[], None]] = []

    def start(self, name: str, argv: list[str], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, **kw)
        self.started.append((name, proc, log))
        return proc

    def stop(self) -> None:
        for _, proc, _ in reversed(self.started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for stop in self.stoppers:
            stop()


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    yield p
    p.stop()


def alerts(prom: str) -> dict[str, str]:
    """Alert name -> state (pending/firing), from Prometheus' HTTP API."""
    data = get_json(f"{prom}/api/v1/alerts")
    out: dict[str, str] = {}
    for a in data["data"]["alerts"]:
        name = a["labels"]["alertname"]
        if out.get(name) != "firing":
            out[name] = a["state"]
    return out


def test_injected_drift_fires_the_mismatch_alerts_in_a_real_prometheus(
    procs: Procs,
    tmp_path: Path,
    cli: Any,
    require_tool: Callable[[str, str], str],
    recorder_bot: Any,
) -> None:
    prometheus = require_tool("prometheus", "prometheus")
    env = cli.env(scripts=True, runtime_dir=tmp_path / "run")
    sim_port, metrics_port, prom_port = cli.free_port(), cli.free_port(), cli.free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim = procs.start(
        "sim",
        cli.sim_argv(sim_port, "BTCUSDT,ETHUSDT,SOLUSDT"),
        tmp_path / "sim.log",
        env=env,
    )
    cli.wait_http(f"{sim_url}/fapi/v1/ping", sim, tmp_path / "sim.log")
    config = tmp_path / "grinder.toml"
    config.write_text(
        "[reconcile]\norder_grace_ms = 300\nposition_grace_ms = 300\n\n"
        "[service]\nfull_pass_interval_s = 0.5\n"
    )
    bot = recorder_bot(tmp_path / "expected.db")  # the bot whose expected state it reads
    procs.stoppers.append(bot.stop)
    service = procs.start(
        "service",
        [
            sys.executable,
            "-m",
            "scripts.run_live_reconcile",
            "--venue-url",
            sim_url,
            "--expected-db",
            str(tmp_path / "expected.db"),
            "--config",
            str(config),
            "--metrics-port",
            str(metrics_port),
            "--reset-budget-state",
        ],
        tmp_path / "service.log",
        env={**env, "BUDGET_STATE_PATH": str(tmp_path / "budget.json")},
        cwd=REPO,
    )
    cli.wait_http(f"http://127.0.0.1:{metrics_port}/readyz", service, tmp_path / "service.log")

    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {json.dumps(str(RULES))}\n"
        "scrape_configs:\n  - job_name: grinder\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    prom = f"http://127.0.0.1:{prom_port}"
    server = procs.start(
        "prometheus",
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        tmp_path / "prometheus.log",
        cwd=tmp_path,
    )
    cli.wait_http(f"{prom}/-/ready", server, tmp_path / "prometheus.log")

    def wait_for(what: str, ok: Any) -> Any:
        deadline = time.monotonic() + WAIT_S
        last: Any = None
        while time.monotonic() < deadline:
            last = ok()
            if last:
                return last
            time.sleep(0.5)
        logs = "\n".join(
            f"--- {name}\n{log.read_text(errors='replace')[-1500:]}"
            for name, _, log in procs.started
        )
        raise AssertionError(f"{what} not reached in {WAIT_S} s (last: {last})\n{logs}")

    def scraped() -> bool:
        q = get_json(f"{prom}/api/v1/query?query=grinder_reconcile_runs_total")
        return len(q["data"]["result"]) == 1

    wait_for("the first scrape", scraped)
    time.sleep(2)  # a few evaluations of a clean account
    before = alerts(prom)
    assert "GrinderReconcileMismatchUnremediated" not in before, before
    assert "GrinderReconcileDown" not in before, before

    # Five orphan orders of ours: five incidents (a spike), standing, nothing remediates them.
    async def place_orphans() -> None:
        async with SimControl(sim_url) as ctl:
            for seq in range(1, 6):
                cid = f"grinder_d_BTCUSDT_1_1704067200_{seq}"
                await ctl.place_order("BTCUSDT", "BUY", "0.002", str(20000 + seq), cid)

    asyncio.run(place_orphans())

    # The shipped file is in force as written: its waits, and the global 1 s evaluation interval.
    groups = get_json(f"{prom}/api/v1/rules")["data"]["groups"]
    assert {g["name"]: g["interval"] for g in groups} == {"grinder-reconcile": 1, "grinder-ha": 1}
    waits = {r["name"]: r["duration"] for g in groups for r in g["rules"]}
    assert waits["GrinderReconcileMismatchSpike"] == 0
    assert waits["GrinderReconcileMismatchUnremediated"] == 300

    wanted = {
        "GrinderReconcileMismatchSpike": "firing",  # no for:
        "GrinderReconcileMismatchUnremediated": "pending",  # for: 5m, its condition met
    }

    def reached() -> dict[str, str] | None:
        now = alerts(prom)
        return now if all(now.get(a) == s for a, s in wanted.items()) else None

    state = wait_for("the spike firing and the unremediated mismatches pending", reached)
    assert "GrinderReconcileDown" not in state
    # The bot keeps the expected state: its heartbeat is seconds old, no alert.
    age = get_json(f"{prom}/api/v1/query?query=grinder_reconcile_expected_heartbeat_age_seconds")
    assert float(age["data"]["result"][0]["value"][1]) < 60
    assert "GrinderExpectedStateStale" not in state
    detail = get_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
    spike = next(a for a in detail if a["labels"]["alertname"] == "GrinderReconcileMismatchSpike")
    assert spike["labels"]["job"] == "grinder"
    assert spike["labels"]["severity"] == "warning"
    assert spike["annotations"]["runbook_url"] == (
        "docs/runbooks/11_RECONCILIATION_TRIAGE.md#mismatch-spike"
    )
    assert "new mismatch incidents in 10 minutes" in spike["annotations"]["description"]
    unremediated = next(
        a for a in detail if a["labels"]["alertname"] == "GrinderReconcileMismatchUnremediated"
    )
    assert unremediated["state"] == "pending"
    assert unremediated["labels"]["job"] == "grinder"
    assert unremediated["labels"]["severity"] == "warning"
    assert unremediated["annotations"]["runbook_url"] == (
        "docs/runbooks/11_RECONCILIATION_TRIAGE.md#mismatches-not-remediated"
    )
    assert "5 mismatch(es) have stood for 5 minutes" in unremediated["annotations"]["description"]

    # The ceremony checker sees the rules loaded and the service scraped (stage 4).
    check = cli.run(
        "grinder.cli",
        "ceremony",
        "check",
        "--stage",
        "4",
        "--prometheus-url",
        prom,
        "--json",
        env={**env, "BUDGET_STATE_PATH": str(tmp_path / "budget.json")},
    )
    items = {i["title"]: i for i in json.loads(check.stdout)["items"]}
    rules = items["Alert rules loaded in Prometheus"]
    assert rules["status"] == "PASS", rules
    assert rules["evidence"].startswith(f"{prom}: 20/20 GRINDER alerts loaded; firing now: ")
    assert "GrinderReconcileMismatchSpike" in rules["evidence"]
    assert "GrinderReconcileMismatchUnremediated" not in rules["evidence"]  # pending, not firing
    assert items["Prometheus scrapes this service"]["status"] == "PASS"
    assert check.returncode == 0, check.stdout
