"""The ``grinder`` command.

Each subcommand's module is imported only when that subcommand runs (or when the group's
help lists them all): ``grinder sim serve`` does not load the service, the demo and the
ceremony first. Tests start hundreds of these commands as processes.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

from grinder import __version__
from grinder.cli.errors import HELP_OPTIONS, run_command

SUBCOMMANDS = {
    "smoke": "grinder.cli.smoke",
    "sim": "grinder.cli.sim",
    "reconcile": "grinder.cli.reconcile",
    "control": "grinder.cli.control",
    "expected": "grinder.cli.expected",
    "demo": "grinder.cli.demo",
    "ceremony": "grinder.cli.ceremony",
    "gates": "grinder.cli.gates",
    "incidents": "grinder.cli.incidents",
}
"""Subcommand name -> its module, which defines a click command of the same name."""


class SubcommandsOnDemand(click.Group):
    """A click group whose subcommands (``SUBCOMMANDS``) are imported when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = SUBCOMMANDS.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            command = getattr(importlib.import_module(module), cmd_name)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module}.{cmd_name} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:
            # The close matches ("Did you mean …?") among every subcommand, imported or not.
            raise click.exceptions.NoSuchCommand(
                exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None


@click.group(cls=SubcommandsOnDemand, context_settings={"help_option_names": HELP_OPTIONS})
@click.version_option(__version__, prog_name="grinder")
def cli() -> None:
    """GRINDER: reconcile a trading bot's expected state with Binance USDⓈ-M, and remediate."""


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run_command(cli, argv, prog_name="grinder"))
