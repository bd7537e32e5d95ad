"""Running the service from the command line: files, budget, artifacts, exit codes.

Exit codes: 0 after a normal stop (duration over, SIGINT, SIGTERM, even one that
came while the service was starting); 1 after a
fatal error, or when a file of the run's end could not be written (one line on
stderr; every other artifact still written); 2 for bad usage, configuration,
credentials, an unusable path or a corrupt budget file, found before the run
starts -- or, for a metrics port or control socket that cannot be bound, when
the service starts (then recorded in the run directory like a fatal error).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grinder import fileio
from grinder.budget import lifecycle
from grinder.budget.ledger import BudgetStateError
from grinder.budget.lifecycle import BudgetPlace, LoadedBudget
from grinder.budget.tracker import BudgetTracker
from grinder.cli.errors import EXIT_FAILED, EXIT_USAGE, CommandFailed
from grinder.clock import wall_clock_ms
from grinder.exchange.port import ExchangeError
from grinder.ha.runtime import HaRuntime
from grinder.reconcile.config import ConfigError
from grinder.reconcile.labels import Mode
from grinder.redaction import mask_url
from grinder.reporting.audit import AuditWriter
from grinder.reporting.logs import FILE_ONLY, configure_logging
from grinder.service.app import ReconcileService
from grinder.service.artifacts import (
    BUDGET_STATE,
    METRICS_PROM,
    METRICS_SUMMARY,
    RunDir,
    Tee,
    clean_old_days,
    final_metrics_path,
    write_metrics_prom,
    write_metrics_summary,
)
from grinder.service.control import default_socket_path
from grinder.service.operator_stores import open_operator_store, print_operator_state
from grinder.service.options import ServiceOptions
from grinder.service.preflight import check_inputs, check_outputs
from grinder.service.runtime_status import ServiceRuntime, venue_line
from grinder.service.shutdown import unless_stopped
from grinder.service.venue import check_venue

log = logging.getLogger("grinder.service")
RULE = "=" * 60


def print_configuration(tee: Tee, opts: ServiceOptions, run_dir: RunDir | None) -> None:
    cfg = opts.reconcile
    tee.line(RULE)
    tee.line("  GRINDER RECONCILE SERVICE")
    tee.line(RULE)
    rows: list[tuple[str, Any]] = [
        ("venue", opts.venue + (f" ({mask_url(opts.venue_url)})" if opts.venue_url else "")),
        ("mode", "DRY-RUN" if cfg.dry_run else "LIVE"),
        ("action", cfg.action.value),
        ("dry_run", cfg.dry_run),
        ("allow_active", cfg.allow_active_remediation),
        ("armed", opts.armed),
        ("allow_mainnet", opts.env.allow_mainnet_trade),
        ("symbol_whitelist", list(cfg.symbol_whitelist)),
        ("symbols", list(cfg.symbols) or "all"),
        ("max_orders", cfg.max_orders_per_action),
        ("max_symbols", cfg.max_symbols_per_action),
        ("cooldown_seconds", cfg.cooldown_seconds),
        ("max_notional", f"{cfg.max_flatten_notional_usdt} USDT"),
        ("duration", f"{opts.duration_s:g}s" if opts.duration_s else "until signalled"),
        ("expected_state", _expected_label(opts)),
        ("incidents", _ledger_label(opts)),
        ("ha", _ha_label(opts)),
        ("config_file", str(opts.config_path) if opts.config_path else "-"),
        ("run_dir", str(run_dir.path) if run_dir else "-"),
    ]
    for key, value in rows:
        tee.line(f"  {key + ':':<19}{value}")


def _expected_label(opts: ServiceOptions) -> str:
    if opts.expected_db:
        return str(opts.expected_db)
    return "redis (shared)" if opts.ha is not None else "memory"


def _ledger_label(opts: ServiceOptions) -> str:
    if opts.ledger_db:
        return str(opts.ledger_db)
    return "redis (shared)" if opts.ha is not None else "memory (--ledger-db FILE keeps them)"


def _ha_label(opts: ServiceOptions) -> str:
    ha = opts.ha
    if ha is None:
        return "off"
    cfg = ha.config
    return (
        f"redis {mask_url(ha.redis_url)} namespace={cfg.namespace} instance={ha.instance_id} "
        f"lease={cfg.lease_ttl_s:g}s"
    )


def budget_place(opts: ServiceOptions, ha: HaRuntime | None = None) -> BudgetPlace:
    """Where the service keeps its daily budget: Redis with HA (``BUDGET_STATE_PATH`` its
    local copy), else ``BUDGET_STATE_PATH``, else memory."""
    shared = ha.budget_store if ha is not None else None
    return BudgetPlace(opts.env.budget_state_path, opts.env.budget_state_stale_hours, shared)


def load_budget(opts: ServiceOptions, now_ms: int, ha: HaRuntime | None = None) -> LoadedBudget:
    """Read the budget state, changing nothing (``grinder.budget.lifecycle.load``): bad
    state is ``BudgetStateError`` (exit 2) before anything starts."""
    return lifecycle.load(
        opts.reconcile, budget_place(opts, ha), reset=opts.reset_budget_state, now_ms=now_ms
    )


def prepare_budget(
    opts: ServiceOptions,
    tee: Tee,
    now_ms: int,
    ha: HaRuntime | None = None,
    loaded: LoadedBudget | None = None,
) -> BudgetTracker:
    """The budget the service runs with: ``loaded`` (read by ``load_budget`` when not given),
    with its warnings printed, or a fresh one written with ``--reset-budget-state``."""
    if loaded is None:
        loaded = load_budget(opts, now_ms, ha)
    tracker, texts = lifecycle.prepare(
        loaded, opts.reconcile, budget_place(opts, ha), now_ms=now_ms
    )
    for text in texts:
        for line in text.splitlines():
            tee.line(line)
    return tracker


def run_service(opts: ServiceOptions, env: Mapping[str, str] | None = None) -> int:
    """Run until stopped; returns the exit code (0: stopped normally).

    Bad input is found first (``grinder.service.preflight``, the budget file):
    ``ConfigError`` / ``BudgetStateError`` propagate (exit 2) before the run directory
    is created and before any file is written (at most the folders of the log file,
    ``BUDGET_STATE_PATH`` and ``GRINDER_AUDIT_PATH`` have been created, and the log file
    opened). From then on the run directory's ``stdout.log`` always ends with
    ``exit_code=N``; a failure is recorded there (a fatal one in the log file too, as
    ``SERVICE_FATAL``) before it is raised (``CommandFailed``, or the error itself) for
    ``run_command`` to report in one line on stderr.
    """
    src = os.environ if env is None else env
    credentials = check_venue(opts, src)
    control = opts.control_socket or default_socket_path(src)
    check_inputs(opts, control, src)
    try:
        configure_logging(log_file=opts.log_file)  # first: what HA and the budget log lands there
    except OSError as exc:
        raise ConfigError(
            f"--log-file: cannot open {opts.log_file} for appending ({exc.strerror or exc})"
        ) from None
    ha = (
        HaRuntime(opts.ha, budget_mirror=opts.env.budget_state_path)
        if opts.ha is not None
        else None
    )
    loaded = load_budget(opts, wall_clock_ms(), ha)
    operator = open_operator_store(opts, control, ha)
    check_outputs(opts)
    now = datetime.now(UTC)
    run_dir = None
    if opts.artifacts_dir is not None:
        clean_old_days(opts.artifacts_dir, opts.artifact_ttl_days, now.date())
        run_dir = RunDir.create(opts.artifacts_dir, now)
    tee = Tee(run_dir.stdout_log if run_dir else None)
    try:
        print_configuration(tee, opts, run_dir)
        print_operator_state(tee, operator)
        budget = prepare_budget(opts, tee, wall_clock_ms(), ha, loaded)
        audit_path = opts.audit_path(run_dir.audit if run_dir else None)
        audit = AuditWriter(audit_path) if audit_path is not None else None
        service = ReconcileService(
            opts,
            credentials=credentials,
            budget=budget,
            audit=audit,
            control_socket=control,
            env=src,
            ha=ha,
            runtime=ServiceRuntime.for_run(opts, src, control, run_dir, audit_path),
            operator_store=operator.store,
            operator_mirror=operator.mirror,
        )
        code, fatal = asyncio.run(_serve(service, tee))
        failed = write_artifacts(service, opts, run_dir, code, tee)
    except BaseException as exc:
        if isinstance(exc, ConfigError | BudgetStateError):
            code, text = EXIT_USAGE, str(exc)  # as run_command reports them
        else:
            code = 130 if isinstance(exc, KeyboardInterrupt) else EXIT_FAILED
            text = " ".join(f"{type(exc).__name__}: {exc}".split())
        _record_end(tee, code, text, fatal=True)
        tee.close()
        raise
    code = exit_code_after(code, failed)
    error = fatal
    if failed:
        text = "cannot write " + "; ".join(failed)
        error = text if fatal is None else f"{fatal}; also {text}"
    if fatal is not None:
        log.error("SERVICE_FATAL exit_code=%d error=%s", code, fatal, extra=FILE_ONLY)
    _record_end(tee, code, error, fatal=False)
    tee.close()
    if error is not None:
        raise CommandFailed(error, code)
    return code


def exit_code_after(code: int, failed_writes: list[str]) -> int:
    """A run whose artifacts could not all be written did not succeed: 1 (unless worse)."""
    return EXIT_FAILED if failed_writes and code == 0 else code


def _record_end(tee: Tee, code: int, error: str | None, *, fatal: bool) -> None:
    """The run's end in ``stdout.log`` (and, when ``fatal``, in the log file as
    ``SERVICE_FATAL``); stderr gets the error in one line from ``run_command``."""
    if error is not None:
        if fatal:
            log.error("SERVICE_FATAL exit_code=%d error=%s", code, error, extra=FILE_ONLY)
        tee.record(f"error: {error}")
    tee.line(f"exit_code={code}")


async def _serve(service: ReconcileService, tee: Tee) -> tuple[int, str | None]:
    try:
        service.install_signals()
        running = None
        try:
            running = await unless_stopped(service.start(), service.stop, "start")
        except ExchangeError:
            if not service.stop.is_set():
                raise
        if running is None or service.stop.is_set():  # stopped while starting: a normal stop
            return 0, None
        tee.line(f"metrics: {running.metrics_url}")
        tee.line(f"control: {service.control_socket}")
        tee.line(venue_line(running.venue))
        tee.line("ready: first snapshot in; reconciling")
        await running.loop.run_until_stopped()
        return 0, None
    except (ConfigError, BudgetStateError) as exc:
        return EXIT_USAGE, str(exc)
    except Exception as exc:
        return EXIT_FAILED, " ".join(f"{type(exc).__name__}: {exc}".split())
    finally:
        await service.close()


def _reason(exc: Exception, path: Path | None) -> str:
    """Why a write failed, naming the file at fault when it is not ``path`` itself."""
    if not isinstance(exc, OSError) or not exc.strerror:
        return str(exc)
    if exc.filename is not None and (path is None or Path(exc.filename) != path):
        return f"{exc.strerror}: {exc.filename}"
    return exc.strerror


def write_artifacts(
    service: ReconcileService,
    opts: ServiceOptions,
    run_dir: RunDir | None,
    code: int,
    tee: Tee,
) -> list[str]:
    """Write every file of the run's end, each on its own, the budget file first; returns
    the ones that failed (``what path (reason)``), each also logged as ``ARTIFACT_WRITE_FAILED``.
    """
    report = service.tally.last_report
    written: list[Path] = []
    failed: list[str] = []

    def attempt(what: str, path: Path | None, write: Callable[[], object]) -> None:
        try:
            write()
        except (OSError, BudgetStateError) as exc:
            reason = _reason(exc, path)
            shown = what if path is None or str(path) in reason else f"{what} {path}"
            failed.append(f"{shown} ({reason})")
            log.error(
                "ARTIFACT_WRITE_FAILED file=%s path=%s error=%s",
                what,
                path if path is not None else "-",
                " ".join(reason.split()),
                extra=FILE_ONLY,
            )
        else:
            if path is not None:
                written.append(path)

    final = lifecycle.at_exit(service.budget)
    if final is not None:  # the budget first (the file's day kept current)
        attempt(final.what, final.path, final.write)
    metrics_out = final_metrics_path(opts.metrics_out, run_dir)
    if metrics_out is not None:
        what = "--metrics-out" if opts.metrics_out is not None else METRICS_PROM
        attempt(what, metrics_out, lambda: write_metrics_prom(metrics_out, service.registry))
    if run_dir is not None:
        attempt(
            BUDGET_STATE,
            run_dir.budget_state,
            lambda: fileio.write_json_atomic(run_dir.budget_state, service.budget.state.to_json()),
        )
        summary = {
            "exit_code": exit_code_after(code, failed),
            "runs": service.tally.runs,
            "venue": opts.venue,
            "mode": Mode.DRY_RUN if opts.reconcile.dry_run else Mode.LIVE,
            "last_run": report.summary() if report else None,
        }
        attempt(
            METRICS_SUMMARY,
            run_dir.metrics_summary,
            lambda: write_metrics_summary(run_dir.metrics_summary, service.registry, summary),
        )
    tee.line(RULE)
    tee.line("  SUMMARY")
    tee.line(RULE)
    last = report.summary() if report else {}
    tee.line(f"  runs:              {service.tally.runs}")
    tee.line(f"  mismatches (last): {last.get('mismatches_total', 0)}")
    tee.line(f"  budget calls used: {service.budget.state.calls_used_day}")
    for path in written:
        tee.line(f"  wrote:             {path}")
    for text in failed:
        tee.line(f"  NOT written:       {text}")
    return failed
