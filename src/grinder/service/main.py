"""Running the service from the command line: files, budget, artifacts, exit codes.

Exit codes: 0 after a normal stop (duration over, SIGINT, SIGTERM); 1 after a
fatal error (one line on stderr; artifacts still written); 2 for bad usage,
configuration, credentials or a corrupt budget file, before anything starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grinder import fileio
from grinder.ha.connection import mask_url
from grinder.ha.runtime import HaRuntime
from grinder.reconcile.audit import AuditWriter
from grinder.reconcile.budget import (
    BudgetStateError,
    BudgetTracker,
    FileBudgetStore,
    reset_line,
    stale_warning,
)
from grinder.reconcile.config import ConfigError
from grinder.reconcile.logs import configure_logging
from grinder.reconcile.remediation import wall_clock_ms
from grinder.service.app import ReconcileService
from grinder.service.artifacts import (
    RunDir,
    Tee,
    clean_old_days,
    write_metrics_prom,
    write_metrics_summary,
)
from grinder.service.control import default_socket_path
from grinder.service.options import ServiceOptions
from grinder.service.venue import check_venue

log = logging.getLogger("grinder.service")
RULE = "=" * 60


def print_configuration(tee: Tee, opts: ServiceOptions, run_dir: RunDir | None) -> None:
    cfg = opts.reconcile
    tee.line(RULE)
    tee.line("  GRINDER RECONCILE SERVICE")
    tee.line(RULE)
    rows: list[tuple[str, Any]] = [
        ("venue", opts.venue + (f" ({opts.venue_url})" if opts.venue_url else "")),
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


def _ha_label(opts: ServiceOptions) -> str:
    ha = opts.ha
    if ha is None:
        return "off"
    cfg = ha.config
    return (
        f"redis {mask_url(ha.redis_url)} namespace={cfg.namespace} instance={ha.instance_id} "
        f"lease={cfg.lease_ttl_s:g}s"
    )


def prepare_budget(
    opts: ServiceOptions, tee: Tee, now_ms: int, ha: HaRuntime | None = None
) -> BudgetTracker:
    path = opts.env.budget_state_path
    if ha is not None:
        return _prepare_shared_budget(opts, tee, now_ms, ha)
    if path is None:
        if opts.reset_budget_state:
            tee.line(reset_line(None))
        return BudgetTracker(config=opts.reconcile, clock=wall_clock_ms)
    store = FileBudgetStore(path)
    if opts.reset_budget_state:
        store.reset()
        tracker = BudgetTracker(config=opts.reconcile, store=store, clock=wall_clock_ms)
        store.save(tracker.state)
        tee.line(reset_line(path))
        return tracker
    warning = stale_warning(path, now_ms, opts.env.budget_state_stale_hours)
    if warning:
        for line in warning.splitlines():
            tee.line(line)
    return BudgetTracker(config=opts.reconcile, store=store, clock=wall_clock_ms)


def _prepare_shared_budget(
    opts: ServiceOptions, tee: Tee, now_ms: int, ha: HaRuntime
) -> BudgetTracker:
    """HA: the daily budget lives in Redis; ``BUDGET_STATE_PATH``, when set, is a local copy."""
    store = ha.budget_store
    path = opts.env.budget_state_path
    if opts.reset_budget_state:
        store.reset(now_ms)  # BudgetStateError (exit 2) when Redis cannot be reached
        if store.mirror is not None:
            store.mirror.reset()
        tracker = BudgetTracker(config=opts.reconcile, store=store, clock=wall_clock_ms)
        store.save(tracker.state)
        shown = path if path is not None else store.day_key(tracker.state.day)
        tee.line(reset_line(shown))
        return tracker
    if path is not None:
        warning = stale_warning(path, now_ms, opts.env.budget_state_stale_hours)
        if warning:
            for line in warning.splitlines():
                tee.line(line)
    return BudgetTracker(config=opts.reconcile, store=store, clock=wall_clock_ms)


def run_service(opts: ServiceOptions, env: Mapping[str, str] | None = None) -> int:
    """Run until stopped; returns the exit code. ConfigError/BudgetStateError propagate."""
    src = os.environ if env is None else env
    credentials = check_venue(opts, src)
    now = datetime.now(UTC)
    run_dir = None
    if opts.artifacts_dir is not None:
        clean_old_days(opts.artifacts_dir, opts.artifact_ttl_days, now.date())
        run_dir = RunDir.create(opts.artifacts_dir, now)
    configure_logging(log_file=opts.log_file)
    tee = Tee(run_dir.stdout_log if run_dir else None)
    try:
        print_configuration(tee, opts, run_dir)
        ha = (
            HaRuntime(opts.ha, budget_mirror=opts.env.budget_state_path)
            if opts.ha is not None
            else None
        )
        budget = prepare_budget(opts, tee, wall_clock_ms(), ha)
        audit_path = opts.audit_path(run_dir.audit if run_dir else None)
        audit = AuditWriter(audit_path) if audit_path is not None else None
        control = opts.control_socket or default_socket_path(src)
        service = ReconcileService(
            opts,
            credentials=credentials,
            budget=budget,
            audit=audit,
            control_socket=control,
            env=src,
            ha=ha,
        )
        code, error = asyncio.run(_serve(service, tee))
        _write_artifacts(service, opts, run_dir, code, tee)
        if error is not None:
            log.error("SERVICE_FATAL error=%s", error)
            print(f"grinder reconcile: error: {error}", file=sys.stderr)
        tee.line(f"exit_code={code}")
        return code
    finally:
        tee.close()


async def _serve(service: ReconcileService, tee: Tee) -> tuple[int, str | None]:
    try:
        service.install_signals()
        await service.start()
        tee.line(f"metrics: {service.metrics_url}")
        tee.line(f"control: {service.control_socket}")
        tee.line("ready: first snapshot in; reconciling")
        await service.run_until_stopped()
        return 0, None
    except (ConfigError, BudgetStateError) as exc:
        return 2, str(exc)
    except Exception as exc:
        return 1, " ".join(f"{type(exc).__name__}: {exc}".split())
    finally:
        await service.close()


def _write_artifacts(
    service: ReconcileService,
    opts: ServiceOptions,
    run_dir: RunDir | None,
    code: int,
    tee: Tee,
) -> None:
    report = service.last_report
    summary = {
        "exit_code": code,
        "runs": service.runs,
        "venue": opts.venue,
        "mode": "dry_run" if opts.reconcile.dry_run else "live",
        "last_run": report.summary() if report else None,
    }
    metrics_out = opts.metrics_out or (run_dir.metrics_prom if run_dir else None)
    written: list[Path] = []
    try:
        if metrics_out is not None:
            write_metrics_prom(metrics_out, service.registry)
            written.append(metrics_out)
        if service.budget.store is not None:
            service.budget.store.save(service.budget.state)
        if run_dir is not None:
            write_metrics_summary(run_dir.metrics_summary, service.registry, summary)
            fileio.write_json_atomic(run_dir.budget_state, service.budget.state.to_json())
            written += [run_dir.metrics_summary, run_dir.budget_state]
    except (OSError, BudgetStateError) as exc:
        log.error("ARTIFACT_WRITE_FAILED error=%s", exc)
    tee.line(RULE)
    tee.line("  SUMMARY")
    tee.line(RULE)
    last = report.summary() if report else {}
    tee.line(f"  runs:              {service.runs}")
    tee.line(f"  mismatches (last): {last.get('mismatches_total', 0)}")
    tee.line(f"  budget calls used: {service.budget.state.calls_used_day}")
    for path in written:
        tee.line(f"  wrote:             {path}")
