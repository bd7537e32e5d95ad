"""A real Prometheus server scrapes the service and evaluates the shipped alert rules.

Everything is real and on loopback: the simulator (``grinder sim serve``), the service against
it (``python3 -m scripts.run_live_reconcile --venue-url …``), and ``/usr/bin/prometheus`` from
Debian's ``prometheus`` package scraping the service every second with the rules of
``monitoring/alert_rules.yml`` loaded. Drift injected on the simulator (orphan orders of ours)
must drive the mismatch alerts to ``firing``, as Prometheus' own HTTP API reports them.

Timing: the shipped rules wait (``for: 5m`` for an unremediated mismatch) and evaluate every
15 s. The test loads a copy in which every ``for:`` is ``0s`` and each group evaluates every
second — the expressions are byte for byte the shipped ones, so this proves they fire on the
service's real series; the ``for:`` durations themselves are covered by the promtool unit tests
(``monitoring/alert_rules_test.yml``). Without the prometheus binary the test fails in CI
(``CI=true``) and is skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import re
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

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "monitoring" / "alert_rules.yml"
WAIT_S = 60


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def fast_rules(shipped: str) -> str:
    """The shipped rules with ``for: 0s`` and a 1 s evaluation interval, expressions untouched."""
    text = re.sub(r"^(\s+)for:\s*\S+\s*$", r"\1for: 0s", shipped, flags=re.M)
    return re.sub(r"^(\s+)- name:\s*(\S+)\s*$", r"\1- name: \2\n\1  interval: 1s", text, flags=re.M)


def test_fast_rules_only_change_timing() -> None:
    shipped = RULES.read_text(encoding="utf-8")
    fast = fast_rules(shipped)
    strip = re.compile(r"^\s+(for|interval):.*\n", flags=re.M)
    assert strip.sub("", fast) == strip.sub("", shipped)
    assert fast.count("interval: 1s") == shipped.count("- name:")


class Procs:
    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen[bytes], Path]] = []

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
    procs: Procs, tmp_path: Path, cli: Any, require_tool: Callable[[str, str], str]
) -> None:
    prometheus = require_tool("prometheus", "prometheus")
    env = cli.env(scripts=True, runtime_dir=tmp_path / "run")
    sim_port, metrics_port, prom_port = cli.free_port(), cli.free_port(), cli.free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim = procs.start(
        "sim",
        [
            sys.executable,
            "-m",
            "grinder.cli",
            "sim",
            "serve",
            "--port",
            str(sim_port),
            "--symbols",
            "BTCUSDT,ETHUSDT,SOLUSDT",
        ],
        tmp_path / "sim.log",
        env=env,
    )
    cli.wait_http(f"{sim_url}/fapi/v1/ping", sim, tmp_path / "sim.log")
    config = tmp_path / "grinder.toml"
    config.write_text(
        "[reconcile]\norder_grace_ms = 300\nposition_grace_ms = 300\n\n"
        "[service]\nfull_pass_interval_s = 0.5\n"
    )
    service = procs.start(
        "service",
        [
            sys.executable,
            "-m",
            "scripts.run_live_reconcile",
            "--venue-url",
            sim_url,
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

    (tmp_path / "rules.yml").write_text(fast_rules(RULES.read_text(encoding="utf-8")))
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files:\n  - rules.yml\n"
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

    def firing() -> dict[str, str] | None:
        now = alerts(prom)
        wanted = ("GrinderReconcileMismatchUnremediated", "GrinderReconcileMismatchSpike")
        return now if all(now.get(a) == "firing" for a in wanted) else None

    state = wait_for("the mismatch alerts firing", firing)
    assert "GrinderReconcileDown" not in state
    detail = get_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
    unremediated = next(
        a for a in detail if a["labels"]["alertname"] == "GrinderReconcileMismatchUnremediated"
    )
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
    assert rules["evidence"].startswith(f"{prom}: 18/18 GRINDER alerts loaded; firing now: ")
    assert "GrinderReconcileMismatchUnremediated" in rules["evidence"]
    assert items["Prometheus scrapes this service"]["status"] == "PASS"
    assert check.returncode == 0, check.stdout
