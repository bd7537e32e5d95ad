"""A bot that places nothing, for drills on the simulator (runbook 12).

Remediation acts only on an expected state a bot keeps (gate E, ``expected_state_stale``).
A drill on the simulator has no bot of its own, so this stands in for an idle one: it has
no order open and intends no position, and it beats its heartbeat into the expected-state
file every ``--every`` seconds, as a bot's main loop does, until SIGINT/SIGTERM (exit 0).

    PYTHONPATH=src python3 -m scripts.drill_bot --expected-db /var/lib/grinder/drill-expected.db

Never run it beside a real account: it would vouch for a bot that is not there.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from grinder.cli.options import Seconds
from grinder.state.expected import RECOMMENDED_HEARTBEAT_INTERVAL_S
from grinder.state.recorder import ExpectedRecorder
from grinder.state.sqlite import ExpectedStoreError


@click.command("drill-bot")
@click.option(
    "--expected-db",
    type=click.Path(dir_okay=False),
    required=True,
    metavar="FILE",
    help="The expected-state file the drill's service reads (created if absent).",
)
@click.option(
    "--every",
    type=Seconds(),
    default=RECOMMENDED_HEARTBEAT_INTERVAL_S,
    show_default=True,
    metavar="SECONDS",
    help="Heartbeat interval.",
)
def drill_bot(expected_db: str, every: float) -> int:
    """Stand in for an idle bot on the simulator: heartbeat the expected state until stopped."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        recorder = ExpectedRecorder(expected_db)
    except ExpectedStoreError as exc:
        raise click.UsageError(f"--expected-db: {exc}") from None
    with recorder:
        click.echo(
            f"drill bot: no order, no position; heartbeat every {every:g} s into {expected_db} "
            "(SIGINT/SIGTERM stops it)"
        )
        while not stop.is_set():
            recorder.heartbeat()
            stop.wait(every)
    click.echo("drill bot: stopped")
    return 0
