"""``grinder ceremony check --stage N``: runbook 13's checklist against a running service.

Reads the service, never the shell it runs in: its control socket's ``/status`` (the
settings in force and its ``runtime``: the environment it was started with, the paths of
its budget file, event log and run directory, its start time), its metrics
(``--metrics-url``; default the URL ``/status`` reports), and for stage 4 a Prometheus
server's loaded rules (``--prometheus-url``). ``--config FILE`` checks the settings of a
file instead of those in force; ``--budget-state`` and ``--log-file`` must name the
service's own files. A service that cannot be reached is one line and exit 2: nothing is
guessed from this shell. Prints every item of the stage PASS / FAIL / MANUAL with its
evidence; exits 0 only when no automatic item fails (1 otherwise).
"""

from __future__ import annotations

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
from grinder.redaction import mask_url
from grinder.service.options import load_config_file


def service_status(socket_path: str | None) -> tuple[dict[str, Any], Path]:
    """The control socket's ``/status`` and the socket's path; ``UsageError`` (exit 2, one
    line naming the socket) when the service cannot be reached."""
    path = socket_path_of(socket_path)
    status = call(str(path), "GET", "/status")
    if not isinstance(status, dict):
        raise UsageError(f"--socket: {path}: unexpected /status answer")
    return status, path


def _runtime_line(runtime: Any) -> str:
    if not isinstance(runtime, dict):
        return "runtime:  not reported (an older service): its environment and paths unknown"
    found = runtime.get("paths")
    paths = found if isinstance(found, dict) else {}
    shown = ", ".join(
        f"{name} {paths.get(name) or '-'}" for name in ("budget_state_path", "log_file", "run_dir")
    )
    return f"runtime:  {shown} (the service's, from /status)"


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
@file_option(
    "--budget-state",
    help="The service's daily budget file (default: the BUDGET_STATE_PATH the service runs "
    "with, from its /status).",
)
@file_option(
    "--log-file",
    help="The service's event log (default: the --log-file the service runs with, from its "
    "/status; runbook: /var/log/grinder/app.log).",
)
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
    file_cfg = load_config_file(Path(config_path)) if config_path is not None else None
    try:
        status, socket = service_status(socket_path)
    except UsageError as exc:
        raise UsageError(
            f"{exc.format_message()}; the checker reads the settings, environment and paths "
            "of the running service, never this shell's"
        ) from None
    url = metrics_url_of(metrics_url, status)
    runtime = status.get("runtime")
    read_from = f"settings read from {config_path}, not from the service"
    inputs = Inputs(
        stage=stage,
        metrics_url=url,
        read_metrics=lambda: fetch_scrape(url),
        status=status if file_cfg is None else None,
        status_label="control /status",
        status_error=read_from if file_cfg else None,
        file_config=file_cfg.reconcile if file_cfg else None,
        file_armed=file_cfg.service.armed if file_cfg else None,
        file_label=f"--config {config_path}",
        runtime=runtime if isinstance(runtime, dict) else None,
        budget_path=Path(budget_state) if budget_state is not None else None,
        log_file=Path(log_file) if log_file else None,
        prometheus_url=prometheus_url,
        interval_s=interval,
    )
    header = [f"metrics:  {mask_url(url)}"]
    if file_cfg is None:
        header.append(
            f"settings: control /status via {socket} (venue {status.get('venue')}, "
            f"mode {status.get('mode')}, runs {status.get('runs')})"
        )
    else:
        header.append(f"settings: --config {config_path} (gates' live values from the metrics)")
    header.append(_runtime_line(runtime))
    result = run_stage(inputs)
    click.echo(render_json(result, header) if as_json else render(result, header))
    return EXIT_OK if result.passed else EXIT_FAILED
