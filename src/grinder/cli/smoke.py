"""``grinder smoke``: the end-to-end reconcile -> remediate smoke test (runbook 14)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import click

from grinder.cli.errors import EXIT_FAILED, UsageError
from grinder.config_sources import RuntimeEnv
from grinder.reporting.logs import configure_logging
from grinder.smoke import (
    CONFIRM_PHRASE,
    SmokeSettings,
    live_gate_checks,
    print_gate_failure,
    run_smoke,
)


@click.command("smoke")
@click.option(
    "--confirm",
    metavar="PHRASE",
    default=None,
    help=f"Run in LIVE mode; must be {CONFIRM_PHRASE} and needs RECONCILE_DRY_RUN=0, "
    "RECONCILE_ALLOW_ACTIVE=1, ARMED=1 and ALLOW_MAINNET_TRADE=1.",
)
@click.option(
    "--venue",
    type=click.Choice(["fake", "sim"]),
    default="fake",
    show_default=True,
    help="Exchange the scenarios run against: fake (the in-memory recording port) or sim "
    "(the bundled simulator, through the real Binance adapter over HTTP).",
)
@click.option(
    "--reset-budget-state",
    is_flag=True,
    help="Start with a clean daily budget at BUDGET_STATE_PATH (in dry-run too); prints "
    "budget_state_reset=1 path=<path>.",
)
@click.option("-v", "--verbose", is_flag=True, help="Show the event log lines on stderr.")
def smoke(confirm: str | None, venue: str, reset_budget_state: bool, verbose: bool) -> int:
    """Run the three P0 reconcile -> remediate scenarios (dry-run unless confirmed)."""
    if confirm is not None and confirm != CONFIRM_PHRASE:
        raise UsageError(f"--confirm must be {CONFIRM_PHRASE!r} (got {confirm!r})")
    env = RuntimeEnv.from_env(os.environ)
    configure_logging(level=logging.INFO if verbose else logging.ERROR)
    live = confirm is not None
    out = sys.stdout
    if live:
        checks = live_gate_checks(env)
        if not all(c.ok for c in checks):
            print_gate_failure(out, checks)
            return EXIT_FAILED
    settings = SmokeSettings(
        live=live,
        env=env,
        env_mapping=dict(os.environ),
        venue=venue,
        reset_budget_state=reset_budget_state,
    )
    return asyncio.run(run_smoke(settings, out))
