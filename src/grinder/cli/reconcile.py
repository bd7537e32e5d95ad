"""``grinder reconcile``: the live reconcile service (runbook 13)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import click

from grinder.cli.service_params import (
    config_option,
    environment,
    expected_db_option,
    parse,
    redis_options,
    run_params,
    service_command_options,
    service_params,
    venue_options,
)
from grinder.service.main import run_service
from grinder.service.options import ServiceOptions, resolve


@click.command("reconcile")
@venue_options
@config_option("TOML config file with [reconcile] and [service] tables (SIGHUP re-reads it).")
@expected_db_option(
    "SQLite file a bot records its expected state in [env GRINDER_EXPECTED_DB]; it must exist."
)
@redis_options(
    "High availability: Redis shared by 2-3 instances (redis://host:port/db); only the "
    "leader remediates [env GRINDER_REDIS_URL; default: run alone].",
    "Prefix of the HA keys in Redis, shared by the instances of one deployment "
    "[env GRINDER_REDIS_NAMESPACE; default [ha] namespace, else grinder].",
)
@service_command_options
@click.pass_context
def reconcile(ctx: click.Context, /, **_resolved: object) -> int:
    """Reconcile continuously; remediate only when every gate is open."""
    # The values are read from the context, typed, with where each came from.
    return run_service(options_of(ctx), environment(ctx))


def options_of(ctx: click.Context) -> ServiceOptions:
    """The service's options: this command's flags and environment over the config file."""
    return resolve(service_params(ctx), run_params(ctx))


def service_options(argv: Sequence[str], env: Mapping[str, str]) -> ServiceOptions:
    """The options ``grinder reconcile ARGV`` would run with in the environment ``env``."""
    return options_of(parse(reconcile, argv, env))
