"""Remediation budget: calls and notional per run and per UTC day.

The daily part persists in a JSON file (``BUDGET_STATE_PATH``), written
atomically (temp file, fsync, rename, fsync of the directory) and **before** the
exchange call it pays for: a crash between the two over-counts one call, never
under-counts. A file that cannot be read or parsed is an error, never a silently
fresh budget; so is a path that is not a regular file (a FIFO is never opened for
reading: it would wait for a writer forever) and a number beyond what a day can
hold. A file dated after today (clock moved back) keeps its counts, with a warning
(``from_the_future``): usage is never lowered.

Several instances (HA) share the daily budget through a ``SharedBudgetStore``
(``grinder.ha.budget.RedisBudgetStore``): instead of load-then-save, the store
reserves atomically -- limits, fencing and increment in one step -- and may
refuse (``BudgetRefused``), in which case the exchange call is not made.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from grinder import fileio
from grinder.clock import Clock, wall_clock_ms
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
        """The state in ``data`` (parsed by ``parse_state_text``), or ``BudgetStateError``
        naming ``source`` and the field."""
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


class _Unreadable(str):
    """A JSON value kept as its text because it is no number the state can hold:
    an integer past Python's digit limit, ``NaN``, ``Infinity``."""


def _json_int(text: str) -> int | _Unreadable:
    if len(text.lstrip("-")) > 30:
        return _Unreadable(text)
    return int(text)


def parse_state_text(text: str) -> Any:
    """JSON with exact numbers: floats as ``Decimal``, absurd numbers kept as
    ``_Unreadable`` text for the field check to name (``ValueError`` if not JSON)."""
    return json.loads(text, parse_int=_json_int, parse_float=Decimal, parse_constant=_Unreadable)


def _is_date(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return False
    return True


def _decimal(value: Any) -> Decimal | None:
    """A finite number from a string, an integer or a JSON float; None otherwise."""
    if isinstance(value, _Unreadable | bool):
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
    if isinstance(value, _Unreadable):
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


class BudgetStore(Protocol):
    """Where the daily budget lives between runs."""

    def load(self) -> BudgetState | None: ...

    def save(self, state: BudgetState) -> None: ...


@runtime_checkable
class SharedBudgetStore(Protocol):
    """A budget store several instances share.

    ``reserve`` checks the day's limits (and whatever else the store guards, such
    as the HA fencing token) and records the call in one atomic step; it raises
    ``BudgetRefused`` when the call must not be made, ``BudgetStateError`` when
    the state is unusable. ``fetch`` reads the day's usage as the store has it
    (``BudgetStateError`` when it cannot). ``save`` must never lower the shared
    usage.
    """

    def load(self) -> BudgetState | None: ...

    def save(self, state: BudgetState) -> None: ...

    def fetch(self, day: str) -> BudgetState | None: ...

    def reserve(
        self,
        current: BudgetState,
        notional: Decimal,
        now_ms: int,
        *,
        max_calls_per_day: int,
        max_notional_per_day: Decimal,
    ) -> BudgetState: ...


class FileBudgetStore:
    """The daily budget in a JSON file, replaced atomically on every save."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def check(self) -> bool:
        """Whether a file is there; ``BudgetStateError`` when the path is there but is no
        regular file (a FIFO, folder, device or socket): never read, replaced or removed."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise BudgetStateError(
                f"{self.path}: cannot read budget state ({exc.strerror})"
            ) from None
        _must_be_regular(self.path, info.st_mode)
        return True

    def load(self) -> BudgetState | None:
        if not self.check():
            return None
        # O_NONBLOCK: should a FIFO replace the file since the check, opening it does not
        # wait for a writer; the check of the opened file below refuses it.
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BudgetStateError(
                f"{self.path}: cannot read budget state ({exc.strerror})"
            ) from None
        try:
            info = os.fstat(fd)
            _must_be_regular(self.path, info.st_mode)
            if info.st_size > MAX_STATE_BYTES:
                raise BudgetStateError(
                    f"{self.path}: budget state is {info.st_size} bytes, more than a budget "
                    f"state file ever is ({MAX_STATE_BYTES})"
                )
            raw = os.read(fd, MAX_STATE_BYTES + 1)
        except OSError as exc:
            raise BudgetStateError(
                f"{self.path}: cannot read budget state ({exc.strerror})"
            ) from None
        finally:
            os.close(fd)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BudgetStateError(f"{self.path}: budget state is not UTF-8 text") from None
        try:
            data = parse_state_text(text)
        except (ValueError, RecursionError) as exc:
            why = " ".join(str(exc).split())[:200]
            raise BudgetStateError(f"{self.path}: budget state is not valid JSON ({why})") from None
        return BudgetState.from_json(data, source=str(self.path))

    def save(self, state: BudgetState) -> None:
        self.check()
        write_json_atomic(self.path, state.to_json())

    def save_unless_behind(self, state: BudgetState) -> bool:
        """Save ``state`` unless the file already records more use (a later day, or more
        calls or notional the same day): another process wrote it meanwhile, and writing
        this one back would under-count. Returns whether it was saved."""
        try:
            on_file = self.load()
        except BudgetStateError:
            return False  # unreadable now: left as it is for the next start to report
        if on_file is not None and state.at_least(on_file) is not state:
            return False
        self.save(state)
        return True

    def reset(self) -> None:
        self.check()  # a FIFO, folder or device at the path is never removed
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise BudgetStateError(f"{self.path}: cannot remove ({exc.strerror})") from None


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _must_be_regular(path: Path, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    raise BudgetStateError(f"{path}: cannot read budget state: it is {kind}, not a regular file")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write the budget state atomically; failures are ``BudgetStateError``."""
    try:
        fileio.write_json_atomic(path, data)
    except OSError as exc:
        raise BudgetStateError(f"{path}: cannot write budget state ({exc.strerror})") from None


@dataclass(slots=True)
class RunBudget:
    """Calls and notional spent by one run (planned ones in dry-run, executed ones live)."""

    calls: int = 0
    notional: Decimal = ZERO


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


@dataclass
class BudgetTracker:
    """Checks and records spending against the per-run and per-day limits.

    With ``store`` None the daily usage lives in memory only (dry-run's shadow
    budget, and tests).
    """

    config: ReconcileConfig
    store: BudgetStore | None = None
    clock: Clock = field(default=wall_clock_ms)
    state: BudgetState = field(init=False)
    from_the_future: BudgetState | None = field(init=False, default=None)
    """The state as loaded when it was dated in the future (its counts were kept for today)."""

    def __post_init__(self) -> None:
        loaded = self.store.load() if self.store is not None else None
        now = self.clock()
        if loaded is not None and from_the_future(loaded, now):
            self.from_the_future = loaded
            loaded = kept_for_today(loaded, now)
        self.state = loaded or BudgetState(day=utc_day(now))

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
        """Record one call of ``notional``: persisted first, then counted in memory.

        With a ``SharedBudgetStore`` the store decides atomically and may raise
        ``BudgetRefused``; nothing is counted then.
        """
        day = self._today(now_ms)
        store = self.store
        if isinstance(store, SharedBudgetStore):
            try:
                new_state = store.reserve(
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
        else:
            new_state = replace(
                day,
                calls_used_day=day.calls_used_day + 1,
                notional_used_day=day.notional_used_day + notional,
                updated_ts_ms=now_ms,
            )
            if store is not None:
                store.save(new_state)
        self.state = new_state
        run.calls += 1
        run.notional += notional

    def sync(self, now_ms: int) -> bool:
        """Pick up what other instances spent (shared stores only); False when not refreshed.

        An unreachable store keeps the last known usage: the reservation, which
        asks the store itself, is what decides.
        """
        store = self.store
        if not isinstance(store, SharedBudgetStore):
            return False
        day = self._today(now_ms).day
        try:
            fetched = store.fetch(day)
        except BudgetStateError:
            return False
        if fetched is not None and fetched.day == day:
            self.state = fetched
        return True

    def calls_remaining_day(self, now_ms: int) -> int:
        return max(0, self.config.max_calls_per_day - self._today(now_ms).calls_used_day)

    def notional_remaining_day(self, now_ms: int) -> Decimal:
        return max(ZERO, self.config.max_notional_per_day - self._today(now_ms).notional_used_day)

    def shadow(self) -> BudgetTracker:
        """An in-memory copy for dry-run: spends nothing real, persists nothing."""
        copy = BudgetTracker(config=self.config, store=None, clock=self.clock)
        copy.state = self.state
        return copy


def from_the_future(state: BudgetState, now_ms: int) -> bool:
    """Dated after today (UTC), or updated more than ``MAX_CLOCK_SKEW_MS`` ahead of now:
    written before the clock was set back."""
    return state.day > utc_day(now_ms) or state.updated_ts_ms > now_ms + MAX_CLOCK_SKEW_MS


def kept_for_today(state: BudgetState, now_ms: int) -> BudgetState:
    """A future-dated state's counts, charged to today: usage is never lowered by a clock."""
    return replace(state, day=utc_day(now_ms), updated_ts_ms=min(state.updated_ts_ms, now_ms))


def future_warning(where: Path | str, state: BudgetState, now_ms: int) -> str:
    """The one line printed when a budget state dated in the future is loaded."""
    updated = datetime.fromtimestamp(state.updated_ts_ms / 1000, tz=UTC)
    return (
        f"WARNING: budget state {where} is dated in the future (day {state.day}, updated "
        f"{updated:%Y-%m-%d %H:%M:%S} UTC; now {utc_day(now_ms)}): its counts are kept for "
        f"today (calls_used_day={state.calls_used_day}, "
        f"notional_used_day={state.notional_used_day}); check the clock"
    )


STALE_HINT = "Consider using --reset-budget-state for a clean start."


def reset_line(path: Path | str | None) -> str:
    """What ``--reset-budget-state`` prints (CONTRACT §6); ``path`` None: no file to reset."""
    if path is None:
        return "budget_state_reset=1 path=- (no BUDGET_STATE_PATH: budget kept in memory)"
    return f"budget_state_reset=1 path={path}"


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
