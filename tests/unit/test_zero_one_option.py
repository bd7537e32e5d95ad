"""The strict 0/1 option type: the README's rule for booleans, for a flag and its variable."""

from __future__ import annotations

import click
import pytest

from grinder.cli.errors import EXIT_OK, EXIT_USAGE, run_command
from grinder.cli.options import zero_one_option


@click.command("probe")
@zero_one_option("--armed", envvar="PROBE_ARMED", default=False, help="Arm it.")
def probe(armed: bool) -> int:
    click.echo(f"armed={armed}")
    return EXIT_OK


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run_command(probe, argv, prog_name="probe")
    out = capsys.readouterr()
    return code, out.out.strip(), out.err.strip()


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], None, "armed=False"),
        ([], "1", "armed=True"),
        (["--armed", "0"], "1", "armed=False"),
        (["--armed", "1"], "0", "armed=True"),
    ],
)
def test_flag_wins_over_the_variable_and_the_variable_over_the_default(
    argv: list[str],
    env: str | None,
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if env is None:
        monkeypatch.delenv("PROBE_ARMED", raising=False)
    else:
        monkeypatch.setenv("PROBE_ARMED", env)
    assert run(argv, capsys) == (EXIT_OK, expected, "")


@pytest.mark.parametrize("raw", ["yes", "true", "2", " 1", ""])
def test_a_variable_not_exactly_0_or_1_is_exit_2_naming_it_and_the_value(
    raw: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROBE_ARMED", raw)
    assert run([], capsys) == (
        EXIT_USAGE,
        "",
        f"probe: error: PROBE_ARMED: expected '0' or '1', got {raw!r}",
    )


@pytest.mark.parametrize("raw", ["yes", ""])
def test_a_flag_not_exactly_0_or_1_is_exit_2_naming_it_and_the_value(
    raw: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROBE_ARMED", "1")
    assert run(["--armed", raw], capsys) == (
        EXIT_USAGE,
        "",
        f"probe: error: --armed: expected '0' or '1', got {raw!r}",
    )


def test_help_shows_the_variable_and_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command(probe, ["--help"], prog_name="probe") == EXIT_OK
    text = " ".join(capsys.readouterr().out.split())
    assert "env var: PROBE_ARMED" in text
    assert "default: 0" in text
