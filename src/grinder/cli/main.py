"""The ``grinder`` command."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from grinder import __version__
from grinder.cli.ceremony import ceremony
from grinder.cli.control import control
from grinder.cli.demo import demo
from grinder.cli.errors import HELP_OPTIONS, run_command
from grinder.cli.expected import expected
from grinder.cli.gates import gates
from grinder.cli.incidents import incidents
from grinder.cli.reconcile import reconcile
from grinder.cli.sim import sim
from grinder.cli.smoke import smoke


@click.group(context_settings={"help_option_names": HELP_OPTIONS})
@click.version_option(__version__, prog_name="grinder")
def cli() -> None:
    """GRINDER: reconcile a trading bot's expected state with Binance USDⓈ-M, and remediate."""


cli.add_command(smoke)
cli.add_command(sim)
cli.add_command(reconcile)
cli.add_command(control)
cli.add_command(expected)
cli.add_command(demo)
cli.add_command(ceremony)
cli.add_command(gates)
cli.add_command(incidents)


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_command(cli, argv, prog_name="grinder"))
