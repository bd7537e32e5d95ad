"""Where the operator state lives when the service runs alone: a file, or memory.

``OperatorStore`` is what the service needs of any home of the document (the Redis one
is ``grinder.ha.operator.RedisOperatorStore``):

* ``read()`` -- the document, None when there is none; ``OperatorStateError`` when it
  cannot be read or is corrupt (never an empty document in its place);
* ``read_if_changed(version)`` -- ``UNCHANGED`` while it is still that version (a file:
  one ``stat``), else the document;
* ``replace(expected, new)`` -- compare-and-set: write ``new`` only while the stored
  version is ``expected`` ("" = while there is none);
* ``mark_write(holder, window_ms, version)`` -- what ``read_if_changed`` says, and, in the
  same step, ``holder`` marked as having a write on its way for at most ``window_ms``;
  ``unmark_write(holder)`` when it is answered; ``writes_in_flight()`` counts the marks
  not yet expired. A command waits for that count to reach 0 before it answers, so
  once it has answered no write authorized under the old document is still on its way.

The file (``FileOperatorStore``) is written atomically (``grinder.fileio``) under an
advisory lock, so two processes sharing it (two services with one ``BUDGET_STATE_PATH``
folder) never lose each other's change; its marks are this process's own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, Protocol

from grinder import fileio
from grinder.operator.state import MAX_DOCUMENT_BYTES, OperatorState, OperatorStateError

FILE_NAME = "operator_state.json"


class Unchanged:
    """What ``read_if_changed`` returns while the document is the version the caller has."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()
Read = OperatorState | None | Unchanged


class OperatorStore(Protocol):
    @property
    def where(self) -> str: ...

    def read(self) -> OperatorState | None: ...

    def read_if_changed(self, version: str) -> Read: ...

    def replace(self, expected: str, new: OperatorState) -> bool: ...

    def mark_write(self, holder: str, window_ms: int, version: str) -> Read: ...

    def unmark_write(self, holder: str) -> None: ...

    def writes_in_flight(self) -> int: ...


class LocalMarks:
    """This process's writes on their way, each until it is answered or its window ends."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._until: dict[str, float] = {}
        self._monotonic = monotonic

    def mark(self, holder: str, window_ms: int) -> None:
        self._until[holder] = self._monotonic() + window_ms / 1000

    def unmark(self, holder: str) -> None:
        self._until.pop(holder, None)

    def count(self) -> int:
        now = self._monotonic()
        self._until = {h: t for h, t in self._until.items() if t > now}
        return len(self._until)


class MemoryOperatorStore:
    """The document in this process only (an embedded service, tests): not persisted."""

    where = "memory (not persisted)"

    def __init__(self, state: OperatorState | None = None) -> None:
        self._state = state
        self._marks = LocalMarks()

    def read(self) -> OperatorState | None:
        return self._state

    def clear(self) -> None:
        """The document gone, as from a Redis restarted without persistence."""
        self._state = None

    def read_if_changed(self, version: str) -> Read:
        state = self._state
        return UNCHANGED if (state.version if state else "") == version else state

    def replace(self, expected: str, new: OperatorState) -> bool:
        if (self._state.version if self._state else "") != expected:
            return False
        self._state = new
        return True

    def mark_write(self, holder: str, window_ms: int, version: str) -> Read:
        self._marks.mark(holder, window_ms)
        return self.read_if_changed(version)

    def unmark_write(self, holder: str) -> None:
        self._marks.unmark(holder)

    def writes_in_flight(self) -> int:
        return self._marks.count()


class FileOperatorStore:
    """The document in a JSON file (``operator_state.json`` beside the budget state)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._marks = LocalMarks()
        self._seen: tuple[tuple[int, int, int] | None, str] | None = None
        """The file's (inode, size, mtime) when last read, and the version it held."""

    @property
    def where(self) -> str:
        return str(self.path)

    def read(self) -> OperatorState | None:
        signature = self._signature()
        if signature is None:
            self._seen = (None, "")
            return None
        try:
            with self.path.open("rb") as fh:
                raw = fh.read(MAX_DOCUMENT_BYTES + 1)
        except OSError as exc:
            raise OperatorStateError(f"{self.path}: cannot read ({exc.strerror})") from None
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise OperatorStateError(
                f"{self.path}: over {MAX_DOCUMENT_BYTES} bytes: no operator state"
            )
        state = parse_document(raw, str(self.path))
        self._seen = (signature, state.version)
        return state

    def read_if_changed(self, version: str) -> Read:
        seen = self._seen
        if seen is not None and seen[1] == version and seen[0] == self._signature():
            return UNCHANGED
        return self.read()

    def replace(self, expected: str, new: OperatorState) -> bool:
        with self._locked():
            current = self.read()
            if (current.version if current else "") != expected:
                return False
            try:
                fileio.write_json_atomic(self.path, new.to_json())
            except OSError as exc:
                raise OperatorStateError(
                    f"{self.path}: cannot write ({exc.strerror or exc})"
                ) from None
            self._seen = (self._signature(), new.version)
        return True

    def save(self, state: OperatorState) -> None:
        """Write ``state`` whatever the file holds (an HA instance's local copy of what it
        last read from Redis)."""
        try:
            fileio.write_json_atomic(self.path, state.to_json())
        except OSError as exc:
            raise OperatorStateError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def mark_write(self, holder: str, window_ms: int, version: str) -> Read:
        self._marks.mark(holder, window_ms)
        return self.read_if_changed(version)

    def unmark_write(self, holder: str) -> None:
        self._marks.unmark(holder)

    def writes_in_flight(self) -> int:
        return self._marks.count()

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            info = self.path.lstat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OperatorStateError(f"{self.path}: cannot read ({exc.strerror})") from None
        if not stat.S_ISREG(info.st_mode):
            raise OperatorStateError(f"{self.path}: not a regular file: no operator state")
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.path.with_name(f".{self.path.name}.lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise OperatorStateError(f"{self.path}: cannot lock ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def parse_document(raw: bytes | str, source: str) -> OperatorState:
    """The document in ``raw`` (JSON text), or ``OperatorStateError`` naming ``source``."""
    try:
        data: Any = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise OperatorStateError(f"{source}: corrupt operator state (not JSON: {exc})") from None
    return OperatorState.from_json(data, source=source)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a value")


def dump_document(state: OperatorState) -> str:
    return json.dumps(state.to_json(), sort_keys=True)
