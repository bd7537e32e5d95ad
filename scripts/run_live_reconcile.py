"""Runbook 13: ``PYTHONPATH=src python3 -m scripts.run_live_reconcile [--duration 60] …``."""

from scripts._bootstrap import ensure_environment

ensure_environment("scripts.run_live_reconcile")

import sys  # noqa: E402

from grinder.cli.errors import run_command  # noqa: E402
from grinder.cli.reconcile import reconcile  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command(reconcile, None, prog_name="run_live_reconcile"))
