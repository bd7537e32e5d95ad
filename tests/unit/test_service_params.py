"""The service's options as click resolves them: flag > variable > default, every source
named, an empty variable refused (click alone would read it as unset), the environment the
one the command was given, and the help telling the truth about each variable."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import click
import pytest

from grinder.cli.errors import EXIT_USAGE, run_command
from grinder.cli.expected import adopt
from grinder.cli.main import cli
from grinder.cli.reconcile import reconcile, service_options
from grinder.cli.service_params import parse, run_params, service_params
from grinder.reconcile.config import ConfigError
from grinder.service.defaults import DEFAULT_METRICS_HOST, DEFAULT_METRICS_PORT, DEFAULT_VENUE

SRC = Path(__file__).resolve().parents[2] / "src" / "grinder"

# option, its variable, a value for the flag, a value for the variable, the options' field
WITH_VARIABLE = [
    ("--venue", "GRINDER_VENUE", "testnet", "mainnet", "venue"),
    ("--expected-db", "GRINDER_EXPECTED_DB", "flag.db", "env.db", "expected_db"),
    ("--ledger-db", "GRINDER_LEDGER_DB", "flag.db", "env.db", "ledger_db"),
    ("--redis-url", "GRINDER_REDIS_URL", "redis://flag:1/0", "redis://env:2/0", "redis_url"),
    ("--instance-id", "GRINDER_INSTANCE_ID", "flag-id", "env-id", "instance_id"),
    ("--redis-namespace", "GRINDER_REDIS_NAMESPACE", "flagns", "envns", "redis_namespace"),
]


def _typed(field: str, text: str) -> object:
    return Path(text) if field.endswith("_db") else text


@pytest.mark.parametrize(("flag", "variable", "by_flag", "by_env", "field"), WITH_VARIABLE)
def test_the_flag_wins_over_its_variable_and_the_variable_over_the_default(
    flag: str, variable: str, by_flag: str, by_env: str, field: str
) -> None:
    env = {variable: by_env}
    both = service_params(parse(reconcile, [flag, by_flag], env))
    assert (getattr(both, field), both.given[field]) == (_typed(field, by_flag), flag)
    alone = service_params(parse(reconcile, [], env))
    assert (getattr(alone, field), alone.given[field]) == (_typed(field, by_env), variable)
    neither = service_params(parse(reconcile, [], {}))
    assert field not in neither.given
    assert getattr(neither, field) == (DEFAULT_VENUE if field == "venue" else None)


@pytest.mark.parametrize(("flag", "variable", "by_flag", "by_env", "field"), WITH_VARIABLE)
@pytest.mark.parametrize("raw", ["", " "])
def test_a_variable_set_empty_is_refused_naming_it_unless_its_flag_is_given(
    flag: str, variable: str, by_flag: str, by_env: str, field: str, raw: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        service_params(parse(reconcile, [], {variable: raw}))
    given = service_params(parse(reconcile, [flag, by_flag], {variable: raw}))
    assert getattr(given, field) == _typed(field, by_flag)


def test_the_variables_are_read_from_the_environment_given_never_from_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for _flag, variable, _by_flag, by_env, _field in WITH_VARIABLE:
        monkeypatch.setenv(variable, by_env)
    monkeypatch.setenv("ARMED", "1")
    monkeypatch.setenv("GRINDER_ARTIFACTS_DIR", "/nowhere")
    params = service_params(parse(reconcile, [], {}))
    assert params.given == {}
    assert (params.venue, params.redis_url, params.runtime.armed) == ("sim", None, False)
    assert params.artifacts.artifacts_dir is None


def test_a_bad_variable_names_the_variable_and_a_bad_flag_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^GRINDER_VENUE: expected one of sim, testnet, mainnet"):
        service_options([], {"GRINDER_VENUE": "moon"})
    with pytest.raises(click.BadParameter, match="'moon' is not one of"):
        service_options(["--venue", "moon"], {})
    with pytest.raises(ConfigError, match=r"^GRINDER_REDIS_URL: expected redis://"):
        service_options([], {"GRINDER_REDIS_URL": "http://h:1"})
    with pytest.raises(ConfigError, match=r"^--redis-url: expected redis://"):
        service_options(["--redis-url", "http://h:1"], {"GRINDER_REDIS_URL": "redis://h:1"})
    with pytest.raises(ConfigError, match=r"^GRINDER_REDIS_NAMESPACE: expected 1-64"):
        service_options(["--redis-url", "redis://h:1"], {"GRINDER_REDIS_NAMESPACE": "a b"})
    with pytest.raises(ConfigError, match=r"^GRINDER_INSTANCE_ID: expected 1-128"):
        service_options(["--redis-url", "redis://h:1"], {"GRINDER_INSTANCE_ID": "a b"})
    with pytest.raises(ConfigError, match=r"^ARMED: expected '0' or '1', got 'yes'"):
        service_options([], {"ARMED": "yes"})
    with pytest.raises(ConfigError, match=r"^GRINDER_ARTIFACT_TTL_DAYS: expected a number"):
        service_options([], {"GRINDER_ARTIFACT_TTL_DAYS": "14d"})


def test_the_ledger_file_is_refused_under_ha_naming_where_it_came_from() -> None:
    url = ["--redis-url", "redis://h:1/0"]
    with pytest.raises(ConfigError, match=r"^GRINDER_LEDGER_DB: with HA"):
        service_options(url, {"GRINDER_LEDGER_DB": "l.db"})
    with pytest.raises(ConfigError, match=r"^--ledger-db: with HA"):
        service_options([*url, "--ledger-db", "l.db"], {"GRINDER_LEDGER_DB": "l.db"})


def test_an_instance_id_or_namespace_without_a_url_is_refused_only_when_given_as_a_flag() -> None:
    with pytest.raises(ConfigError, match="need --redis-url"):
        service_options(["--redis-namespace", "ns"], {})
    env = {"GRINDER_INSTANCE_ID": "a", "GRINDER_REDIS_NAMESPACE": "ns"}
    assert service_options([], env).ha is None


def test_the_defaults_are_the_named_ones_and_the_options_are_frozen() -> None:
    opts = service_options([], {})
    assert (opts.venue, opts.metrics_host, opts.metrics_port) == (
        DEFAULT_VENUE,
        DEFAULT_METRICS_HOST,
        DEFAULT_METRICS_PORT,
    )
    assert (opts.duration_s, opts.log_file, opts.control_socket, opts.ha) == (None,) * 4
    with pytest.raises(FrozenInstanceError):
        opts.armed = True  # type: ignore[misc]
    run = run_params(parse(reconcile, ["--duration", "5", "--metrics-port", "0"], {}))
    with pytest.raises(FrozenInstanceError):
        run.duration = None  # type: ignore[misc]
    assert replace(run, duration=None).duration is None


def test_the_metrics_port_default_is_written_once_in_the_source() -> None:
    where = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value == DEFAULT_METRICS_PORT:
                where.append(path.relative_to(SRC).as_posix())
    assert where == ["service/defaults.py"]


def test_the_adopt_command_reads_its_options_through_the_same_rules() -> None:
    env = {"GRINDER_EXPECTED_DB": "e.db", "GRINDER_VENUE": "testnet"}
    params = service_params(parse(adopt, ["--venue", "mainnet"], env))
    assert (params.venue, params.expected_db) == ("mainnet", Path("e.db"))
    assert params.given == {"venue": "--venue", "expected_db": "GRINDER_EXPECTED_DB"}
    with pytest.raises(ConfigError, match=r"^GRINDER_EXPECTED_DB: expected a path"):
        service_params(parse(adopt, [], {"GRINDER_EXPECTED_DB": ""}))


def _help(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_command(cli, argv, prog_name="grinder") == 0
    return " ".join(out.getvalue().split())


@pytest.mark.parametrize(
    ("argv", "command"), [(["reconcile"], reconcile), (["expected", "adopt"], adopt)]
)
def test_the_help_names_exactly_the_variables_click_reads(
    argv: list[str], command: click.Command
) -> None:
    service_options([], {})  # a context built apart first: the help must still take -h
    text = _help([*argv, "-h"])
    read = {p.envvar for p in command.params if isinstance(p.envvar, str)}
    told = set(re.findall(r"\[env (GRINDER_[A-Z_]+)", text))
    assert read == told
    assert read >= {"GRINDER_EXPECTED_DB", "GRINDER_REDIS_URL", "GRINDER_VENUE"}


def test_a_bad_variable_through_the_command_is_one_line_and_exit_2_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GRINDER_VENUE", "moon")
    ledger = tmp_path / "ledger.db"
    code = run_command(cli, ["reconcile", "--ledger-db", str(ledger)], prog_name="grinder")
    assert code == EXIT_USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "grinder: error: GRINDER_VENUE: expected one of sim, testnet, mainnet, got 'moon'"
    ]
    assert list(tmp_path.iterdir()) == []
