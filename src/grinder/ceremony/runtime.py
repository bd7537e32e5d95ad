"""What the checker knows of the service's runtime, and the items about the service's files.

The running service reports, in its control socket's ``/status`` (``runtime``,
``grinder.service.runtime_status``), the environment it was started with and the paths
it reads and writes. The checker reads those -- never the shell it runs in, whose
``BUDGET_STATE_PATH`` or ``GRINDER_ARTIFACTS_DIR`` says nothing about the service -- and
checks the files there: the daily budget file, the event log, the run directory. A file
the operator names (``--budget-state``, ``--log-file``) must be the service's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from grinder.budget.ledger import BudgetStateError, utc_day
from grinder.budget.stores import FileBudgetStore
from grinder.ceremony import logscan
from grinder.ceremony.checks import Inputs, Item, Status
from grinder.ceremony.sources import Scrape, SourceError, fmt_number

NO_RUNTIME = "the service does not report its runtime in /status (an older version)"


def runtime_paths(inputs: Inputs) -> Mapping[str, Any] | None:
    """The paths the service uses (None: not reported; a path it does not use is None)."""
    paths = inputs.runtime.get("paths") if inputs.runtime is not None else None
    return paths if isinstance(paths, Mapping) else None


def runtime_path(inputs: Inputs, name: str) -> Path | None:
    paths = runtime_paths(inputs)
    value = paths.get(name) if paths is not None else None
    return Path(value) if isinstance(value, str) and value else None


def service_env(inputs: Inputs) -> Mapping[str, str] | None:
    """The gate-relevant environment the service was started with (secrets redacted)."""
    env = inputs.runtime.get("env") if inputs.runtime is not None else None
    return env if isinstance(env, Mapping) else None


def env_text(inputs: Inputs, name: str) -> str:
    """``name`` in the service's environment at start, as evidence."""
    env = service_env(inputs)
    if env is None:
        return f"{name} in the service's environment unknown ({NO_RUNTIME})"
    if name in env:
        return f"service environment at start: {name}={env[name]}"
    return f"service environment at start: {name} unset"


def same_path(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()


def event_log(inputs: Inputs) -> tuple[Path | None, str | None]:
    """The event log to read -- ``--log-file``, else the service's own -- and what is wrong
    with it: a file the service does not write says nothing of the service (a missing or old
    file would read as "no mismatches")."""
    given, own, known = inputs.log_file, runtime_path(inputs, "log_file"), runtime_paths(inputs)
    if given is None:
        if known is None:
            return None, f"give --log-file ({NO_RUNTIME})"
        if own is None:
            return None, (
                "the service writes no log file (started without --log-file: its events go "
                "to its stderr only); start it with --log-file /var/log/grinder/app.log"
            )
        return own, None
    if known is not None and own is None:
        return given, (
            f"{given} is not the service's log: the service writes no log file (started "
            "without --log-file)"
        )
    if own is not None and not same_path(given, own):
        return given, f"{given} is not the service's log: it writes {own}"
    return given, None


def log_mismatches(inputs: Inputs) -> Item:
    title = "Mismatch history in the log: none unresolved"
    path, problem = event_log(inputs)
    if path is None:
        return Item("1.2", title, Status.MANUAL, f"{problem}; runbook 13 1.2 greps its log")
    if problem is not None:
        return Item("1.2", title, Status.FAIL, problem)
    try:
        found = logscan.review(path)
    except SourceError as exc:
        return Item("1.2", title, Status.FAIL, str(exc))
    if found.detected == 0:
        return Item(
            "1.2", title, Status.PASS, f"{path}: no RECONCILE_MISMATCH line ({found.lines} lines)"
        )
    text = (
        f"{path}: {found.detected} RECONCILE_MISMATCH, {found.cleared} RECONCILE_MISMATCH_CLEARED"
    )
    if found.unresolved:
        shown = "; ".join(found.unresolved[:5]) + (" …" if len(found.unresolved) > 5 else "")
        return Item(
            "1.2", title, Status.FAIL, f"{text}; unresolved in the running service: {shown}"
        )
    return Item("1.2", title, Status.PASS, f"{text}; every incident of the running service cleared")


def run_directory(inputs: Inputs) -> Item:
    """The service's own run directory (``GRINDER_ARTIFACTS_DIR`` in its environment)."""
    title = "Artifact run-directory enabled (recommended)"
    if runtime_paths(inputs) is None:
        return Item("2.4", title, Status.MANUAL, f"run directory unknown ({NO_RUNTIME})")
    root, run = runtime_path(inputs, "artifacts_dir"), runtime_path(inputs, "run_dir")
    if root is None or run is None:
        return Item(
            "2.4",
            title,
            Status.MANUAL,
            "the service runs without a run directory (GRINDER_ARTIFACTS_DIR unset in its "
            "environment); recommended: start it with GRINDER_ARTIFACTS_DIR="
            "/var/lib/grinder/artifacts",
        )
    if not run.is_dir():
        return Item(
            "2.4",
            title,
            Status.FAIL,
            f"the service's run directory {run} is not there (removed? run the check on the "
            "service's host)",
        )
    runs = sorted(root.glob("*/run_*"))
    return Item(
        "2.4",
        title,
        Status.PASS,
        f"the service's GRINDER_ARTIFACTS_DIR={root}: this run's directory {run}; "
        f"{len(runs)} run(s) there",
    )


def budget_file(inputs: Inputs, scrape: Scrape | None, item_id: str) -> Item:
    """The daily budget persists where the service keeps it: its ``BUDGET_STATE_PATH`` (as
    its runtime reports it), or Redis under HA; ``--budget-state`` must name that same file."""
    title = "Daily budget persisted (budget state file)"
    given, own = inputs.budget_path, runtime_path(inputs, "budget_state_path")
    store = inputs.runtime.get("budget_store") if inputs.runtime is not None else None
    label = "--budget-state" if given is not None else "service BUDGET_STATE_PATH"
    if runtime_paths(inputs) is None:
        if given is None:
            text = f"the service's budget file unknown ({NO_RUNTIME}): give --budget-state"
            return Item(item_id, title, Status.FAIL, text)
        path = given
    elif own is None:
        if store == "redis" and given is None:
            text = "the service keeps the daily budget in Redis, shared by the deployment (HA)"
            return Item(item_id, title, Status.PASS, text)
        text = (
            "the service runs without BUDGET_STATE_PATH (none in its environment): its daily "
            "budget lives in memory and a restart forgets what was spent; start it with "
            "BUDGET_STATE_PATH=/var/lib/grinder/budget.json"
        )
        if given is not None:
            text += f" (--budget-state {given} is a file the service does not use)"
        return Item(item_id, title, Status.FAIL, text)
    elif given is not None and not same_path(given, own):
        text = f"--budget-state {given} is not the service's budget file: it uses {own}"
        return Item(item_id, title, Status.FAIL, text)
    else:
        path = own
    return _budget_state(inputs, scrape, item_id, title, path, label)


def _budget_state(
    inputs: Inputs, scrape: Scrape | None, item_id: str, title: str, path: Path, label: str
) -> Item:
    """The budget file's content against what the service says it spent."""
    try:
        state = FileBudgetStore(path).load()
    except BudgetStateError as exc:
        return Item(item_id, title, Status.FAIL, f"{label}={path}: {exc}")
    service_calls = scrape.value("grinder_reconcile_budget_calls_used_day") if scrape else None
    if state is None:
        text = (
            f"{label}={path}: not written yet (the service writes it before "
            "every paid call, at exit, and with --reset-budget-state)"
        )
        if service_calls is None:
            return Item(item_id, title, Status.FAIL, text + "; the service's use is unknown")
        text += f"; service grinder_reconcile_budget_calls_used_day {fmt_number(service_calls)}"
        if service_calls > 0:
            return Item(
                item_id, title, Status.FAIL, text + " — the service spent calls: another path?"
            )
        return Item(item_id, title, Status.PASS, text + ": nothing spent yet")
    age_h = max(0.0, inputs.now() - path.stat().st_mtime) / 3600
    today = utc_day(int(inputs.now() * 1000))
    calls = state.calls_used_day if state.day == today else 0
    notional = state.notional_used_day if state.day == today else Decimal(0)
    evidence = (
        f"{label}={path}: day {state.day}, {state.calls_used_day} calls, "
        f"{state.notional_used_day} USDT (today: {calls} calls, {notional} USDT); "
        f"modified {age_h:.1f} h ago"
    )
    if service_calls is not None:
        evidence += f"; service grinder_reconcile_budget_calls_used_day {fmt_number(service_calls)}"
        if service_calls < calls:
            return Item(
                item_id,
                title,
                Status.FAIL,
                evidence + " — the file counts more than the service: another service's file?",
            )
    return Item(item_id, title, Status.PASS, evidence)
