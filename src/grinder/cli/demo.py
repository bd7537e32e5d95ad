"""``grinder demo``: simulator + grid bot + live reconcile service, drift injected case by case
(``--ceremony``: no drift, runbook 13 stage-2 settings, for ``grinder ceremony check``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from grinder.cli.options import Seconds
from grinder.demo import DemoOptions, run_demo


@click.command("demo")
@click.option(
    "--live",
    is_flag=True,
    help="Open every gate (against the bundled simulator only) and let GRINDER remediate.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Simulator seed.")
@click.option(
    "--fast",
    is_flag=True,
    help="Shorter grace periods and passes (order 500 ms, position 300 ms, pass 0.25 s).",
)
@click.option(
    "--artifacts-dir",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Where the run directory goes [default: $TMPDIR/grinder-demo].",
)
@click.option("-v", "--verbose", is_flag=True, help="Also show the service's event log on stderr.")
@click.option(
    "--ceremony",
    is_flag=True,
    help="Inject no drift: run the service with runbook 13's stage-1 (passive) settings and "
    "a control socket, print the ceremony's commands (check stage 1, open stage 2, check it), "
    "and keep it running.",
)
@click.option(
    "--hold",
    "hold_s",
    type=Seconds(allow_zero=True),
    default=None,
    metavar="SECONDS",
    help="With --ceremony: stop after SECONDS [default: until SIGINT/SIGTERM].",
)
def demo(
    live: bool,
    seed: int,
    fast: bool,
    artifacts_dir: str | None,
    verbose: bool,
    ceremony: bool,
    hold_s: float | None,
) -> int:
    """Run the end-to-end demo: drift injected one case at a time, and what GRINDER does."""
    if ceremony and live:
        raise click.UsageError("--ceremony and --live cannot be combined")
    if hold_s is not None and not ceremony:
        raise click.UsageError("--hold needs --ceremony")
    opts = DemoOptions(
        live=live,
        seed=seed,
        fast=fast,
        artifacts_root=Path(artifacts_dir) if artifacts_dir else None,
        verbose=verbose,
        ceremony=ceremony,
        hold_s=hold_s,
    )
    return run_demo(opts, sys.stdout)
