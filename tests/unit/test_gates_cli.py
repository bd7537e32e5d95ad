"""grinder gates: gate 6 from the anchors the service's executor uses, and what a flatten needs
from a service that cannot supply it (a control socket answering only ``/status``).

The gate inputs are built from the service's readings by ``gate_inputs_from``, the
executor's own function; ``first_block`` over them is what ``RemediationExecutor.gate``
returns over such inputs."""

from __future__ import annotations

import http.server
import json
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest

import grinder.cli.gates_flatten as gates_module
from grinder.ceremony.sources import parse_scrape
from grinder.cli.errors import run_command
from grinder.cli.gates_reading import read_service
from grinder.cli.main import cli
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.explain import Verdict, explanation_of
from grinder.reconcile.gate_inputs import ProposedWrite
from grinder.reconcile.gates import first_block
from grinder.reconcile.labels import BlockReason
from grinder.reconcile.routing import ActionKind

NOW = 1_704_110_400_000
OURS = "grinder_d_BTCUSDT_1_1704067200_1"
CANCEL_OURS = ProposedWrite(ActionKind.CANCEL, "BTCUSDT", OURS, Decimal(0))


def service_status(**extra: Any) -> dict[str, Any]:
    config = ReconcileConfig(
        action="cancel_all",
        dry_run=False,
        allow_active_remediation=True,
        symbol_whitelist=["BTCUSDT"],
        cooldown_seconds=60,
    ).summary()
    return {
        "venue": "sim",
        "mode": "live",
        "armed": True,
        "allow_mainnet_trade": True,
        "symbol_whitelist": ["BTCUSDT"],
        "config": config,
        "budget": {"calls_used_day": 0, "notional_used_day": "0"},
        "last_remediation_ts_ms": None,
        "last_planned_ts_ms": None,
        "expected": LIVE_BOT,
        **extra,
    }


# The expected state as a service whose bot heartbeats reports it (gate E).
LIVE_BOT: dict[str, Any] = {
    "source": "sqlite",
    "where": "expected-state file /var/lib/grinder/expected.db",
    "heartbeat_age_s": 2.5,
    "max_age_s": 60.0,
    "live": True,
    "detail": "bot heartbeat 2.5 s ago <= expected_heartbeat_max_age_s 60 s",
    "hint": None,
}


# This instance never wrote: its own gauge says 0. Another instance (HA) wrote 10 s ago.
SCRAPE = parse_scrape(
    "http://127.0.0.1:9090/metrics",
    "grinder_ha_is_leader 1\ngrinder_reconcile_last_remediation_ts_ms 0\n"
    "grinder_reconcile_budget_calls_used_day 0\ngrinder_reconcile_budget_notional_used_day 0\n",
)


def test_gate_6_runs_from_the_anchor_the_service_reports_not_from_the_local_gauge() -> None:
    status = service_status(
        cooldown={
            "seconds": 60.0,
            "source": "redis",
            "live_anchor_ts_ms": NOW - 10_000,
            "dry_run_anchor_ts_ms": NOW - 10_000,
        }
    )
    reading = read_service(status, SCRAPE, NOW)
    notes = reading.notes
    exp = explanation_of(reading.gate_inputs(CANCEL_OURS))
    gate6 = next(c for c in exp.checks if c.gate == "6")
    assert gate6.verdict is Verdict.FAIL
    assert gate6.detail == "10.0 s since the last remediation (cooldown 60 s, 50.0 s left)"
    assert exp.first_block is BlockReason.COOLDOWN_NOT_ELAPSED
    assert first_block(reading.gate_inputs(CANCEL_OURS)) is (BlockReason.COOLDOWN_NOT_ELAPSED)
    assert not any("cooldown" in n for n in notes)


def test_a_service_without_the_anchors_is_read_from_its_gauge_with_a_warning() -> None:
    reading = read_service(service_status(), SCRAPE, NOW)
    notes = reading.notes
    assert reading.run.live_anchor_ms is None
    exp = explanation_of(reading.gate_inputs(CANCEL_OURS))
    assert exp.first_block is None
    assert any("another instance's write may hold it closed" in n for n in notes)


def test_gate_e_comes_from_the_heartbeat_age_the_service_reports() -> None:
    never = {**LIVE_BOT, "heartbeat_age_s": None, "live": False, "hint": "no bot heartbeat"}
    reading = read_service(service_status(expected=never), SCRAPE, NOW)
    notes = list(reading.notes)
    exp = explanation_of(reading.gate_inputs(CANCEL_OURS))
    assert exp.first_block is BlockReason.EXPECTED_STATE_STALE
    assert first_block(reading.gate_inputs(CANCEL_OURS)) is (BlockReason.EXPECTED_STATE_STALE)
    assert notes == [
        "the service does not report its cooldown anchors: gate 6 evaluated from this "
        "instance's grinder_reconcile_last_remediation_ts_ms (with HA, another instance's "
        "write may hold it closed)"
    ]
    stale = {**LIVE_BOT, "heartbeat_age_s": 75.0, "live": False}
    reading = read_service(service_status(expected=stale), SCRAPE, NOW)
    gate_e = next(
        c for c in explanation_of(reading.gate_inputs(CANCEL_OURS)).checks if c.gate == "E"
    )
    assert (gate_e.verdict, gate_e.reason) == (Verdict.FAIL, BlockReason.EXPECTED_STATE_STALE)
    assert gate_e.detail.startswith("bot heartbeat 75.0 s ago > expected_heartbeat_max_age_s 60 s")


def test_a_service_that_does_not_report_the_heartbeat_is_read_from_its_gauge_or_blocks() -> None:
    status = service_status()
    del status["expected"]
    gauge = parse_scrape(
        "http://127.0.0.1:9090/metrics",
        "grinder_ha_is_leader 1\ngrinder_reconcile_expected_heartbeat_age_seconds 3\n",
    )
    reading = read_service(status, gauge, NOW)
    notes = reading.notes
    assert first_block(reading.gate_inputs(CANCEL_OURS)) is None
    assert any("gate E from grinder_reconcile_expected_heartbeat_age_seconds" in n for n in notes)
    reading = read_service(status, SCRAPE, NOW)
    notes = reading.notes
    assert first_block(reading.gate_inputs(CANCEL_OURS)) is (BlockReason.EXPECTED_STATE_STALE)
    assert any("gate E evaluated as never written" in n for n in notes)


# --- a service that reports no position (a control socket with /status only) ------------------


class _StatusOnly(http.server.BaseHTTPRequestHandler):
    status: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        if self.path == "/status":
            body, code, kind = json.dumps(self.status).encode(), 200, "application/json"
        else:
            body, code, kind = b"404: Not Found", 404, "text/plain"
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *_: Any) -> None:
        pass


class _UnixHttpServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def older_service(cli_port: int) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="gates-", dir="/tmp"))  # short: a socket path
    path = directory / "control.sock"
    _StatusOnly.status = service_status(
        metrics_url=f"http://127.0.0.1:{cli_port}/metrics",  # nothing listens there
        mode="dry_run",
        config={**service_status()["config"], "dry_run": True, "action": "flatten"},
    )
    server = _UnixHttpServer(str(path), _StatusOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def cli_port(cli: Any) -> int:
    port: int = cli.free_port()
    return port


def gates(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_command(cli, ["gates", *args], prog_name="grinder")
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_flatten_without_values_the_service_cannot_supply_is_one_line_exit_2(
    older_service: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = str(older_service)
    code, out, err = gates(capsys, "--symbol", "BTCUSDT", "--position", "--socket", sock)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(
        "grinder: error: --position needs --notional, or --qty with --price or --venue-url: "
        "the service does not report its position (control /position?symbol=BTCUSDT: HTTP 404"
    )
    code, out, err = gates(
        capsys, "--symbol", "BTCUSDT", "--position", "--qty", "0.01", "--socket", sock
    )
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith(
        "grinder: error: --qty needs --price or --venue-url (to read the mark price): "
        "the service does not report one (control /position?symbol=BTCUSDT: HTTP 404"
    )


def test_explicit_values_need_nothing_from_the_service(
    older_service: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = gates(
        capsys,
        "--symbol",
        "BTCUSDT",
        "--position",
        "--qty",
        "0.01",
        "--price",
        "60000",
        "--socket",
        str(older_service),
    )
    assert code == 1, err  # 600 USDT > max_flatten_notional_usdt 500
    assert "notional 600.00 USDT = |0.01| x 60000 (--price)" in out
    assert "First blocking gate: 9 flatten notional — reason notional_exceeds_limit" in out


def test_a_service_too_slow_to_answer_is_one_line_exit_2_not_a_blocking_gate(
    older_service: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def too_slow(*_: Any) -> Any:
        raise TimeoutError

    monkeypatch.setattr("grinder.cli.control._call", too_slow)
    sock = str(older_service)
    code, out, err = gates(capsys, "--symbol", "BTCUSDT", "--position", "--socket", sock)
    assert code == 2  # 1 would read as "a gate blocks"
    assert out == ""
    assert err.count("\n") == 1
    assert "did not answer GET /status in time" in err


def _answer_position(monkeypatch: pytest.MonkeyPatch, **answer: Any) -> None:
    """The service's ``/position`` answer; ``/status`` still from the fixture's socket."""
    real = gates_module.call

    def call(socket: str | None, method: str, route: str, body: Any = None) -> Any:
        if route.startswith("/position"):
            return {"symbol": "BTCUSDT", "mark_price": "60000", "venue": "sim", **answer}
        return real(socket, method, route, body)

    monkeypatch.setattr(gates_module, "call", call)


def test_a_service_without_a_snapshot_yet_does_not_pass_for_one_without_a_position(
    older_service: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _answer_position(monkeypatch, positions=[], snapshot_age_s=None, step_size="0.001")
    sock = str(older_service)
    code, _, err = gates(capsys, "--symbol", "BTCUSDT", "--position", "--socket", sock)
    assert code == 2
    assert err.count("\n") == 1
    assert "the service has no snapshot yet" in err


def test_the_services_position_is_rounded_down_to_the_step_as_a_flatten_would_be(
    older_service: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    held = [{"position_side": "BOTH", "qty": "0.0129"}]
    _answer_position(monkeypatch, positions=held, snapshot_age_s=1.5, step_size="0.001")
    sock = str(older_service)
    _, out, _ = gates(capsys, "--symbol", "BTCUSDT", "--position", "--socket", sock)
    assert "|0.012| x 60000" in out
    assert "0.0129 rounded down to the step 0.001" in out


def test_the_chain_shows_gate_e_and_how_to_open_it(
    older_service: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hint = "no bot heartbeat in the file: no bot has written it since heartbeats exist"
    _StatusOnly.status = {
        **_StatusOnly.status,
        "expected": {**LIVE_BOT, "heartbeat_age_s": None, "live": False, "hint": hint},
    }
    code, out, _ = gates(
        capsys, "--symbol", "BTCUSDT", "--order", OURS, "--socket", str(older_service)
    )
    assert code == 1
    lines = out.splitlines()
    (row,) = [x for x in lines if x.startswith("  E ")]
    assert "expected state live" in row
    assert "FAIL" in row
    assert "never written by a bot" in row
    assert "First blocking gate: E expected state live — reason expected_state_stale" in lines
    assert (
        "  to open it: run the bot: it must write the expected state the service reads and call "
        "heartbeat() at least every expected_heartbeat_max_age_s (docs/EXPECTED_STATE.md)"
    ) in lines
    assert (
        "  expected state: expected-state file /var/lib/grinder/expected.db (sqlite), via "
        f"/status; {hint}"
    ) in lines
    assert "RemediationExecutor.gate: expected_state_stale" in lines
