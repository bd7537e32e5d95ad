"""The operator state: the words an operator gave on a deployment's settings (pure).

A ``Word`` is one setting's value as an operator gave it on the control socket, with its
``Stamp``: who (``user@host`` of the command's caller), when, and an optional reason.
Four words are **rollbacks** (``ROLLBACKS``): ``action`` none, ``dry_run`` true,
``armed`` false (``disarm``) and ``allow_mainnet_trade`` false (``deny-mainnet``). A
rollback stands until an operator lifts it; no other command, reload or restart changes
the setting meanwhile (``grinder.operator.decide``).

``OperatorState`` is the whole document: its ``id`` (made when it is first written: a
document read with another id than the one an instance knew was made anew), its
``revision`` (one more at every change), the words, and ``lost`` when an instance found
the document gone and wrote back what it knew (every write is blocked until an operator
re-asserts). Its JSON form is checked field by field on the way in
(``OperatorState.from_json``): a corrupt document is an ``OperatorStateError`` naming
where and what, never an empty one.

Nothing here reads a clock, a file or the environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from grinder.reconcile.config import ConfigError, ReconcileConfig

SCHEMA_VERSION = 1
ARMED = "armed"
ALLOW_MAINNET_FIELD = "allow_mainnet_trade"
SERVICE_FIELDS = (ARMED, ALLOW_MAINNET_FIELD)
"""The settings beside ``ReconcileConfig``'s fields an operator can give a word on."""
FIELDS = (*ReconcileConfig.model_fields, *SERVICE_FIELDS)
MAX_BY = 128
MAX_REASON = 200
MAX_TS_MS = 10**13
MAX_ANCESTORS = 8
MAX_DOCUMENT_BYTES = 256 * 1024
"""An operator state is a few kilobytes at most; anything past this is not one."""

_BY_RE = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class OperatorStateError(RuntimeError):
    """The operator state cannot be read (unreachable, unreadable or corrupt); the message
    names where. Nothing may be written to the exchange while it stands."""


class OperatorRefused(ConfigError):
    """A command the operator state does not take (a rollback stands, nothing to lift, an
    unknown name): one line saying why and what to do (exit 2, a 400 on the socket)."""


@dataclass(frozen=True, slots=True)
class Rollback:
    """One of the four rollbacks: its name (``grinder control lift NAME``), the setting it
    holds and the value it holds it at, and the command that gives it."""

    name: str
    field: str
    value: Any
    command: str


ROLLBACKS: tuple[Rollback, ...] = (
    Rollback("action-none", "action", "none", "grinder control set action none"),
    Rollback("dry-run", "dry_run", True, "grinder control set dry_run true"),
    Rollback("disarm", ARMED, False, "grinder control disarm"),
    Rollback("deny-mainnet", ALLOW_MAINNET_FIELD, False, "grinder control deny-mainnet"),
)
ROLLBACK_FIELDS = frozenset(r.field for r in ROLLBACKS)


def rollback_of(field_name: str, value: Any) -> Rollback | None:
    """The rollback a word of ``value`` on ``field_name`` is, if it is one."""
    for rollback in ROLLBACKS:
        if rollback.field == field_name and rollback.value == value:
            return rollback
    return None


def rollback_on(field_name: str) -> Rollback | None:
    """The rollback that holds ``field_name``, if it has one."""
    return next((r for r in ROLLBACKS if r.field == field_name), None)


def check_by(text: Any, where: str = "by") -> str:
    """Who gave a command: ``user@host``, 1-128 characters, no spaces or control characters."""
    if not isinstance(text, str) or not _BY_RE.fullmatch(text):
        raise ConfigError(
            f"{where}: expected who gave the command (user@host, 1-{MAX_BY} characters "
            f"without spaces), got {_shown(text)}"
        )
    return text


def check_reason(text: Any, where: str = "--reason") -> str | None:
    """An optional reason: one line of at most 200 characters (empty: none)."""
    if text is None:
        return None
    if not isinstance(text, str) or _CONTROL_RE.search(text) or len(text) > MAX_REASON:
        raise ConfigError(
            f"{where}: expected one line of at most {MAX_REASON} characters, got {_shown(text)}"
        )
    return text.strip() or None


def utc_text(ts_ms: int) -> str:
    """``2026-01-01T00:00:00Z``: a stamp's time as messages and ``status`` show it."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Stamp:
    """Who gave a word, when (ms since the epoch), and why (optional)."""

    by: str
    at_ms: int
    reason: str | None = None

    def describe(self) -> str:
        """``by alice@host1 at 2026-01-01T00:00:00Z (reason: incident 42)``."""
        why = f" (reason: {self.reason})" if self.reason else ""
        return f"by {self.by} at {utc_text(self.at_ms)}{why}"

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by, "at_ms": self.at_ms, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Word:
    """An operator's value for one setting (JSON-plain: decimals as text)."""

    field: str
    value: Any
    stamp: Stamp

    @property
    def rollback(self) -> Rollback | None:
        return rollback_of(self.field, self.value)

    def describe(self) -> str:
        """``disarm by alice@host1 at …`` or ``max_orders_per_action=1 by …``."""
        what = self.rollback.name if self.rollback else f"{self.field}={_plain_text(self.value)}"
        return f"{what} {self.stamp.describe()}"


@dataclass(frozen=True, slots=True)
class Lost:
    """The document was found gone (or made anew) by an instance that knew words in it."""

    noticed_by: str
    at_ms: int
    detail: str


@dataclass(frozen=True, slots=True)
class OperatorState:
    """The deployment's operator state; ``id`` "" means none was ever written."""

    id: str = ""
    revision: int = 0
    words: tuple[Word, ...] = field(default_factory=tuple)
    lost: Lost | None = None
    ancestors: tuple[str, ...] = ()
    """The ids of the documents this one replaced after a loss, newest first (at most
    ``MAX_ANCESTORS``): an instance that knew one of them knows this one descends from it."""
    last: Stamp | None = None
    """Who made the last change, when and why (a lift leaves no word to say it)."""

    def word(self, field_name: str) -> Word | None:
        return next((w for w in self.words if w.field == field_name), None)

    def standing_rollbacks(self) -> tuple[Word, ...]:
        return tuple(w for w in self.words if w.rollback is not None)

    @property
    def version(self) -> str:
        """What a compare-and-set compares: ``id:revision`` ("" when never written)."""
        return f"{self.id}:{self.revision}" if self.id else ""

    def with_words(self, words: Iterable[Word], **changes: Any) -> OperatorState:
        ordered = tuple(sorted(words, key=lambda w: FIELDS.index(w.field)))
        return replace(self, words=ordered, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "id": self.id,
            "revision": self.revision,
            "ancestors": list(self.ancestors),
            "words": {w.field: {"value": w.value, **w.stamp.to_json()} for w in self.words},
            "last": None if self.last is None else self.last.to_json(),
            "lost": None
            if self.lost is None
            else {
                "noticed_by": self.lost.noticed_by,
                "at_ms": self.lost.at_ms,
                "detail": self.lost.detail,
            },
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str) -> OperatorState:
        """The document in ``data`` (parsed JSON), or ``OperatorStateError`` naming ``source``
        and the field at fault."""
        if not isinstance(data, dict):
            raise OperatorStateError(f"{source}: operator state must be a JSON object")
        if data.get("schema_version") != SCHEMA_VERSION or type(data["schema_version"]) is not int:
            raise OperatorStateError(
                f"{source}: unsupported operator state schema_version "
                f"{_shown(data.get('schema_version'))}"
            )
        doc_id = data.get("id")
        if not isinstance(doc_id, str) or not doc_id or len(doc_id) > 64 or " " in doc_id:
            raise OperatorStateError(f"{source}: id must be a non-empty word, got {_shown(doc_id)}")
        revision = data.get("revision")
        if type(revision) is not int or not 0 < revision < 2**53:
            raise OperatorStateError(
                f"{source}: revision must be a positive integer, got {_shown(revision)}"
            )
        words = data.get("words")
        if not isinstance(words, dict):
            raise OperatorStateError(f"{source}: words must be an object")
        parsed = [_word(name, raw, f"{source}: words.{name}") for name, raw in words.items()]
        ancestors = data.get("ancestors", [])
        if (
            not isinstance(ancestors, list)
            or len(ancestors) > MAX_ANCESTORS
            or not all(isinstance(a, str) and a for a in ancestors)
        ):
            raise OperatorStateError(
                f"{source}: ancestors must be a list of at most {MAX_ANCESTORS} ids"
            )
        state = cls(
            id=doc_id,
            revision=revision,
            lost=_lost(data.get("lost"), source),
            ancestors=tuple(ancestors),
            last=_stamp(data.get("last"), f"{source}: last"),
        )
        return state.with_words(parsed)


def _word(name: Any, raw: Any, where: str) -> Word:
    if name not in FIELDS:
        raise OperatorStateError(f"{where}: not a setting (known: {', '.join(FIELDS)})")
    if not isinstance(raw, dict) or "value" not in raw:
        raise OperatorStateError(f"{where}: expected {{value, by, at_ms, reason}}")
    value = raw["value"]
    if not _json_plain(value) or (name in SERVICE_FIELDS and not isinstance(value, bool)):
        raise OperatorStateError(f"{where}: value {_shown(value)} is not one this setting takes")
    stamp = _stamp(raw, where)
    assert stamp is not None
    return Word(name, value, stamp)


def _stamp(raw: Any, where: str) -> Stamp | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise OperatorStateError(f"{where}: expected {{by, at_ms, reason}}")
    try:
        by = check_by(raw.get("by"), f"{where}.by")
        reason = check_reason(raw.get("reason"), f"{where}.reason")
    except ConfigError as exc:
        raise OperatorStateError(str(exc)) from None
    at = raw.get("at_ms")
    if type(at) is not int or not 0 <= at <= MAX_TS_MS:
        raise OperatorStateError(f"{where}.at_ms: expected a time in ms, got {_shown(at)}")
    return Stamp(by, at, reason)


def _lost(raw: Any, source: str) -> Lost | None:
    if raw is None:
        return None
    ok = (
        isinstance(raw, dict)
        and isinstance(raw.get("noticed_by"), str)
        and type(raw.get("at_ms")) is int
        and isinstance(raw.get("detail"), str)
    )
    if not ok:
        raise OperatorStateError(f"{source}: lost must be null or {{noticed_by, at_ms, detail}}")
    return Lost(raw["noticed_by"], raw["at_ms"], raw["detail"])


def _json_plain(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | int | float):
        return True
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def plain(value: Any) -> Any:
    """A setting's value as a word holds it: enums by value, decimals as text."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [str(plain(v)) for v in value]
    return str(value)


def _plain_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value) or "[]"
    return "null" if value is None else str(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def describe_words(words: Iterable[Word]) -> str:
    """The words as one line (``disarm by …; action-none by …``), ``none`` when empty."""
    return "; ".join(w.describe() for w in words) or "none"
