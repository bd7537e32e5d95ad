"""What the service checks before it starts: seconds, bounds, empty values, paths."""

from __future__ import annotations

import errno
import math
import socket
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import click
import pytest

from grinder.cli.errors import EXIT_USAGE, run_command
from grinder.cli.main import cli
from grinder.cli.options import Seconds
from grinder.cli.reconcile import reconcile, service_options
from grinder.cli.service_params import parse, run_params
from grinder.reconcile.config import MAX_SECONDS, ConfigError
from grinder.service.artifacts import clean_old_days
from grinder.service.control import MAX_SOCKET_PATH, check_socket_path
from grinder.service.httpd import listen_error
from grinder.service.options import load_config_file
from grinder.service.preflight import check_expected_db, check_output_file
from grinder.service.state import open_expected
from grinder.state.recorder import ExpectedRecorder
from grinder.state.sqlite import SqliteExpectedStore

# --- numbers of seconds ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "NaN", "1e306", "1e9000", "x", "-5", "0"])
def test_seconds_refuses_what_is_not_a_finite_positive_number(text: str) -> None:
    with pytest.raises(click.BadParameter, match="finite number of seconds > 0"):
        Seconds().convert(text, None, None)


def test_seconds_accepts_finite_values_up_to_the_bound_and_zero_when_allowed() -> None:
    assert Seconds().convert("0.5", None, None) == 0.5
    assert Seconds().convert(str(MAX_SECONDS), None, None) == MAX_SECONDS
    assert Seconds(allow_zero=True).convert("0", None, None) == 0.0
    with pytest.raises(click.BadParameter, match=">= 0"):
        Seconds(allow_zero=True).convert("nan", None, None)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["reconcile", "--duration", "inf"], "--duration"),
        (["reconcile", "--duration", "nan"], "--duration"),
        (["demo", "--ceremony", "--hold", "inf"], "--hold"),
        (["ceremony", "check", "--stage", "1", "--interval", "nan"], "--interval"),
    ],
)
def test_every_seconds_option_refuses_inf_and_nan_with_one_line(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_command(cli, argv, prog_name="grinder") == EXIT_USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"grinder: error: Invalid value for '{flag}'")


def test_duration_out_of_range_is_refused_by_resolve_too() -> None:
    run = run_params(parse(reconcile, [], {}))
    for value in (float("inf"), float("nan"), 0.0, 2 * MAX_SECONDS):
        with pytest.raises(ConfigError, match="--duration"):
            replace(run, duration=value)


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ("service", "full_pass_interval_s"),
        ("service", "max_snapshot_interval_s"),
        ("service", "stream_keepalive_s"),
        ("ha", "lease_ttl_s"),
        ("ha", "recovery_s"),
    ],
)
def test_config_file_seconds_are_bounded_so_no_clock_overflows(
    tmp_path: Path, table: str, field: str
) -> None:
    path = tmp_path / "grinder.toml"
    path.write_text(f"[{table}]\n{field} = 1e306\n")
    with pytest.raises(ConfigError, match=f"{table}\\].*{field}"):
        load_config_file(path)


def test_artifact_ttl_longer_than_the_calendar_removes_nothing(tmp_path: Path) -> None:
    (tmp_path / "2020-01-01").mkdir()
    assert clean_old_days(tmp_path, 1e300, date(2026, 1, 1)) == []
    assert clean_old_days(tmp_path, 1, date(2026, 1, 1)) == [tmp_path / "2020-01-01"]


# --- empty values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["GRINDER_VENUE", "GRINDER_REDIS_URL", "GRINDER_INSTANCE_ID", "GRINDER_REDIS_NAMESPACE"],
)
@pytest.mark.parametrize("raw", ["", "  "])
def test_an_empty_variable_is_refused_naming_it(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}: "):
        service_options([], {name: raw})


@pytest.mark.parametrize(
    "flag", ["config", "log_file", "metrics_host", "redis_url", "control_socket", "expected_db"]
)
def test_an_empty_flag_is_refused_naming_it(flag: str) -> None:
    with pytest.raises(ConfigError, match=f"^--{flag.replace('_', '-')}: expected a value"):
        service_options([f"--{flag.replace('_', '-')}", ""], {})


def test_expected_db_remembers_whether_the_flag_or_the_variable_named_it() -> None:
    assert service_options(["--expected-db", "a.db"], {}).expected_db_where == "--expected-db"
    opts = service_options([], {"GRINDER_EXPECTED_DB": "b.db"})
    assert (opts.expected_db, opts.expected_db_where) == (Path("b.db"), "GRINDER_EXPECTED_DB")


# --- paths -----------------------------------------------------------------------------------


def test_an_output_folder_that_is_missing_is_an_error_unless_it_may_be_created(
    tmp_path: Path,
) -> None:
    target = tmp_path / "missing" / "m.prom"
    with pytest.raises(ConfigError, match=f"^--metrics-out: folder {target.parent} of {target}"):
        check_output_file(target, "--metrics-out", create_folder=False)
    assert not target.parent.exists()
    check_output_file(target, "BUDGET_STATE_PATH", create_folder=True)
    assert target.parent.is_dir()
    assert list(target.parent.iterdir()) == []  # the write probe leaves nothing behind


def test_an_output_path_under_a_file_or_onto_a_folder_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"^--audit-out: .* is not a folder"):
        check_output_file(blocker / "a.jsonl", "--audit-out", create_folder=False)
    with pytest.raises(ConfigError, match=r"^BUDGET_STATE_PATH: cannot create folder"):
        check_output_file(blocker / "sub" / "b.json", "BUDGET_STATE_PATH", create_folder=True)
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        check_output_file(tmp_path, "--metrics-out", create_folder=False)


def test_a_foreign_file_as_expected_db_is_an_error_and_left_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "passwd"
    foreign.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(ConfigError, match=r"^GRINDER_EXPECTED_DB: .*not a SQLite database"):
        check_expected_db(foreign, "GRINDER_EXPECTED_DB")
    assert foreign.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passwd"]


def test_expected_db_checks_create_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--expected-db: folder .* does not exist"):
        check_expected_db(tmp_path / "nope" / "x.db", "--expected-db", create=True)
    # --create-expected-db: the service creates it later
    check_expected_db(tmp_path / "new.db", "--expected-db", create=True)
    assert list(tmp_path.iterdir()) == []
    SqliteExpectedStore(tmp_path / "real.db").close()
    check_expected_db(tmp_path / "real.db", "--expected-db")


@pytest.mark.parametrize("where", ["--expected-db", "GRINDER_EXPECTED_DB"])
def test_a_missing_expected_db_is_refused_naming_the_flag_or_variable_and_the_path(
    tmp_path: Path, where: str
) -> None:
    """A typo must not become an empty file that says "the bot expects nothing"."""
    typo = tmp_path / "expectd.db"
    with pytest.raises(ConfigError) as caught:
        check_expected_db(typo, where)
    message = str(caught.value)
    assert message.startswith(f"{where}: {typo} does not exist")
    assert "--create-expected-db" in message
    assert "\n" not in message
    in_no_folder = tmp_path / "nope" / "expected.db"
    with pytest.raises(ConfigError, match=f"^{where}: {in_no_folder} does not exist"):
        check_expected_db(in_no_folder, where)
    assert list(tmp_path.iterdir()) == []


def test_create_expected_db_needs_an_expected_db() -> None:
    with pytest.raises(ConfigError, match=r"^--create-expected-db: needs --expected-db"):
        service_options(["--create-expected-db"], {})
    opts = service_options(["--create-expected-db"], {"GRINDER_EXPECTED_DB": "b.db"})
    assert (opts.expected_db, opts.create_expected_db) == (Path("b.db"), True)
    assert service_options(["--expected-db", "a.db"], {}).create_expected_db is False


def test_a_socket_path_too_long_for_unix_sockets_is_an_error(tmp_path: Path) -> None:
    base = str(tmp_path / "s")
    ok = Path(base + "x" * (MAX_SOCKET_PATH - len(base)))
    check_socket_path(ok)
    too_long = Path(str(ok) + "x")
    with pytest.raises(ConfigError, match=f"^--control-socket: {too_long} is too long"):
        check_socket_path(too_long)
    with pytest.raises(ConfigError, match=r"^XDG_RUNTIME_DIR: "):
        check_socket_path(too_long, "XDG_RUNTIME_DIR")


def test_a_socket_path_that_is_a_file_or_under_one_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a socket"):
        check_socket_path(blocker)
    with pytest.raises(ConfigError, match="is not a folder"):
        check_socket_path(blocker / "sub" / "control.sock")


@pytest.mark.parametrize(
    ("exc", "flag"),
    [
        (OSError(errno.EADDRINUSE, "bind: address in use"), "--metrics-port"),
        (OSError(errno.EACCES, "bind: permission denied"), "--metrics-port"),
        (OSError(errno.EADDRNOTAVAIL, "bind: cannot assign"), "--metrics-host"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "--metrics-host"),
    ],
)
def test_a_failed_bind_names_the_flag_at_fault(exc: OSError, flag: str) -> None:
    message = str(listen_error(exc, "h", 9090))
    assert message.startswith(f"{flag}: cannot listen on h:9090 (")


# --- the expected source and its heartbeat (gate E) ------------------------------------------


def test_open_expected_refuses_a_missing_file_unless_asked_to_create_it(tmp_path: Path) -> None:
    missing = tmp_path / "expected.db"
    with pytest.raises(ConfigError, match=f"^GRINDER_EXPECTED_DB: {missing} does not exist"):
        open_expected(missing, where="GRINDER_EXPECTED_DB")
    assert list(tmp_path.iterdir()) == []
    source = open_expected(missing, create=True)
    try:
        assert source.kind == "sqlite"
        assert missing.is_file()
        assert source.heartbeat_age_s(10**13) == math.inf
        status = source.status(10**13, 60.0)
        assert status["heartbeat_age_s"] is None
        assert status["live"] is False
        assert status["detail"].startswith("never written by a bot")
        assert "older recorder" in status["hint"]
    finally:
        source.close()


def test_the_expected_source_reports_the_bots_heartbeat_as_of_its_refresh(
    tmp_path: Path,
) -> None:
    db = tmp_path / "expected.db"
    with ExpectedRecorder(db, clock=lambda: 1_000_000) as bot:
        bot.heartbeat()
    source = open_expected(db)
    try:
        source.refresh()
        assert source.heartbeat_age_s(1_030_000) == 30.0
        assert source.status(1_030_000, 60.0) == {
            "source": "sqlite",
            "where": f"expected-state file {db}",
            "heartbeat_age_s": 30.0,
            "max_age_s": 60.0,
            "live": True,
            "detail": "bot heartbeat 30.0 s ago <= expected_heartbeat_max_age_s 60 s",
            "hint": None,
        }
        stale = source.status(1_090_000, 60.0)
        assert stale["live"] is False
        assert "the bot stopped writing" in stale["hint"]
        with ExpectedRecorder(db, clock=lambda: 1_100_000) as bot:
            bot.heartbeat()
        assert source.heartbeat_age_s(1_100_500) == 100.5  # not refreshed yet
        source.refresh()
        assert source.heartbeat_age_s(1_100_500) == 0.5
    finally:
        source.close()


def test_the_services_own_memory_is_live_only_once_a_bot_in_its_process_writes_it() -> None:
    source = open_expected(None)
    assert source.kind == "memory"
    assert source.heartbeat_age_s(1) == math.inf
    hint = source.status(1, 60.0)["hint"]
    assert "--expected-db" in hint
    assert "--redis-url" in hint
    assert source.memory is not None
    source.memory.set_position("BTCUSDT", Decimal(0), 1)  # the demo's grid bot, say
    assert source.status(1, 60.0)["live"] is True
