"""``grinder demo``: the whole product, end to end, in one process, in well under a minute.

Three real components run side by side:

* the bundled Binance USDⓈ-M **simulator** (``SimulatorServer`` on a loopback port);
* a small **grid bot** (``grinder.bot.grid``) trading BTCUSDT through the real
  Binance adapter over HTTP, recording its expected state before it sends;
* the live **reconcile service** (``ReconcileService``, unchanged), connected to
  the simulator's URL as to any venue.

Expected state: the bot writes into the service's in-memory store
(``running.expected.source.memory``). Both run in this process, so the store the service
reads *is* the bot's record: no file, no refresh lag, and "record, then send"
holds exactly; written by a bot in the service's own process, it counts as live
(gate E) from the bot's first write. (A bot in another process would use the
SQLite recorder of docs/EXPECTED_STATE.md, and beat its heartbeat; the bot's calls
are the same on either store.)

Drift is then injected one case at a time through the simulator's ``/_sim/``
control API, and what the service decided is shown as it happens. Every event
line is derived from the service's ``RunReport`` objects (a subclass hands each
run's report to the demo), never from log text. Grace periods, passes and
snapshots are shortened so the demo is quick; the code paths are the production
ones. Exit 0 when every case behaved as expected, 1 otherwise.

``--ceremony`` runs the same three components but injects no drift: the service
starts with runbook 13's stage-1 settings (passive: action=none, dry-run, planning
not allowed, not armed, ALLOW_MAINNET_TRADE unset) and a control socket, and the
demo prints the walk: ``grinder ceremony check --stage 1``, the two ``grinder
control set`` commands of stage 2 (action=cancel_all, allow_active_remediation=true),
``grinder ceremony check --stage 2``. It keeps running until SIGINT/SIGTERM or
``--hold`` seconds, then stops cleanly (exit 0).

The package: ``options`` (settings, timings, results), ``feed`` (the reports the service hands
over, and what is printed from them), ``sim`` (the simulator's control API), ``base`` (the
components, set-up and tear-down, ``--ceremony``'s hold), ``cases`` (the drift cases),
``output`` (banner and results table) and ``runner`` (``run_demo``).
"""

from grinder.demo.cases import Demo
from grinder.demo.feed import Feed, Window
from grinder.demo.options import FAST, NORMAL, CaseResult, DemoOptions, Timing, service_options
from grinder.demo.output import print_banner, print_results
from grinder.demo.runner import run_demo

__all__ = [
    "FAST",
    "NORMAL",
    "CaseResult",
    "Demo",
    "DemoOptions",
    "Feed",
    "Timing",
    "Window",
    "print_banner",
    "print_results",
    "run_demo",
    "service_options",
]
