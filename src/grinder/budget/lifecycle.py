"""The budget's life in a process: loaded at start, reset on request, saved at exit.

The service (``grinder.service.main``) and ``grinder smoke`` start the same way:

1. ``load``, before anything starts, changing nothing: the store is chosen (the shared
   one with HA, else ``BUDGET_STATE_PATH``'s file, else memory) and read; a corrupt or
   unreadable state, or a path that is no regular file, is ``BudgetStateError`` (exit 2)
   naming ``BUDGET_STATE_PATH``. ``--reset-budget-state`` reads nothing, but a path it
   could not reset is refused here too. The warnings are found here: a file older than
   ``BUDGET_STATE_STALE_HOURS`` (``stale_warning``), a state dated in the future.
2. ``prepare``: the tracker to run with and what to print first -- the warnings, or,
   with ``--reset-budget-state``, the store reset, a fresh day saved and the reset line.
3. ``at_exit``: the store's last write (``ExitSave``), made by the service with its
   other end-of-run files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from grinder.budget.ledger import STALE_HINT, BudgetStateError, future_warning, reset_line
from grinder.budget.stores import BudgetStore, ExitSave, FileBudgetStore, MemoryBudgetStore
from grinder.budget.tracker import BudgetTracker
from grinder.clock import Clock, wall_clock_ms
from grinder.reconcile.config import ReconcileConfig


@dataclass(frozen=True, slots=True)
class BudgetPlace:
    """Where the process keeps its daily budget, as configured: ``BUDGET_STATE_PATH``
    (with HA, the shared store's local copy) and the shared store, if any."""

    path: Path | None
    stale_hours: float
    shared: BudgetStore | None = None

    def store(self) -> BudgetStore:
        if self.shared is not None:
            return self.shared
        return FileBudgetStore(self.path) if self.path is not None else MemoryBudgetStore()


@dataclass(frozen=True, slots=True)
class LoadedBudget:
    tracker: BudgetTracker | None
    """As stored; None with ``--reset-budget-state``."""
    stale_warning: str | None
    future_warning: str | None = None
    """One line when the file was dated in the future (its counts kept for today)."""


def load(
    config: ReconcileConfig,
    place: BudgetPlace,
    *,
    reset: bool,
    now_ms: int,
    clock: Clock = wall_clock_ms,
) -> LoadedBudget:
    """Read the budget state, changing nothing (see the module doc, step 1)."""
    path = place.path
    try:
        if path is not None:
            FileBudgetStore(path).check()
        if reset:
            return LoadedBudget(None, None)
        warning = stale_warning(path, now_ms, place.stale_hours) if path else None
        if place.shared is None:
            tracker = BudgetTracker(config=config, store=place.store(), clock=clock)
    except BudgetStateError as exc:
        raise BudgetStateError(f"BUDGET_STATE_PATH: {exc}") from None
    if place.shared is not None:  # the shared budget (BUDGET_STATE_PATH is its local copy)
        tracker = BudgetTracker(config=config, store=place.shared, clock=clock)
    future = tracker.from_the_future
    shown = future_warning(str(path), future, now_ms) if future is not None and path else None
    return LoadedBudget(tracker, warning, shown)


def prepare(
    loaded: LoadedBudget,
    config: ReconcileConfig,
    place: BudgetPlace,
    *,
    now_ms: int,
    clock: Clock = wall_clock_ms,
) -> tuple[BudgetTracker, tuple[str, ...]]:
    """The tracker to run with, and the texts to print before the run, in order: the
    loaded one with its warnings, or -- ``loaded`` from a reset -- a fresh day, written
    to the store at once, and the reset line (CONTRACT §6)."""
    if loaded.tracker is not None:
        texts = (loaded.future_warning, loaded.stale_warning)
        return loaded.tracker, tuple(t for t in texts if t)
    store = place.store()
    store.reset(now_ms)  # BudgetStateError (exit 2) when it cannot be reset
    tracker = BudgetTracker(config=config, store=store, clock=clock)
    store.save(tracker.state)
    shown = store.reset_shown(tracker.state.day)
    return tracker, (reset_line(None if shown is None else str(shown)),)


def at_exit(tracker: BudgetTracker) -> ExitSave | None:
    """The budget's write at the process's exit (None: nothing to write)."""
    return tracker.exit_save()


def stale_warning(path: Path, now_ms: int, threshold_hours: float) -> str | None:
    """The warning block of runbook 13 when ``path`` is older than the threshold."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BudgetStateError(f"{path}: cannot stat budget state ({exc.strerror})") from None
    age_hours = (now_ms / 1000 - mtime) / 3600
    if age_hours <= threshold_hours:
        return None
    modified = datetime.fromtimestamp(mtime, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"WARNING: Budget state is stale ({age_hours:.1f}h old, threshold={threshold_hours:g}h)\n"
        f"         Last modified: {modified}\n"
        f"         Path: {path}\n"
        f"         {STALE_HINT}"
    )
