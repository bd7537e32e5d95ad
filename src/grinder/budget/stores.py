"""Where the daily budget lives between runs, behind one interface: ``BudgetStore``.

A store loads the day's usage, pays for a call (``reserve``: recorded **before** the
exchange call it pays for -- a crash between the two over-counts one call, never
under-counts), picks up what other writers spent (``fetch``), starts the day clean
(``reset``) and says what the service writes of it at its exit (``exit_save``). The
tracker (``grinder.budget.tracker``) asks every store the same way; which one it holds
is chosen once, at start (``grinder.budget.lifecycle``):

* ``MemoryBudgetStore`` -- no ``BUDGET_STATE_PATH``: the usage lives in the process
  (and dry-run's shadow budget, and tests).
* ``FileBudgetStore`` -- ``BUDGET_STATE_PATH``: a JSON file written atomically (temp
  file, fsync, rename, fsync of the directory) at every reservation. A file that cannot
  be read or parsed is an error, never a silently fresh budget; so is a path that is not
  a regular file (a FIFO is never opened for reading: it would wait for a writer
  forever).
* ``grinder.budget.redis_store.RedisBudgetStore`` -- HA: the deployment's shared budget,
  reserved atomically together with the fencing check; it may refuse
  (``BudgetRefused``), and then the exchange call is not made.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from grinder import fileio
from grinder.budget.ledger import BudgetState, BudgetStateError, Unreadable

MAX_STATE_BYTES = 64 * 1024
"""A budget state file is about 150 bytes; anything past this is not one."""


def _json_int(text: str) -> int | Unreadable:
    if len(text.lstrip("-")) > 30:
        return Unreadable(text)
    return int(text)


def parse_state_text(text: str) -> Any:
    """JSON with exact numbers: floats as ``Decimal``, absurd numbers kept as
    ``Unreadable`` text for the field check to name (``ValueError`` if not JSON)."""
    return json.loads(text, parse_int=_json_int, parse_float=Decimal, parse_constant=Unreadable)


@dataclass(frozen=True, slots=True)
class ExitSave:
    """What the service writes of the budget at its exit: what it is called in the run's
    summary, its file (None: not a file), and the write itself."""

    what: str
    path: Path | None
    write: Callable[[], object]


class BudgetStore(Protocol):
    """Where the daily budget lives between runs (see the module doc).

    ``reserve`` records one call of ``notional`` on top of ``current`` (the tracker's
    usage of the day) and returns the day's usage after it; a store that guards more
    (the shared one: the day's limits, the HA fencing token) checks it in the same step
    and raises ``BudgetRefused`` when the call must not be made. Every store raises
    ``BudgetStateError`` when the state is unusable. ``fetch`` is the day's usage other
    writers recorded (None: nothing newer to pick up). ``save`` never lowers what a
    shared store holds.
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

    def reset(self, now_ms: int) -> None: ...

    def reset_shown(self, day: str) -> Path | str | None:
        """What the reset line names (``reset_line``): None for no place at all."""
        ...

    def exit_save(self, state: BudgetState) -> ExitSave | None:
        """The write of ``state`` at the service's exit; None when there is none to make."""
        ...


class MemoryBudgetStore:
    """No place at all: the usage lives in the tracker, and is gone with the process."""

    def load(self) -> BudgetState | None:
        return None

    def save(self, state: BudgetState) -> None:
        """Nothing to write."""

    def fetch(self, day: str) -> BudgetState | None:
        return None  # no other writer

    def reserve(
        self,
        current: BudgetState,
        notional: Decimal,
        now_ms: int,
        *,
        max_calls_per_day: int,
        max_notional_per_day: Decimal,
    ) -> BudgetState:
        return current.charged(notional, now_ms)

    def reset(self, now_ms: int) -> None:
        """Nothing kept: a new tracker starts the day clean."""

    def reset_shown(self, day: str) -> Path | str | None:
        return None

    def exit_save(self, state: BudgetState) -> ExitSave | None:
        return None


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

    def fetch(self, day: str) -> BudgetState | None:
        """Nothing: while the service runs, the file is written by this process alone
        (what another process wrote meanwhile is not picked up, nor written over at exit:
        ``save_unless_behind``)."""
        return None

    def reserve(
        self,
        current: BudgetState,
        notional: Decimal,
        now_ms: int,
        *,
        max_calls_per_day: int,
        max_notional_per_day: Decimal,
    ) -> BudgetState:
        """The call charged and saved (write-ahead); the limits were judged by the budget
        gate just before (``budget_verdict``), by this process, the file's one writer."""
        state = current.charged(notional, now_ms)
        self.save(state)
        return state

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

    def reset(self, now_ms: int | None = None) -> None:
        """Remove the file: the day starts clean (``now_ms`` is not needed: no file, no use)."""
        self.check()  # a FIFO, folder or device at the path is never removed
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise BudgetStateError(f"{self.path}: cannot remove ({exc.strerror})") from None

    def reset_shown(self, day: str) -> Path | str | None:
        return self.path

    def exit_save(self, state: BudgetState) -> ExitSave | None:
        """Every reservation was saved before its write; this keeps the file's day current,
        and never writes back less than another process recorded meanwhile."""
        return ExitSave("BUDGET_STATE_PATH", self.path, lambda: self.save_unless_behind(state))


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
