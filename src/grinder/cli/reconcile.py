"""``grinder reconcile``: the live reconcile service (runbook 13)."""

from __future__ import annotations

import os

import click

from grinder.cli.options import Seconds, file_option, url_option
from grinder.service.control import DEFAULT_SOCKET_TEXT
from grinder.service.defaults import (
    DEFAULT_METRICS_HOST,
    DEFAULT_METRICS_PORT,
    DEFAULT_VENUE,
    VENUES,
    Venue,
)
from grinder.service.main import run_service
from grinder.service.options import ServiceFlags, resolve


@click.command("reconcile")
@click.option(
    "--duration",
    type=Seconds(),
    default=None,
    metavar="SECONDS",
    help="Stop after this many seconds (default: run until SIGINT/SIGTERM).",
)
@click.option(
    "--venue",
    type=click.Choice(VENUES),
    default=None,
    help="Exchange: sim (the bundled simulator, started in-process), testnet or mainnet "
    f"[env GRINDER_VENUE; default {DEFAULT_VENUE}].",
)
@url_option(
    "--venue-url",
    help="REST base URL to use instead of the venue's (e.g. a running `grinder sim serve`).",
)
@file_option(
    "--config",
    help="TOML config file with [reconcile] and [service] tables (SIGHUP re-reads it).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_METRICS_PORT,
    show_default=True,
    help="Port of /metrics, /healthz, /readyz (0: any free port).",
)
@click.option(
    "--metrics-host",
    default=DEFAULT_METRICS_HOST,
    show_default=True,
    help="Address the metrics endpoint binds to.",
)
@file_option(
    "--log-file",
    help="Write the event log (RECONCILE_MISMATCH, REMEDIATION_*, …) to this file as well as "
    "stderr; its folder is created (runbook 13: /var/log/grinder/app.log).",
)
@click.option(
    "--reset-budget-state",
    is_flag=True,
    help="Start with a clean daily budget at BUDGET_STATE_PATH.",
)
@file_option(
    "--audit-out",
    help="Write the JSONL audit trail here (wins over the run directory's audit.jsonl and "
    "over GRINDER_AUDIT_ENABLED / GRINDER_AUDIT_PATH); its folder must exist.",
)
@file_option(
    "--metrics-out",
    help="Write the final Prometheus metrics here at exit (wins over the run directory's "
    "metrics.prom); its folder must exist.",
)
@file_option(
    "--expected-db",
    help="SQLite file a bot records its expected state in [env GRINDER_EXPECTED_DB]; "
    "it must exist.",
)
@click.option(
    "--create-expected-db",
    is_flag=True,
    help="Create the --expected-db file when it does not exist (empty: remediation stays "
    "blocked until a bot writes it).",
)
@click.option(
    "--control-socket",
    type=click.Path(),
    default=None,
    metavar="PATH",
    help=f"Unix socket of the control endpoint (default {DEFAULT_SOCKET_TEXT}).",
)
@file_option(
    "--ledger-db",
    help="SQLite file of the incident ledger, kept across restarts (created when missing) "
    "[env GRINDER_LEDGER_DB; default: in memory; with --redis-url: in Redis].",
)
@url_option(
    "--redis-url",
    help="High availability: Redis shared by 2-3 instances (redis://host:port/db); only the "
    "leader remediates [env GRINDER_REDIS_URL; default: run alone].",
    http=False,
)
@click.option(
    "--instance-id",
    default=None,
    metavar="ID",
    help="This instance's name in the HA lease, logs and audit "
    "[env GRINDER_INSTANCE_ID; default <hostname>-<pid>].",
)
@click.option(
    "--redis-namespace",
    default=None,
    metavar="NS",
    help="Prefix of the HA keys in Redis, shared by the instances of one deployment "
    "[env GRINDER_REDIS_NAMESPACE; default [ha] namespace, else grinder].",
)
def reconcile(
    duration: float | None,
    venue: Venue | None,
    venue_url: str | None,
    config: str | None,
    metrics_port: int,
    metrics_host: str,
    log_file: str | None,
    reset_budget_state: bool,
    audit_out: str | None,
    metrics_out: str | None,
    expected_db: str | None,
    create_expected_db: bool,
    control_socket: str | None,
    ledger_db: str | None,
    redis_url: str | None,
    instance_id: str | None,
    redis_namespace: str | None,
) -> int:
    """Reconcile continuously; remediate only when every gate is open."""
    flags = ServiceFlags(
        duration=duration,
        venue=venue,
        venue_url=venue_url,
        config=config,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        log_file=log_file,
        reset_budget_state=reset_budget_state,
        audit_out=audit_out,
        metrics_out=metrics_out,
        expected_db=expected_db,
        create_expected_db=create_expected_db,
        control_socket=control_socket,
        ledger_db=ledger_db,
        redis_url=redis_url,
        instance_id=instance_id,
        redis_namespace=redis_namespace,
    )
    return run_service(resolve(flags, os.environ), os.environ)
