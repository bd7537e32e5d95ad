"""Runbook 12's drill: ``PYTHONPATH=src python3 -m scripts.drill_bot --expected-db FILE``."""

from scripts._bootstrap import ensure_environment

ensure_environment("scripts.drill_bot")

import sys  # noqa: E402

from grinder.bot.drill import drill_bot  # noqa: E402
from grinder.cli.errors import run_command  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command(drill_bot, None, prog_name="drill_bot"))
