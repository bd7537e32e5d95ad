"""The daily budget while the service runs: one tracker, over whichever store keeps it.

``BudgetTracker`` holds today's usage (``state``), judges a call against the limits in
force (``check``: ``budget_verdict``) and pays for it (``reserve``: the store first,
then the count in memory). It asks every store the same way (``BudgetStore``); which
store it holds -- memory, a file, the shared Redis one -- is decided once, when it is
built.
"""

from __future__ import annotations

from decimal import Decimal

from grinder.budget.ledger import (
    BudgetRefused,
    BudgetState,
    BudgetStateError,
    RunBudget,
    budget_verdict,
    from_the_future,
    kept_for_today,
    utc_day,
)
from grinder.budget.stores import BudgetStore, ExitSave, MemoryBudgetStore
from grinder.clock import Clock, wall_clock_ms
from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.labels import BlockReason
from grinder.reconcile.types import ZERO


class BudgetTracker:
    """Checks and records spending against the per-run and per-day limits.

    With ``store`` None the daily usage lives in memory only (``MemoryBudgetStore``:
    dry-run's shadow budget, and tests). The store is read once, here: a state dated in
    the future keeps its counts for today (``from_the_future`` is the state as loaded).
    """

    def __init__(
        self,
        config: ReconcileConfig,
        store: BudgetStore | None = None,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.config = config
        self._given = store
        self._keeper: BudgetStore = store if store is not None else MemoryBudgetStore()
        self.clock = clock
        self.from_the_future: BudgetState | None = None
        """The state as loaded when it was dated in the future (its counts were kept for
        today)."""
        loaded = self._keeper.load()
        now = clock()
        if loaded is not None and from_the_future(loaded, now):
            self.from_the_future = loaded
            loaded = kept_for_today(loaded, now)
        self.state: BudgetState = loaded or BudgetState(day=utc_day(now))

    @property
    def store(self) -> BudgetStore | None:
        """The store it was given; None: memory only."""
        return self._given

    def _today(self, now_ms: int) -> BudgetState:
        day = utc_day(now_ms)
        if self.state.day != day:
            self.state = BudgetState(day=day, updated_ts_ms=now_ms)
        return self.state

    def check(self, run: RunBudget, notional: Decimal, now_ms: int) -> BlockReason | None:
        """The first budget limit one more call of ``notional`` would break, if any."""
        return budget_verdict(self.config, self._today(now_ms), run, notional)[0]

    def today(self, now_ms: int) -> BudgetState:
        """Today's usage as ``check`` counts it, without changing the tracker (a state of
        an earlier day counts as a fresh day)."""
        day = utc_day(now_ms)
        return self.state if self.state.day == day else BudgetState(day=day)

    def reserve(self, run: RunBudget, notional: Decimal, now_ms: int) -> None:
        """Record one call of ``notional``: in the store first, then counted in memory.

        A shared store decides atomically and may raise ``BudgetRefused`` (with its
        fresher usage, kept when it is today's); nothing is counted then.
        """
        day = self._today(now_ms)
        try:
            new_state = self._keeper.reserve(
                day,
                notional,
                now_ms,
                max_calls_per_day=self.config.max_calls_per_day,
                max_notional_per_day=self.config.max_notional_per_day,
            )
        except BudgetRefused as exc:
            if exc.state is not None and exc.state.day == day.day:
                self.state = exc.state
            raise
        self.state = new_state
        run.calls += 1
        run.notional += notional

    def sync(self, now_ms: int) -> bool:
        """Pick up what other instances spent (a shared store's); False when the store
        could not be read.

        An unreachable store keeps the last known usage: the reservation, which
        asks the store itself, is what decides.
        """
        day = self._today(now_ms).day
        try:
            fetched = self._keeper.fetch(day)
        except BudgetStateError:
            return False
        if fetched is not None and fetched.day == day:
            self.state = fetched
        return True

    def calls_remaining_day(self, now_ms: int) -> int:
        return max(0, self.config.max_calls_per_day - self._today(now_ms).calls_used_day)

    def notional_remaining_day(self, now_ms: int) -> Decimal:
        return max(ZERO, self.config.max_notional_per_day - self._today(now_ms).notional_used_day)

    def exit_save(self) -> ExitSave | None:
        """The store's write of today's usage at the process's exit (None: nothing to
        write)."""
        return self._keeper.exit_save(self.state)

    def shadow(self) -> BudgetTracker:
        """An in-memory copy for dry-run: spends nothing real, persists nothing."""
        copy = BudgetTracker(config=self.config, store=None, clock=self.clock)
        copy.state = self.state
        return copy
