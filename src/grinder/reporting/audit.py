"""The audit trail: one JSON object per line, append-only, rotated, redacted.

Each record has ``schema_version``, ``ts_ms``, ``event_type``, ``run_id``,
``mode`` and ``action``, with keys sorted. Secrets are redacted by field name and
inside every text (``grinder.redaction.redact``: URLs' passwords, ``key=value``
secrets, registered secret values). The file rotates when it would pass
``max_bytes`` or ``max_events`` records (``reconcile.jsonl`` -> ``reconcile.jsonl.1``
-> ..., keeping ``backup_count``). Writing is fail-open: an error is counted and
logged, and reconciliation goes on.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from grinder.redaction import redact

SCHEMA_VERSION = 1
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_EVENTS = 100_000
DEFAULT_BACKUP_COUNT = 5

log = logging.getLogger("grinder.audit")


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def encode_record(record: Mapping[str, Any]) -> str:
    """One audit line (without newline): redacted, sorted keys, compact."""
    return json.dumps(
        redact(record), sort_keys=True, separators=(",", ":"), default=_default, allow_nan=False
    )


class AuditWriter:
    """Appends audit records to a JSONL file; never raises into the caller."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_events: int = DEFAULT_MAX_EVENTS,
        backup_count: int = DEFAULT_BACKUP_COUNT,
        on_error: Callable[[Exception], None] | None = None,
        fsync: bool = False,
    ) -> None:
        if max_bytes < 1 or max_events < 1 or backup_count < 0:
            raise ValueError("max_bytes and max_events must be >= 1, backup_count >= 0")
        self.path = path
        self.max_bytes = max_bytes
        self.max_events = max_events
        self.backup_count = backup_count
        self.on_error = on_error
        self.fsync = fsync
        self.errors = 0
        self._size: int | None = None
        self._events: int | None = None

    def write(self, event_type: str, fields: Mapping[str, Any]) -> bool:
        """Append one record; returns False (and counts the error) if it could not be written."""
        record = {**fields, "schema_version": SCHEMA_VERSION, "event_type": event_type}
        try:
            line = (encode_record(record) + "\n").encode("utf-8")
            self._append(line)
        except (OSError, TypeError, ValueError) as exc:
            self.errors += 1
            log.warning(
                "AUDIT_WRITE_FAILED path=%s event_type=%s error=%s", self.path, event_type, exc
            )
            if self.on_error is not None:
                self.on_error(exc)
            return False
        return True

    def _append(self, line: bytes) -> None:
        if self._size is None or self._events is None:
            self._size, self._events = self._measure()
        if self._events > 0 and (
            self._size + len(line) > self.max_bytes or self._events + 1 > self.max_events
        ):
            self._rotate()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"short write ({written} of {len(line)} bytes)")
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._size += len(line)
        self._events += 1

    def _measure(self) -> tuple[int, int]:
        try:
            with self.path.open("rb") as fh:
                size = 0
                events = 0
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    size += len(chunk)
                    events += chunk.count(b"\n")
                return size, events
        except FileNotFoundError:
            return 0, 0

    def _rotate(self) -> None:
        if self.backup_count == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(self.backup_count - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            if self.path.exists():
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._size, self._events = 0, 0
