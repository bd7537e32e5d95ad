"""The service's flags and their variables, resolved by click: flag > environment > default.

Each option names its variable (``envvar=``); click picks the source and records it
(``Context.get_parameter_source``), and each value passes its ``ParamType``, whose message
names the flag or the variable it came from (``grinder.cli.options.Given``: one line,
exit 2). Two rules of the house click does not have are kept by ``ServiceOption`` and
those types:

- a variable set but empty is *set*, and refused naming it, never read as its default
  (click reads an empty variable as unset);
- the environment is the one the command was given (``ENVIRONMENT`` in ``ctx.meta``,
  else ``os.environ``), so a caller or a test names it.

The variables without a flag (the gates ``RECONCILE_DRY_RUN``, ``RECONCILE_ALLOW_ACTIVE``,
``ARMED``, ``ALLOW_MAINNET_TRADE``; the audit, budget and artifact paths) are read from the
same environment by ``RuntimeEnv`` and ``ArtifactsEnv`` (click has no option without a
flag, and a gate never becomes a flag). What they give is one frozen ``ServiceParams``
(and ``RunParams`` for ``grinder reconcile``); ``grinder.service.options.resolve`` adds
the config file, in one place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from grinder.cli.errors import HELP_OPTIONS
from grinder.cli.options import FilePath, Given, Seconds, Text, Url
from grinder.config_sources import RuntimeEnv
from grinder.reconcile.config import ConfigError
from grinder.service.control import DEFAULT_SOCKET_TEXT
from grinder.service.defaults import (
    DEFAULT_METRICS_HOST,
    DEFAULT_METRICS_PORT,
    DEFAULT_VENUE,
    VENUES,
    Venue,
)
from grinder.service.params import ArtifactsEnv, RunParams, ServiceParams

F = TypeVar("F", bound=Callable[..., object])
T = TypeVar("T")

ENVIRONMENT = "grinder.environment"
"""``ctx.meta`` key of the environment the options are read from (absent: ``os.environ``)."""


def environment(ctx: click.Context) -> Mapping[str, str]:
    env: Mapping[str, str] | None = ctx.meta.get(ENVIRONMENT)
    return os.environ if env is None else env


class ServiceOption(click.Option):
    """An option whose variable is read from the command's environment, an empty value
    included (its ``ParamType`` refuses it naming the variable)."""

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        if not isinstance(self.envvar, str):
            return None
        return environment(ctx).get(self.envvar)


class VenueChoice(click.Choice[Venue]):
    """``sim``, ``testnet`` or ``mainnet``: click's message for the flag, one naming the
    variable for ``GRINDER_VENUE``."""

    def __init__(self) -> None:
        super().__init__(VENUES)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        given = Given.of(ctx, param)
        if given.variable and value not in VENUES:
            raise ConfigError(f"{given.name}: expected one of {', '.join(VENUES)}, got {value!r}")
        return super().convert(value, param, ctx)


def _option(*decls: str, envvar: str | None = None, **attrs: Any) -> Callable[[F], F]:
    return click.option(*decls, cls=ServiceOption, envvar=envvar, show_envvar=False, **attrs)


def _file(decl: str, envvar: str | None, help: str) -> Callable[[F], F]:
    return _option(decl, envvar=envvar, type=FilePath(), metavar="FILE", help=help)


def venue_options(func: F) -> F:
    """``--venue`` and ``--venue-url``."""
    func = _option(
        "--venue-url",
        type=Url(http=True),
        metavar="URL",
        help="REST base URL to use instead of the venue's (e.g. a running `grinder sim serve`).",
    )(func)
    return _option(
        "--venue",
        envvar="GRINDER_VENUE",
        type=VenueChoice(),
        default=DEFAULT_VENUE,
        show_default=True,
        help="Exchange: sim (the bundled simulator, started in-process), testnet or mainnet "
        "[env GRINDER_VENUE].",
    )(func)


def config_option(help: str) -> Callable[[F], F]:
    return _file("--config", None, help)


def expected_db_option(help: str) -> Callable[[F], F]:
    return _file("--expected-db", "GRINDER_EXPECTED_DB", help)


def redis_options(url_help: str, namespace_help: str) -> Callable[[F], F]:
    """``--redis-url`` and ``--redis-namespace``."""

    def apply(func: F) -> F:
        func = _option(
            "--redis-namespace",
            envvar="GRINDER_REDIS_NAMESPACE",
            type=Text(),
            metavar="NS",
            help=namespace_help,
        )(func)
        return _option(
            "--redis-url",
            envvar="GRINDER_REDIS_URL",
            type=Url(http=False),
            metavar="URL",
            help=url_help,
        )(func)

    return apply


_RUN_OPTIONS: Sequence[Callable[[Callable[..., object]], Callable[..., object]]] = (
    # the flags only ``grinder reconcile`` has, in the order its help lists them
    _option(
        "--duration",
        type=Seconds(),
        metavar="SECONDS",
        help="Stop after this many seconds (default: run until SIGINT/SIGTERM).",
    ),
    _option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        default=DEFAULT_METRICS_PORT,
        show_default=True,
        help="Port of /metrics, /healthz, /readyz (0: any free port).",
    ),
    _option(
        "--metrics-host",
        type=Text(),
        default=DEFAULT_METRICS_HOST,
        show_default=True,
        help="Address the metrics endpoint binds to.",
    ),
    _file(
        "--log-file",
        None,
        "Write the event log (RECONCILE_MISMATCH, REMEDIATION_*, …) to this file as well as "
        "stderr; its folder is created (runbook 13: /var/log/grinder/app.log).",
    ),
    _option(
        "--reset-budget-state",
        is_flag=True,
        help="Start with a clean daily budget at BUDGET_STATE_PATH.",
    ),
    _file(
        "--audit-out",
        None,
        "Write the JSONL audit trail here (wins over the run directory's audit.jsonl and "
        "over GRINDER_AUDIT_ENABLED / GRINDER_AUDIT_PATH); its folder must exist.",
    ),
    _file(
        "--metrics-out",
        None,
        "Write the final Prometheus metrics here at exit (wins over the run directory's "
        "metrics.prom); its folder must exist.",
    ),
    _option(
        "--create-expected-db",
        is_flag=True,
        help="Create the --expected-db file when it does not exist (empty: remediation "
        "stays blocked until a bot writes it).",
    ),
    _option(
        "--control-socket",
        type=FilePath(dir_okay=True),
        metavar="PATH",
        help=f"Unix socket of the control endpoint (default {DEFAULT_SOCKET_TEXT}).",
    ),
    _file(
        "--ledger-db",
        "GRINDER_LEDGER_DB",
        "SQLite file of the incident ledger, kept across restarts (created when missing) "
        "[env GRINDER_LEDGER_DB; default: in memory; with --redis-url: in Redis].",
    ),
    _option(
        "--instance-id",
        envvar="GRINDER_INSTANCE_ID",
        type=Text(),
        metavar="ID",
        help="This instance's name in the HA lease, logs and audit "
        "[env GRINDER_INSTANCE_ID; default <hostname>-<pid>].",
    ),
)


def service_command_options(func: F) -> F:
    """The flags only ``grinder reconcile`` has, besides the shared ones above."""
    for option in reversed(_RUN_OPTIONS):
        option(func)  # click adds the option to the function itself
    return func


# --- what click resolved, typed ---------------------------------------------------------------


def _value(ctx: click.Context, name: str, kind: type[T]) -> T | None:
    """The parameter's value, checked to be a ``kind`` (None: not given, no default, or not
    a parameter of this command)."""
    value = ctx.params.get(name)
    if value is None:
        return None
    if not isinstance(value, kind):
        raise TypeError(f"{name}: click gave {type(value).__name__}, expected {kind.__name__}")
    return value


def _sources(ctx: click.Context) -> dict[str, str]:
    """Each parameter given on the command line or by its variable: the flag or variable."""
    given: dict[str, str] = {}
    for param in ctx.command.params:
        if param.name is None:
            continue
        source = ctx.get_parameter_source(param.name)
        if source is ParameterSource.COMMANDLINE and param.opts:
            given[param.name] = param.opts[0]
        elif source is ParameterSource.ENVIRONMENT and isinstance(param.envvar, str):
            given[param.name] = param.envvar
    return given


def service_params(ctx: click.Context) -> ServiceParams:
    """The shared service parameters of this command's context, with the environment-only
    variables of the same environment."""
    env = environment(ctx)
    venue = next(v for v in VENUES if v == _value(ctx, "venue", str))
    return ServiceParams(
        venue=venue,
        venue_url=_value(ctx, "venue_url", str),
        config=_value(ctx, "config", Path),
        expected_db=_value(ctx, "expected_db", Path),
        ledger_db=_value(ctx, "ledger_db", Path),
        redis_url=_value(ctx, "redis_url", str),
        instance_id=_value(ctx, "instance_id", str),
        redis_namespace=_value(ctx, "redis_namespace", str),
        runtime=RuntimeEnv.from_env(env),
        artifacts=ArtifactsEnv.from_env(env),
        given=_sources(ctx),
    )


def run_params(ctx: click.Context) -> RunParams:
    """``grinder reconcile``'s own flags of this context."""
    port = _value(ctx, "metrics_port", int)
    host = _value(ctx, "metrics_host", str)
    if port is None or host is None:
        raise TypeError("run_params: not a context of grinder reconcile")
    return RunParams(
        duration=_value(ctx, "duration", float),
        metrics_port=port,
        metrics_host=host,
        log_file=_value(ctx, "log_file", Path),
        reset_budget_state=_value(ctx, "reset_budget_state", bool) or False,
        audit_out=_value(ctx, "audit_out", Path),
        metrics_out=_value(ctx, "metrics_out", Path),
        create_expected_db=_value(ctx, "create_expected_db", bool) or False,
        control_socket=_value(ctx, "control_socket", Path),
    )


def parse(command: click.Command, argv: Sequence[str], env: Mapping[str, str]) -> click.Context:
    """``command``'s context for ``argv`` read in the environment ``env`` (its callback is
    not run): what ``service_params`` and ``run_params`` read."""
    ctx = command.context_class(command, info_name=command.name, help_option_names=HELP_OPTIONS)
    ctx.meta[ENVIRONMENT] = env
    with ctx.scope(cleanup=False):
        command.parse_args(ctx, list(argv))
    return ctx
