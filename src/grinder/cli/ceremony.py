"""``grinder ceremony check --stage N``: runbook 13's checklist against a running service.

Reads the service's metrics (``--metrics-url``; default the URL the service
reports on its control socket, else http://localhost:9090/metrics), the settings
in force from the control socket's ``/status`` (or ``--config`` FILE), the
budget file (``--budget-state``, default ``$BUDGET_STATE_PATH``), this shell's
environment, the event log (``--log-file``) and, for stage 4, a Prometheus
server's loaded rules (``--prometheus-url``). Prints every item of the stage
PASS / FAIL / MANUAL with its evidence; exits 0 only when no automatic item
fails (1 otherwise, 2 for bad usage).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from grinder.ceremony.checks import STAGES, Inputs
from grinder.ceremony.report import render, render_json
from grinder.ceremony.sources import fetch_scrape
from grinder.ceremony.stages import run_stage
from grinder.cli.control import call, socket_option, socket_path_of
from grinder.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from grinder.cli.options import (
    Seconds,
    file_option,
    metrics_url_of,
    metrics_url_option,
    url_option,
)
from grinder.reconcile.config import env_path
from grinder.redaction import mask_url
from grinder.service.options import load_config_file


def service_status(socket_path: str | None) -> tuple[dict[str, Any] | None, Path, str | None]:
    """The control socket's ``/status``: (status, socket path, error)."""
    path = socket_path_of(socket_path)
    try:
        status = call(str(path), "GET", "/status")
    except UsageError as exc:
        return None, path, exc.format_message().removeprefix("--socket: ")
    if not isinstance(status, dict):
        return None, path, f"{path}: unexpected /status answer"
    return status, path, None


@click.group("ceremony")
def ceremony() -> None:
    """Runbook 13's operator ceremony, checked against the running service."""


@ceremony.command("check")
@click.option(
    "--stage",
    type=click.IntRange(1, 4),
    required=True,
    help="Runbook 13 stage: "
    + "; ".join(f"{n} {title.lower()}" for n, title in STAGES.items())
    + ".",
)
@metrics_url_option
@socket_option
@file_option(
    "--config",
    "config_path",
    help="Read the settings from this TOML ([reconcile], [service]) instead of the control "
    "socket; the gates' live values still come from the service's metrics.",
)
@file_option("--budget-state", help="The daily budget file (default $BUDGET_STATE_PATH).")
@file_option("--log-file", help="The service's event log (runbook: /var/log/grinder/app.log).")
@url_option(
    "--prometheus-url",
    help="A Prometheus server (e.g. http://localhost:9091): stage 4 checks the alert rules "
    "are loaded; stage 2 takes the planned rate over the last hour from it.",
)
@click.option(
    "--interval",
    type=Seconds(allow_zero=True),
    default=15.0,
    show_default=True,
    metavar="SECONDS",
    help="Longest wait for grinder_reconcile_runs_total to move (a full pass runs every 10 s).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the items as JSON.")
def check(
    stage: int,
    metrics_url: str | None,
    socket_path: str | None,
    config_path: str | None,
    budget_state: str | None,
    log_file: str | None,
    prometheus_url: str | None,
    interval: float,
    as_json: bool,
) -> int:
    """Check runbook 13's checklist for one stage: PASS / FAIL / MANUAL with evidence."""
    status: dict[str, Any] | None = None
    status_error: str | None = None
    file_cfg = None
    socket = None
    if config_path is not None:
        file_cfg = load_config_file(Path(config_path))
        status_error = f"settings read from {config_path}, not from the service"
    else:
        status, socket, status_error = service_status(socket_path)
    url = metrics_url_of(metrics_url, status)
    if budget_state is not None:
        budget_path: Path | None = Path(budget_state)
        budget_label = "--budget-state"
    else:
        budget_path = env_path(os.environ, "BUDGET_STATE_PATH", None)
        budget_label = "BUDGET_STATE_PATH"
    inputs = Inputs(
        stage=stage,
        metrics_url=url,
        read_metrics=lambda: fetch_scrape(url),
        status=status,
        status_label="control /status",
        status_error=status_error,
        file_config=file_cfg.reconcile if file_cfg else None,
        file_armed=file_cfg.service.armed if file_cfg else None,
        file_label=f"--config {config_path}",
        env=dict(os.environ),
        budget_path=budget_path,
        budget_label=budget_label,
        log_file=Path(log_file) if log_file else None,
        prometheus_url=prometheus_url,
        interval_s=interval,
    )
    header = [f"metrics:  {mask_url(url)}"]
    if status is not None:
        header.append(
            f"settings: control /status via {socket} (venue {status.get('venue')}, "
            f"mode {status.get('mode')}, runs {status.get('runs')})"
        )
    elif file_cfg is not None:
        header.append(f"settings: --config {config_path} (gates' live values from the metrics)")
    else:
        header.append(f"settings: unavailable ({status_error}); falling back to the metrics")
    result = run_stage(inputs)
    click.echo(render_json(result, header) if as_json else render(result, header))
    return EXIT_OK if result.passed else EXIT_FAILED
