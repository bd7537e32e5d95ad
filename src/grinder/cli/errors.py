"""Running a click command with the project's exit codes and one-line errors.

0 success; 1 a check or scenario failed; 2 bad usage, configuration or input,
reported as one line naming what and where.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import click

from grinder.budget.ledger import BudgetStateError
from grinder.reconcile.config import ConfigError
from grinder.redaction import mask_secrets, masked_std_streams, register_environment

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
HELP_OPTIONS = ["-h", "--help"]
"""Every command, and every runbook script (``python3 -m scripts.…``), takes both."""


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
    """Run ``command`` with the exit codes above; every byte it writes to stdout and stderr
    passes ``grinder.redaction.mask_secrets``, with the secrets of the environment registered
    first (``register_environment``)."""
    register_environment(os.environ)
    with masked_std_streams():
        return _run(command, argv, prog_name)


def _run(command: click.Command, argv: Sequence[str] | None, prog_name: str) -> int:
    args = list(sys.argv[1:] if argv is None else argv)

    def error(text: str) -> None:
        print(f"{prog_name}: error: {mask_secrets(text)}", file=sys.stderr)

    try:
        result = command.main(
            args=args, prog_name=prog_name, standalone_mode=False, help_option_names=HELP_OPTIONS
        )
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        print(f"{prog_name}: aborted", file=sys.stderr)
        return 130
    except CommandFailed as exc:
        error(str(exc))
        return exc.exit_code
    except click.ClickException as exc:
        error(exc.format_message())
        return EXIT_USAGE
    except (ConfigError, BudgetStateError) as exc:
        error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog_name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("GRINDER_DEBUG") == "1":
            traceback.print_exc()  # through the masking stream, unlike an uncaught exception
            return EXIT_FAILED
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        error(f"{text} (GRINDER_DEBUG=1 shows the traceback)")
        return EXIT_FAILED
    return int(result) if isinstance(result, int) else EXIT_OK
