"""The ``grinder`` group imports a subcommand's module only when that subcommand runs: the help
still lists every one, a typo still gets its close match, and a light command such as
``grinder sim`` starts without loading the service."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from grinder.cli.main import SUBCOMMANDS, cli


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_module_defines_the_command_it_is_listed_under(name: str) -> None:
    command = getattr(importlib.import_module(SUBCOMMANDS[name]), name)
    assert isinstance(command, click.Command)
    assert command.name == name


def test_the_help_lists_every_subcommand_with_its_summary() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    lines = result.output.split("Commands:", 1)[1].splitlines()
    listed = [line.split()[0] for line in lines if line.startswith("  ") and line.strip()]
    assert listed == sorted(SUBCOMMANDS)
    summary = importlib.import_module(SUBCOMMANDS["sim"]).sim.get_short_help_str()
    assert summary
    assert summary in result.output


@pytest.mark.subprocess
def test_a_typo_names_the_close_match_among_commands_not_yet_imported() -> None:
    code = (
        "from grinder.cli.main import main\n"
        "try:\n"
        "    main(['contrl', 'status'])\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "exit 2"
    assert done.stderr.strip() == (
        "grinder: error: No such command 'contrl'. Did you mean 'control'?"
    )


@pytest.mark.subprocess
def test_grinder_sim_starts_without_the_service_the_demo_or_the_ceremony() -> None:
    code = (
        "import sys\n"
        "from grinder.cli.main import main\n"
        "try:\n"
        "    main(['sim', '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = ('grinder.service', 'grinder.demo', 'grinder.ceremony', 'grinder.cli.reconcile')\n"
        "print('LOADED', sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "serve" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "LOADED []"
