"""Runbook 14: ``PYTHONPATH=src python3 -m scripts.smoke_reconcile_e2e``."""

from scripts._bootstrap import ensure_environment

ensure_environment("scripts.smoke_reconcile_e2e")

import sys  # noqa: E402

from grinder.cli.errors import run_command  # noqa: E402
from grinder.cli.smoke import smoke  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command(smoke, None, prog_name="smoke_reconcile_e2e"))
