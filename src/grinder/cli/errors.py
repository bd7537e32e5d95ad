"""Running a click command with the project's exit codes and one-line errors.

0 success; 1 a check or scenario failed; 2 bad usage, configuration or input,
reported as one line naming what and where.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from grinder.reconcile.budget import BudgetStateError
from grinder.reconcile.config import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(click.UsageError):
    """Bad input found by a command's own validation (exit 2)."""


class CommandFailed(Exception):
    """A failure the command has already recorded (its artifacts and exit code written).

    ``run_command`` prints the message as the one error line and exits with ``exit_code``.
    """

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_command(command: click.Command, argv: Sequence[str] | None, *, prog_name: str) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        print(f"{prog_name}: aborted", file=sys.stderr)
        return 130
    except CommandFailed as exc:
        print(f"{prog_name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except click.ClickException as exc:
        print(f"{prog_name}: error: {exc.format_message()}", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, BudgetStateError) as exc:
        print(f"{prog_name}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog_name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("GRINDER_DEBUG") == "1":
            raise
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"{prog_name}: error: {text} (GRINDER_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_FAILED
    return int(result) if isinstance(result, int) else EXIT_OK
