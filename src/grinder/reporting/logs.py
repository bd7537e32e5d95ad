"""Event log lines: ``EVENT key=value ...``, one per event, greppable by name and id.

Lines go to stderr and, when configured, to a file. A filter masks secrets in
every record, whatever logger produced it. A record logged with ``extra=FILE_ONLY``
goes to the file only: a fatal error the command reports on stderr in its own one
line is not repeated there.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from grinder.redaction import redact_text

LOGGER_NAME = "grinder"
FILE_ONLY = {"file_only": True}
"""``extra=`` of a record for the log file only (see the module docstring)."""


def _fmt_value(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(_fmt_value(v) for v in value) or "-"
    if isinstance(value, Mapping):
        return ",".join(f"{k}:{_fmt_value(v)}" for k, v in value.items()) or "-"
    text = "-" if value is None else str(value)
    if not text or any(c in text for c in ' "='):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def format_event(event: str, fields: Mapping[str, Any]) -> str:
    """``EVENT k1=v1 k2=v2`` with fields in the given order."""
    parts = [event]
    parts.extend(f"{k}={_fmt_value(v)}" for k, v in fields.items())
    return " ".join(parts)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, format_event(event, fields))


class RedactingFilter(logging.Filter):
    """Masks secrets (``grinder.redaction.redact_text``) in the final message of every record
    and in its traceback, whose text is formatted here once and kept (``exc_text``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact_text(message)
        if masked != message:
            record.msg = masked
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def _not_file_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "file_only", False)


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = time.gmtime(record.created)
        return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(
    *, log_file: Path | None = None, level: int = logging.INFO, stream: Any = None
) -> logging.Logger:
    """Send the ``grinder`` loggers to stderr (or ``stream``) and optionally a file."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(level)
    logger.propagate = False
    formatter = _UtcFormatter(FORMAT)
    redactor = RedactingFilter()
    console = logging.StreamHandler(stream if stream is not None else sys.stderr)
    console.setFormatter(formatter)
    console.addFilter(redactor)
    console.addFilter(_not_file_only)
    logger.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(formatter)
        file_handler.addFilter(redactor)
        logger.addHandler(file_handler)
    return logger
