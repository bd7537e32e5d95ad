"""The budget's ledger, pure: a UTC day's usage, its file form, and the budget gate.

``BudgetState`` is one UTC day's usage (calls and notional); ``RunBudget`` one run's.
``budget_verdict`` is the budget gate: the first of the four limits (per run, then per
day; calls, then notional) one more call would break. ``charged`` is what a
reservation records. A state's JSON form (``to_json``, ``from_json``) is checked field
by field: a number beyond what a day can hold, a malformed day or an unknown schema is
``BudgetStateError`` naming the field, never a silently fresh budget. A state dated
after today (the clock was set back since it was written) keeps its counts, charged to
today (``from_the_future``, ``kept_for_today``): usage is never lowered by a clock.

Nothing here reads a file, the clock or the environment: the time is an argument. Where
the state is kept (a file, Redis) is ``grinder.budget.stores``; who holds it while the
service runs, ``grinder.budget.tracker``; loading, resetting and saving at exit,
``grinder.budget.lifecycle``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from grinder.reconcile.config import ReconcileConfig
from grinder.reconcile.labels import BlockReason
from grinder.reconcile.types import ZERO

SCHEMA_VERSION = 1
MAX_STATE_BYTES = 64 * 1024
"""A budget state file is about 150 bytes; anything past this is not one."""
MAX_CALLS_USED_DAY = 10_000_000
"""More calls than a day can hold (Binance allows 1,200 orders a minute: 1,728,000 a day)."""
MAX_NOTIONAL_USED_DAY = Decimal(10**12)
"""A trillion USDT: more notional than any account flattens in a day."""
MAX_TS_MS = 10**13
"""Milliseconds since the epoch until the year 2286."""
MAX_CLOCK_SKEW_MS = 60_000
"""How far ahead of the clock a file's ``updated_ts_ms`` may be before it counts as dated
in the future (the clock was set back since it was written)."""
_DAY_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class BudgetStateError(RuntimeError):
    """The budget state file is unreadable, corrupt, or cannot be written."""


def utc_day(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class BudgetState:
    """Usage for one UTC day."""

    day: str
    calls_used_day: int = 0
    notional_used_day: Decimal = ZERO
    updated_ts_ms: int = 0

    def at_least(self, other: BudgetState) -> BudgetState:
        """This usage raised to ``other``'s where ``other`` records more (a later day wins
        whole); ``self`` itself when ``other`` records nothing more."""
        if other.day != self.day:
            return other if other.day > self.day else self
        if (
            other.calls_used_day <= self.calls_used_day
            and other.notional_used_day <= self.notional_used_day
        ):
            return self
        return replace(
            self,
            calls_used_day=max(self.calls_used_day, other.calls_used_day),
            notional_used_day=max(self.notional_used_day, other.notional_used_day),
            updated_ts_ms=max(self.updated_ts_ms, other.updated_ts_ms),
        )

    def charged(self, notional: Decimal, now_ms: int) -> BudgetState:
        """This day's usage with one more call of ``notional``, made at ``now_ms``."""
        return replace(
            self,
            calls_used_day=self.calls_used_day + 1,
            notional_used_day=self.notional_used_day + notional,
            updated_ts_ms=now_ms,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "day": self.day,
            "calls_used_day": self.calls_used_day,
            "notional_used_day": str(self.notional_used_day),
            "updated_ts_ms": self.updated_ts_ms,
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str) -> BudgetState:
        """The state in ``data`` (parsed by ``budget.stores.parse_state_text``), or
        ``BudgetStateError`` naming ``source`` and the field."""
        if not isinstance(data, dict):
            raise BudgetStateError(f"{source}: budget state must be a JSON object")
        version = data.get("schema_version")
        if type(version) is not int or version != SCHEMA_VERSION:
            raise BudgetStateError(
                f"{source}: unsupported budget state schema_version {_shown(version)}"
            )
        for name in ("day", "calls_used_day", "notional_used_day"):
            if name not in data:
                raise BudgetStateError(f"{source}: corrupt budget state (no {name})")
        day = data["day"]
        if not isinstance(day, str) or not _DAY_TEXT.fullmatch(day) or not _is_date(day):
            raise BudgetStateError(f"{source}: day must be a date YYYY-MM-DD, got {_shown(day)}")
        calls = data["calls_used_day"]
        if type(calls) is not int or not 0 <= calls <= MAX_CALLS_USED_DAY:
            raise BudgetStateError(
                f"{source}: calls_used_day must be an integer from 0 to {MAX_CALLS_USED_DAY}, "
                f"got {_shown(calls)}"
            )
        notional = _decimal(data["notional_used_day"])
        if notional is None or not ZERO <= notional <= MAX_NOTIONAL_USED_DAY:
            raise BudgetStateError(
                f"{source}: notional_used_day must be a number from 0 to "
                f"{MAX_NOTIONAL_USED_DAY}, got {_shown(data['notional_used_day'])}"
            )
        updated = data.get("updated_ts_ms", 0)
        if type(updated) is not int or not 0 <= updated <= MAX_TS_MS:
            raise BudgetStateError(
                f"{source}: updated_ts_ms must be an integer from 0 to {MAX_TS_MS}, "
                f"got {_shown(updated)}"
            )
        return cls(day=day, calls_used_day=calls, notional_used_day=notional, updated_ts_ms=updated)


class Unreadable(str):
    """A JSON value kept as its text because it is no number the state can hold:
    an integer past Python's digit limit, ``NaN``, ``Infinity``."""


def _is_date(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return False
    return True


def _decimal(value: Any) -> Decimal | None:
    """A finite number from a string, an integer or a JSON float; None otherwise."""
    if isinstance(value, Unreadable | bool):
        return None
    if isinstance(value, str) and len(value) > 40:
        return None  # no count of USDT has that many digits
    if not isinstance(value, str | int | Decimal):
        return None
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _shown(value: Any) -> str:
    """``value`` for a one-line message: long texts and numbers shortened."""
    if isinstance(value, Unreadable):
        text = str(value)
        if len(text) > 30:
            return f"a number of {len(text.lstrip('-'))} digits"
        return text
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


class BudgetRefused(Exception):
    """A shared store refused a reservation: the write it would pay for must not happen.

    ``reason`` is the block reason (``not_leader`` for a fencing refusal or an
    unreachable store); ``state`` the store's fresher usage, when it told us.
    """

    def __init__(self, reason: BlockReason, detail: str, state: BudgetState | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.state = state


@dataclass(slots=True)
class RunBudget:
    """Calls and notional spent by one run (planned ones in dry-run, executed ones live)."""

    calls: int = 0
    notional: Decimal = ZERO


BUDGET_LIMITS = (
    "max_calls_per_run",
    "max_notional_per_run",
    "max_calls_per_day",
    "max_notional_per_day",
)
"""The settings the budget gate (``budget_verdict``) and a reservation judge by."""


def check_same_limits(gate: ReconcileConfig, *budgets: ReconcileConfig) -> None:
    """``ValueError`` unless each budget tracker's configuration sets the limits the budget
    gate's does: the gate judges a write by one, the reservation (and ``/status``'s
    remaining figures) by the other, so a difference would let one pass what the other
    counts against."""
    for budget in budgets:
        differ = [n for n in BUDGET_LIMITS if getattr(gate, n) != getattr(budget, n)]
        if differ:
            shown = ", ".join(f"{n} {getattr(gate, n)} != {getattr(budget, n)}" for n in differ)
            raise ValueError(f"the budget's limits are not the executor's: {shown}")


def budget_verdict(
    cfg: ReconcileConfig, day: BudgetState, run: RunBudget, notional: Decimal
) -> tuple[BlockReason | None, str]:
    """The budget gate, pure: the first of the four limits (per run, then per day; calls,
    then notional) that one more call of ``notional`` would break, with the figures that
    decided it in words -- or None and the figures when it fits."""
    limits = (
        (
            run.calls + 1 > cfg.max_calls_per_run,
            f"calls this run {run.calls} + 1 > max_calls_per_run {cfg.max_calls_per_run}",
            BlockReason.MAX_CALLS_PER_RUN,
        ),
        (
            run.notional + notional > cfg.max_notional_per_run,
            f"notional this run {run.notional} + {notional} > max_notional_per_run "
            f"{cfg.max_notional_per_run}",
            BlockReason.MAX_NOTIONAL_PER_RUN,
        ),
        (
            day.calls_used_day + 1 > cfg.max_calls_per_day,
            f"calls today {day.calls_used_day} + 1 > max_calls_per_day {cfg.max_calls_per_day}",
            BlockReason.MAX_CALLS_PER_DAY,
        ),
        (
            day.notional_used_day + notional > cfg.max_notional_per_day,
            f"notional today {day.notional_used_day} + {notional} > max_notional_per_day "
            f"{cfg.max_notional_per_day}",
            BlockReason.MAX_NOTIONAL_PER_DAY,
        ),
    )
    for exceeded, detail, reason in limits:
        if exceeded:
            return reason, detail
    return None, (
        f"today {day.calls_used_day}/{cfg.max_calls_per_day} calls, "
        f"{day.notional_used_day}/{cfg.max_notional_per_day} USDT; "
        f"this run {run.calls}/{cfg.max_calls_per_run} calls, "
        f"{run.notional}/{cfg.max_notional_per_run} USDT"
    )


def from_the_future(state: BudgetState, now_ms: int) -> bool:
    """Dated after today (UTC), or updated more than ``MAX_CLOCK_SKEW_MS`` ahead of now:
    written before the clock was set back."""
    return state.day > utc_day(now_ms) or state.updated_ts_ms > now_ms + MAX_CLOCK_SKEW_MS


def kept_for_today(state: BudgetState, now_ms: int) -> BudgetState:
    """A future-dated state's counts, charged to today: usage is never lowered by a clock."""
    return replace(state, day=utc_day(now_ms), updated_ts_ms=min(state.updated_ts_ms, now_ms))


def future_warning(where: str, state: BudgetState, now_ms: int) -> str:
    """The one line printed when a budget state dated in the future is loaded."""
    updated = datetime.fromtimestamp(state.updated_ts_ms / 1000, tz=UTC)
    return (
        f"WARNING: budget state {where} is dated in the future (day {state.day}, updated "
        f"{updated:%Y-%m-%d %H:%M:%S} UTC; now {utc_day(now_ms)}): its counts are kept for "
        f"today (calls_used_day={state.calls_used_day}, "
        f"notional_used_day={state.notional_used_day}); check the clock"
    )


STALE_HINT = "Consider using --reset-budget-state for a clean start."


def reset_line(path: str | None) -> str:
    """What ``--reset-budget-state`` prints (CONTRACT §6); ``path`` None: no file to reset."""
    if path is None:
        return "budget_state_reset=1 path=- (no BUDGET_STATE_PATH: budget kept in memory)"
    return f"budget_state_reset=1 path={path}"
