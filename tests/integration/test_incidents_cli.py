"""``grinder incidents list | show | ack`` as an operator runs them (subprocesses).

On a ledger file (``--ledger-db``) and against a running service (its control socket).
Bad input of every kind -- an unknown id, a corrupt ledger, a damaged record, an ack with
no note, a ``--since`` that is no time, two ledgers named -- is one line on stderr, exit 2,
and the ledger file unchanged to the byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from grinder.budget.stores import FileBudgetStore
from grinder.budget.tracker import BudgetTracker
from grinder.clock import wall_clock_ms
from grinder.config_sources import RuntimeEnv
from grinder.exchange.simulator.client import SimControl
from grinder.incidents import ledger as core
from grinder.incidents.causes import CauseVerdict
from grinder.incidents.records import Evidence, IncidentRecord
from grinder.incidents.sqlite_store import SqliteIncidentStore
from grinder.reconcile.actions import ActionResult
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.labels import IncidentCause, Mode, ResultStatus
from grinder.reconcile.routing import ActionKind
from grinder.reporting.audit import AuditWriter
from grinder.service.app import ReconcileService
from grinder.service.options import ServiceConfig, ServiceOptions
from grinder.service.running import RunningService
from grinder.service.venue import credentials_for
from tests.support.mismatches import ORPHAN, UNEXPECTED_POSITION
from tests.support.wait import wait_until_async

pytestmark = pytest.mark.subprocess

POSITION = UNEXPECTED_POSITION


def ledger_file(tmp: Path) -> tuple[Path, IncidentRecord, IncidentRecord]:
    """A ledger with an open incident (manual, one blocked step) and one cleared 3 hours ago."""
    path = tmp / "incidents.db"
    now = wall_clock_ms()
    store = SqliteIncidentStore(path)
    manual = CauseVerdict(
        IncidentCause.MANUAL,
        (Evidence("fill", "BUY 0.05 ETHUSDT BOTH by web_abc", now - 60_000, ()),),
    )
    open_rec = core.opened(POSITION, now - 50_000, "run-1", manual)
    blocked = ActionResult(
        run_id="run-1",
        kind=ActionKind.FLATTEN,
        mismatch=POSITION,
        status=ResultStatus.BLOCKED,
        mode=Mode.DRY_RUN,
        reason="action_is_none",
        ts_ms=now - 50_000,
    )
    open_rec = core.with_step(open_rec, core.step_of(blocked))
    old = core.opened(ORPHAN, now - 4 * 3_600_000, "run-0", CauseVerdict(IncidentCause.UNKNOWN))
    old = core.cleared(old, now - 3 * 3_600_000)
    for rec in (open_rec, old):
        store.open_or_adopt(rec)
        store.put(rec)
    store.close()
    return path, open_rec, old


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def grinder(cli: Any, tmp: Path, *args: str) -> Any:
    return cli.run("grinder.cli", "incidents", *args, env=cli.env(runtime_dir=tmp))


def one_error_line(proc: Any, text: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("grinder: error: "), lines
    assert text in lines[0], lines[0]


def test_list_show_and_ack_on_a_ledger_file(cli: Any, tmp_path: Path) -> None:
    path, open_rec, old = ledger_file(tmp_path)
    listed = grinder(cli, tmp_path, "list", "--ledger-db", str(path))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "OPENED", "(UTC)"]
    assert lines[1].startswith(open_rec.id)
    assert re.search(r"  open (\d+s|\d+m\d\ds)  ", lines[1]), lines[1]  # opened ~50 s ago
    assert "manual" in lines[1]
    assert lines[2].startswith(old.id)
    assert "cleared after 1h00m" in lines[2]
    assert lines[3].startswith("2 incident(s), 1 open (1 not acknowledged)")

    only_open = json.loads(
        grinder(cli, tmp_path, "list", "--open", "--json", "--ledger-db", str(path)).stdout
    )
    assert [i["id"] for i in only_open["incidents"]] == [open_rec.id]
    recent = json.loads(
        grinder(cli, tmp_path, "list", "--since", "2h", "--json", "--ledger-db", str(path)).stdout
    )
    assert [i["id"] for i in recent["incidents"]] == [open_rec.id]

    shown = grinder(cli, tmp_path, "show", open_rec.id, "--ledger-db", str(path))
    assert shown.returncode == 0, shown.stderr
    assert "cause:     manual" in shown.stdout
    assert "[fill " in shown.stdout
    assert "by web_abc" in shown.stdout
    assert "BLOCKED flatten dry_run gates=action_is_none" in shown.stdout
    assert "ack:       not acknowledged" in shown.stdout

    acked = grinder(
        cli,
        tmp_path,
        "ack",
        open_rec.id,
        "--note",
        "manual buy, sold by hand",
        "--by",
        "oncall",
        "--ledger-db",
        str(path),
    )
    assert acked.returncode == 0, acked.stderr
    assert acked.stdout.startswith(f"{open_rec.id} acknowledged by oncall at ")
    whole = json.loads(
        grinder(cli, tmp_path, "show", open_rec.id, "--json", "--ledger-db", str(path)).stdout
    )
    assert whole["ack"]["note"] == "manual buy, sold by hand"
    assert whole["steps"][0]["gates"] == ["action_is_none"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "INC-NOSUCHONE"], "no incident 'INC-NOSUCHONE'"),
        (["ack", "INC-NOSUCHONE", "--note", "x"], "no incident 'INC-NOSUCHONE'"),
        (["ack", "{open}", "--note", "   "], "--note: an acknowledgement needs a note"),
        (["ack", "{open}"], "Missing option '--note'"),
        (["ack", "{open}", "--note", "x", "--by", " "], "--by: who acknowledges must not be empty"),
        (["list", "--since", "yesterday-ish"], "--since: expected a duration"),
        (["list", "--redis-url", "redis://127.0.0.1:1/0"], "--ledger-db and --redis-url"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_the_ledger_unchanged(
    cli: Any, tmp_path: Path, args: list[str], message: str
) -> None:
    path, open_rec, _old = ledger_file(tmp_path)
    before = digest(path)
    argv = [a.replace("{open}", open_rec.id) for a in args]
    one_error_line(grinder(cli, tmp_path, *argv, "--ledger-db", str(path)), message)
    assert digest(path) == before


def test_a_corrupt_or_missing_ledger_is_one_line_and_left_as_it_is(
    cli: Any, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a ledger at all\n" * 300)
    before = digest(garbage)
    for args in (["list"], ["show", "INC-X"], ["ack", "INC-X", "--note", "n"]):
        one_error_line(
            grinder(cli, tmp_path, *args, "--ledger-db", str(garbage)),
            f"--ledger-db: incident ledger {garbage}: is not a SQLite database",
        )
    assert digest(garbage) == before
    missing = tmp_path / "nope.db"
    one_error_line(
        grinder(cli, tmp_path, "list", "--ledger-db", str(missing)), "no incident ledger at"
    )
    assert not missing.exists()


def test_a_damaged_record_is_named_and_nothing_else_changes(cli: Any, tmp_path: Path) -> None:
    path, open_rec, old = ledger_file(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE incidents SET record = '{\"v\": 1}' WHERE id = ?", (old.id,))
    before = digest(path)
    one_error_line(
        grinder(cli, tmp_path, "show", old.id, "--ledger-db", str(path)),
        f"incident ledger {path}: field 'id'",
    )
    assert grinder(cli, tmp_path, "show", open_rec.id, "--ledger-db", str(path)).returncode == 0
    assert digest(path) == before


# --- against a running service --------------------------------------------------------------------


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[RunningService]:
    cfg = ReconcileConfig(order_grace_ms=500, position_grace_ms=300)
    opts = ServiceOptions(
        venue="sim",
        metrics_port=0,
        env=RuntimeEnv.from_env({}),
        reconcile=cfg,
        service=ServiceConfig(full_pass_interval_s=0.5, sim_symbols=["BTCUSDT", "ETHUSDT"]),
        ledger_db=tmp_path / "incidents.db",
    )
    svc = ReconcileService(
        opts,
        credentials=credentials_for("sim"),
        budget=BudgetTracker(config=cfg, store=FileBudgetStore(tmp_path / "budget.json")),
        audit=AuditWriter(tmp_path / "audit.jsonl"),
        control_socket=tmp_path / "run" / "grinder" / "control.sock",
        env={},
    )
    running = await svc.start()
    assert await running.stream.wait_live(5)  # the fill's event must reach the evidence
    task = asyncio.create_task(running.loop.run_until_stopped())
    yield running
    svc.request_stop()
    await asyncio.wait_for(task, 10)
    await svc.close()


async def test_the_commands_against_the_running_service(
    cli: Any, tmp_path: Path, service: RunningService
) -> None:
    assert service.venue.sim is not None
    ctl = SimControl(service.venue.sim.base_url)
    await ctl.call(
        "POST", "/positions", {"symbol": "ETHUSDT", "quantity": "0.05", "clientOrderId": "web_x1"}
    )
    await ctl.close()
    ledger = service.ledger
    await wait_until_async(lambda: ledger.open_records(), "an incident open")
    (rec,) = ledger.open_records()

    def run(*args: str) -> Any:
        return grinder(cli, tmp_path / "run", *args)  # XDG_RUNTIME_DIR: the default socket

    listed = await asyncio.to_thread(run, "list", "--open")
    assert listed.returncode == 0, listed.stderr
    assert rec.id in listed.stdout
    assert "manual" in listed.stdout
    assert f"incident ledger {tmp_path / 'incidents.db'}" in listed.stdout
    unknown = await asyncio.to_thread(run, "ack", "INC-NOSUCHONE", "--note", "x")
    one_error_line(unknown, "no incident 'INC-NOSUCHONE'")
    acked = await asyncio.to_thread(run, "ack", rec.id, "--note", "sold by hand", "--by", "oncall")
    assert acked.returncode == 0, acked.stderr
    shown = json.loads((await asyncio.to_thread(run, "show", rec.id, "--json")).stdout)
    assert shown["ack"]["by"] == "oncall"
    assert shown["cause"] == "manual"
    after = await asyncio.to_thread(run, "list")
    assert "oncall" in after.stdout


# --- the service refuses a ledger it cannot use, before it starts ---------------------------------


@pytest.mark.parametrize("via", ["flag", "env"])
def test_the_service_refuses_a_corrupt_ledger_file_and_leaves_it_as_it_is(
    cli: Any, tmp_path: Path, via: str
) -> None:
    garbage = tmp_path / "incidents.db"
    garbage.write_bytes(b"not a ledger\n" * 400)
    before = digest(garbage)
    args = ["reconcile", "--venue", "sim", "--metrics-port", "0", "--duration", "1"]
    extra = {"GRINDER_LEDGER_DB": str(garbage)} if via == "env" else {}
    if via == "flag":
        args += ["--ledger-db", str(garbage)]
    proc = cli.run("grinder.cli", *args, env=cli.env(runtime_dir=tmp_path / "run", **extra))
    where = "--ledger-db" if via == "flag" else "GRINDER_LEDGER_DB"
    one_error_line(proc, f"{where}: incident ledger {garbage}: is not a SQLite database")
    assert digest(garbage) == before


def test_the_service_refuses_a_ledger_file_with_ha(cli: Any, tmp_path: Path) -> None:
    proc = cli.run(
        "grinder.cli",
        "reconcile",
        "--venue",
        "sim",
        "--ledger-db",
        str(tmp_path / "incidents.db"),
        "--redis-url",
        "redis://127.0.0.1:1/0",
        env=cli.env(runtime_dir=tmp_path / "run"),
    )
    one_error_line(proc, "--ledger-db: with HA (a Redis URL) the incident ledger is kept in Redis")
    assert not (tmp_path / "incidents.db").exists()
