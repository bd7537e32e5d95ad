"""Which gates block, and logs that do not flood: against a running service, as an operator sees it.

The service runs as runbooks 12 and 13 start it (``python3 -m scripts.run_live_reconcile`` on a
``grinder sim serve`` of the test's own, a bot keeping the expected state live, a log file and an
audit file); settings change through the control socket, drift and faults come through the
simulator's ``/_sim`` API, and what reaches the exchange is read from the simulator's write log.
Each case waits for a number of runs (``grinder_reconcile_runs_total``), never for a time.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from grinder.cli.control import call
from tests.support.ids import ours
from tests.support.wait import wait_until

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[2]
LIVE = """\
[reconcile]
dry_run = false
allow_active_remediation = true
order_grace_ms = 200
position_grace_ms = 200
{extra}

[service]
armed = true
full_pass_interval_s = 0.3
"""


@dataclass
class Deployment:
    """The simulator, the service on it, its files and its control socket."""

    tmp: Path
    sim_url: str
    metrics_url: str
    socket: Path
    log_file: Path
    audit_file: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def sim(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.sim_url}/_sim{path}",
            data=data,
            headers={"Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())

    def place(self, cid: str, symbol: str = "BTCUSDT") -> None:
        """A resting order of ours that the bot never recorded: an orphan."""
        side, qty, price = (
            ("BUY", "0.002", "20000") if symbol == "BTCUSDT" else ("SELL", "0.05", "9000")
        )
        body = {
            "symbol": symbol,
            "side": side,
            "type": "LIMIT",
            "quantity": qty,
            "price": price,
            "timeInForce": "GTC",
            "clientOrderId": cid,
        }
        self.sim("POST", "/orders", body)

    def cancels_sent(self, cid: str) -> list[dict[str, Any]]:
        """Every cancel of ``cid`` the venue received (whatever it answered)."""
        writes: list[dict[str, Any]] = self.sim("GET", "/writes")["writes"]
        return [w for w in writes if w["method"] == "DELETE" and w["clientOrderId"] == cid]

    def control_set(self, name: str, value: str) -> Any:
        return call(str(self.socket), "POST", "/set", {"field": name, "value": value})

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as resp:
            text = resp.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def runs(self) -> float:
        return self.value("grinder_reconcile_runs_total")

    def wait_runs(self, n: int, what: str) -> None:
        """Until ``n`` more runs have completed."""
        start = self.runs()
        wait_until(lambda: self.runs() >= start + n, f"{n} more runs ({what})", timeout_s=60)

    def lines(self, event: str, *, about: str | None = None) -> list[str]:
        """The log file's lines of ``event`` (that mention ``about``), as ``grep`` finds them."""
        text = self.log_file.read_text(encoding="utf-8", errors="replace")
        return [
            line
            for line in text.splitlines()
            if f" {event} " in line and (about is None or about in line)
        ]

    def audit(self, event: str, *, cid: str | None = None) -> list[dict[str, Any]]:
        if not self.audit_file.exists():
            return []
        records = [json.loads(x) for x in self.audit_file.read_text().splitlines()]
        return [
            r
            for r in records
            if r["event_type"] == event and (cid is None or r.get("client_order_id") == cid)
        ]


@pytest.fixture
def deploy(cli: Any, tmp_path: Path, recorder_bot: Any) -> Iterator[Callable[[str], Deployment]]:
    started: list[Deployment] = []
    bots: list[Any] = []

    def start(extra: str) -> Deployment:
        env = cli.env(scripts=True, runtime_dir=tmp_path / "run", ALLOW_MAINNET_TRADE="1")
        sim_port, metrics_port = cli.free_port(), cli.free_port()
        config = tmp_path / "grinder.toml"
        config.write_text(LIVE.format(extra=extra))
        dep = Deployment(
            tmp=tmp_path,
            sim_url=f"http://127.0.0.1:{sim_port}",
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
            socket=tmp_path / "run" / "grinder" / "control.sock",
            log_file=tmp_path / "app.log",
            audit_file=tmp_path / "audit.jsonl",
        )
        started.append(dep)
        bots.append(recorder_bot(tmp_path / "expected.db"))
        sim_log = tmp_path / "sim.log"
        sim = subprocess.Popen(
            cli.sim_argv(sim_port, "BTCUSDT,ETHUSDT"),
            env=env,
            stdout=sim_log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        dep.procs.append(sim)
        cli.wait_http(f"{dep.sim_url}/fapi/v1/ping", sim, sim_log)
        out = tmp_path / "service.out"
        svc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scripts.run_live_reconcile",
                "--venue-url",
                dep.sim_url,
                "--metrics-port",
                str(metrics_port),
                "--config",
                str(config),
                "--log-file",
                str(dep.log_file),
                "--audit-out",
                str(dep.audit_file),
                "--expected-db",
                str(tmp_path / "expected.db"),
                "--reset-budget-state",
            ],
            cwd=REPO,
            env={**env, "BUDGET_STATE_PATH": str(tmp_path / "budget.json")},
            stdout=out.open("wb"),
            stderr=subprocess.STDOUT,
        )
        dep.procs.append(svc)
        cli.wait_http(f"http://127.0.0.1:{metrics_port}/readyz", svc, out)
        dep.sim("POST", "/walk", {"frozen": True})
        return dep

    yield start
    for dep in started:
        for proc in reversed(dep.procs):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    for bot in bots:
        bot.stop()
    for dep in started:
        assert dep.procs[-1].returncode == 0, (dep.tmp / "service.out").read_text()[-3000:]


def blocked_by(line: str) -> str | None:
    m = re.search(r" blocked_by=(\S+)", line)
    return m.group(1) if m else None


def repeated_before(line: str) -> int:
    m = re.search(r" repeated_before=(\d+)", line)
    return int(m.group(1)) if m else 0


# --- which gate is blocking -------------------------------------------------------------------


def test_an_orphan_outside_the_whitelist_names_every_gate_once_per_change(
    deploy: Callable[[str], Deployment],
) -> None:
    """The operator's case: an orphan on a symbol outside the whitelist, while the cooldown of
    an earlier cancel runs. The counter's reason is the first gate (cooldown) only; the gauge,
    the log line and the audit name both, and the line is written once, not once per run."""
    dep = deploy('action = "cancel_all"\nsymbol_whitelist = ["ETHUSDT"]\ncooldown_seconds = 3600')
    first, orphan = ours(1, "ETHUSDT"), ours(2)
    dep.place(first, "ETHUSDT")
    wait_until(
        lambda: dep.value("grinder_reconcile_action_executed_total", action="cancel_all") == 1,
        "the whitelisted orphan cancelled (the cooldown starts)",
    )
    dep.place(orphan)
    wait_until(
        lambda: (
            dep.value("grinder_reconcile_action_blocked_candidates", reason="cooldown_not_elapsed")
            == 1
        ),
        "the new orphan blocked",
    )
    dep.wait_runs(8, "the orphan blocked run after run")

    # The contract's counter: by the first failing gate only, in every run.
    cooldown = dep.value("grinder_reconcile_action_blocked_total", reason="cooldown_not_elapsed")
    assert cooldown >= 8
    assert (
        dep.value("grinder_reconcile_action_blocked_total", reason="symbol_not_in_whitelist") == 0
    )
    # The true answer from the metrics alone: every gate that blocks the standing candidate.
    gauge = "grinder_reconcile_action_blocked_candidates"
    assert dep.value(gauge, reason="cooldown_not_elapsed") == 1
    assert dep.value(gauge, reason="symbol_not_in_whitelist") == 1
    assert dep.value(gauge, reason="not_armed") == 0
    # One line, naming both gates in the chain's order, however many runs it stood.
    (line,) = dep.lines("REMEDIATION_BLOCKED", about=orphan)
    assert " reason=cooldown_not_elapsed " in line
    assert blocked_by(line) == "cooldown_not_elapsed,symbol_not_in_whitelist"
    (record,) = dep.audit("REMEDIATE_RESULT", cid=orphan)
    assert record["blocked_by"] == ["cooldown_not_elapsed", "symbol_not_in_whitelist"]
    assert record["block_reason"] == "cooldown_not_elapsed"
    assert len(dep.audit("REMEDIATE_ATTEMPT", cid=orphan)) == 1
    repeated = sum(r["repeated_results"] for r in dep.audit("RECONCILE_RUN"))
    assert repeated >= 6

    # The operator fixes the whitelist: cooldown is the only block left, a new line says so.
    dep.control_set("symbol_whitelist", "ETHUSDT,BTCUSDT")
    wait_until(lambda: dep.value(gauge, reason="symbol_not_in_whitelist") == 0, "whitelist open")
    dep.wait_runs(5, "the orphan blocked by the cooldown alone")
    assert dep.value(gauge, reason="cooldown_not_elapsed") == 1
    before, after = dep.lines("REMEDIATION_BLOCKED", about=orphan)
    assert before == line
    assert blocked_by(after) == "cooldown_not_elapsed"
    assert repeated_before(after) >= 7
    results = dep.audit("REMEDIATE_RESULT", cid=orphan)
    assert [r["blocked_by"] for r in results] == [
        ["cooldown_not_elapsed", "symbol_not_in_whitelist"],
        ["cooldown_not_elapsed"],
    ]
    assert results[1]["repeated_before"] == repeated_before(after)
    assert len(dep.audit("REMEDIATE_ATTEMPT", cid=orphan)) == 2

    # Every gate open: the orphan is cancelled, once; nothing stands blocked.
    dep.control_set("cooldown_seconds", "0")
    wait_until(
        lambda: dep.value("grinder_reconcile_action_executed_total", action="cancel_all") == 2,
        "the orphan cancelled",
    )
    dep.wait_runs(3, "after the cancel")
    assert dep.value(gauge, reason="cooldown_not_elapsed") == 0
    assert len(dep.lines("REMEDIATION_EXECUTED", about=orphan)) == 1
    assert len(dep.lines("REMEDIATION_BLOCKED", about=orphan)) == 2
    assert len(dep.cancels_sent(orphan)) == 1
    assert len(dep.cancels_sent(first)) == 1
    # The runbook's command shows the gauge beside the counter.
    with urllib.request.urlopen(dep.metrics_url, timeout=10) as resp:
        grep = [x for x in resp.read().decode().splitlines() if "action_blocked" in x]
    assert any(x.startswith("grinder_reconcile_action_blocked_candidates{") for x in grep)
    assert any(x.startswith("grinder_reconcile_action_blocked_total{") for x in grep)


# --- a 418 ban: failed once per incident and per change, not per run ------------------------


def test_a_418_ban_logs_each_failed_cancel_once_per_incident_and_change(
    deploy: Callable[[str], Deployment],
) -> None:
    dep = deploy('action = "cancel_all"\nsymbol_whitelist = ["BTCUSDT"]\ncooldown_seconds = 0')
    dep.sim("POST", "/faults/ban", {"seconds": 3600})
    x, y = ours(11), ours(12)
    dep.place(x)  # the stream tells the service; its REST requests meet the ban
    failed = "grinder_reconcile_action_failed_total"
    wait_until(
        lambda: dep.value(failed, action="cancel_all", reason="port_error") >= 1, "a failed cancel"
    )
    dep.wait_runs(8, "the cancel failing run after run")
    # The counter counts every run; the log and the audit say it once.
    assert dep.value(failed, action="cancel_all", reason="port_error") >= 8
    (line,) = dep.lines("REMEDIATION_FAILED", about=x)
    assert " error_type=IpBanned " in line
    assert len(dep.audit("REMEDIATE_RESULT", cid=x)) == 1
    assert len(dep.audit("REMEDIATE_ATTEMPT", cid=x)) == 1
    # What reached the exchange: at most the one request that met the ban first.
    assert len(dep.cancels_sent(x)) <= 1

    # A second orphan is a second incident: its own line, once.
    dep.place(y)
    wait_until(lambda: dep.lines("REMEDIATION_FAILED", about=y), "the second orphan's line")
    dep.wait_runs(5, "both failing")
    assert len(dep.lines("REMEDIATION_FAILED", about=x)) == 1
    assert len(dep.lines("REMEDIATION_FAILED", about=y)) == 1

    # The reason changes (the operator's rollback, then its lift): one line per change each.
    dep.control_set("action", "none")
    wait_until(
        lambda: len(dep.lines("REMEDIATION_BLOCKED", about=y)) == 1, "the rollback's block line"
    )
    dep.wait_runs(4, "blocked by the rollback")
    call(str(dep.socket), "POST", "/lift", {"name": "action-none"})
    wait_until(lambda: len(dep.lines("REMEDIATION_FAILED", about=y)) == 2, "failing again")
    dep.wait_runs(4, "failing again")
    for cid in (x, y):
        blocked = dep.lines("REMEDIATION_BLOCKED", about=cid)
        assert [blocked_by(b) for b in blocked] == ["action_is_none"]
        _first, again = dep.lines("REMEDIATION_FAILED", about=cid)
        assert " error_type=IpBanned " in again
        assert repeated_before(again) >= 3  # the runs the block stood
        assert [r["status"] for r in dep.audit("REMEDIATE_RESULT", cid=cid)] == [
            "FAILED",
            "BLOCKED",
            "FAILED",
        ]
    sent = len(dep.cancels_sent(x)) + len(dep.cancels_sent(y))
    assert sent <= 1
    print(
        f"\n418 ban: {dep.value(failed, action='cancel_all', reason='port_error'):.0f} failed "
        f"cancels counted, {len(dep.lines('REMEDIATION_FAILED'))} REMEDIATION_FAILED lines, "
        f"{sent} request(s) reached the venue, "
        f"{dep.value('grinder_reconcile_budget_calls_used_day'):.0f} budget calls spent"
    )


# --- the volume of the log over many standing mismatches --------------------------------------


def test_many_standing_mismatches_log_a_line_each_not_a_line_each_per_run(
    deploy: Callable[[str], Deployment],
) -> None:
    """Passive mode (action none, runbook 13's stage 1), 40 orphans and a hand position: every
    candidate is blocked and the position skipped in every run. Over 20 runs the log grows by
    the runs' own lines only."""
    dep = deploy('action = "none"\nsymbol_whitelist = ["BTCUSDT"]')
    orphans = [ours(100 + n) for n in range(40)]
    for cid in orphans:
        dep.place(cid, "BTCUSDT")
    dep.sim("POST", "/positions", {"symbol": "ETHUSDT", "quantity": "0.05"})
    gauge = "grinder_reconcile_action_blocked_candidates"
    wait_until(lambda: dep.value(gauge, reason="action_is_none") == 40, "every orphan blocked")
    wait_until(lambda: dep.lines("REMEDIATE_SKIP"), "the position skipped")
    dep.wait_runs(1, "a whole run with all of them")
    lines_before = len(dep.log_file.read_text().splitlines())
    runs_before = dep.runs()
    counted_before = dep.value("grinder_reconcile_action_blocked_total", reason="action_is_none")
    audit_before = len(dep.audit_file.read_text().splitlines())
    dep.wait_runs(20, "40 orphans and a position standing")

    runs = dep.runs() - runs_before
    counted = dep.value("grinder_reconcile_action_blocked_total", reason="action_is_none")
    assert counted - counted_before >= 40 * runs  # the counter: every candidate, every run
    lines = dep.log_file.read_text().splitlines()
    new = lines[lines_before:]
    assert new, "no run logged"
    assert all(" RECONCILE_RUN " in x for x in new), [x for x in new if "RECONCILE_RUN" not in x]
    blocked = dep.lines("REMEDIATION_BLOCKED")
    cids = sorted(re.sub(r".* client_order_id=(\S+) .*", r"\1", x) for x in blocked)
    assert cids == sorted(orphans)
    (skip,) = dep.lines("REMEDIATE_SKIP")
    assert "reason=other_action_this_run" in skip
    assert "type=POSITION_NONZERO_UNEXPECTED" in skip
    audit = dep.audit_file.read_text().splitlines()
    assert all('"event_type":"RECONCILE_RUN"' in x for x in audit[audit_before:])
    assert len(dep.audit("REMEDIATE_RESULT")) == 40
    assert len(dep.audit("REMEDIATE_ATTEMPT")) == 40
    print(
        f"\n{runs:.0f} runs over 40 blocked orphans and 1 skipped position: the log grew by "
        f"{len(new)} lines (RECONCILE_RUN only; {len(lines)} in all, {len(blocked)} "
        f"REMEDIATION_BLOCKED); one line per candidate and run would have added "
        f"{counted - counted_before:.0f} REMEDIATION_BLOCKED and {runs:.0f} REMEDIATE_SKIP lines"
    )
