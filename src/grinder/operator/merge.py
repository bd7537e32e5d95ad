"""The settings in force: each configured value, replaced by the operator's word on it (pure).

Every setting an instance runs with has a **configured** value -- the default, the config
file, the environment at start, a flag (``Source``) -- and may have an operator's word
(``grinder.operator.state.Word``). The value in force is the word when there is one, else
the configured value: ``effective``. A rollback is a word whose value is the safe end of
its gate, so "effective = configured, bounded by the standing rollback" is this one rule.
What a reload or restart reads from the file or the environment therefore never undoes a
word; ``held`` lists where they differ, for the reload's reply, its log line and
``status``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from grinder.operator.state import OperatorState, Stamp, Word, plain


class Source(StrEnum):
    """Where a setting's value in force comes from."""

    DEFAULT = "default"
    FILE = "file"
    ENV = "env"
    FLAG = "flag"
    """A command-line flag (none of the settings here has one today)."""
    OPERATOR = "operator"
    """An operator's word given on the control socket (or straight into Redis)."""
    ROLLBACK = "rollback"
    """An operator's rollback: stands until lifted."""


@dataclass(frozen=True, slots=True)
class Sourced:
    """A setting's value (JSON-plain), where it comes from, and -- for an operator's
    word -- who gave it, when and why. ``where`` names the file, variable or flag."""

    value: Any
    source: Source
    where: str = ""
    stamp: Stamp | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "source": self.source.value}
        if self.where:
            out["where"] = self.where
        if self.stamp is not None:
            out.update(self.stamp.to_json())
        return out

    def describe(self) -> str:
        """``true (env ARMED)``, ``false (rollback disarm by alice@h at …)``."""
        value = str(self.value).lower() if isinstance(self.value, bool) else str(self.value)
        origin = f"{self.source.value} {self.where}".strip()
        if self.stamp is not None:
            origin = f"{origin} {self.stamp.describe()}"
        return f"{value} ({origin})"


def configured_value(value: Any, source: Source, where: str = "") -> Sourced:
    return Sourced(plain(value), source, where)


def of_word(word: Word) -> Sourced:
    rollback = word.rollback
    if rollback is not None:
        return Sourced(word.value, Source.ROLLBACK, rollback.name, word.stamp)
    return Sourced(word.value, Source.OPERATOR, "", word.stamp)


def effective(configured: Mapping[str, Sourced], state: OperatorState) -> dict[str, Sourced]:
    """Every setting of ``configured`` with the value in force: the operator's word on it,
    else the configured value."""
    out = dict(configured)
    for word in state.words:
        if word.field in out:
            out[word.field] = of_word(word)
    return out


@dataclass(frozen=True, slots=True)
class Held:
    """A setting whose configured value is not the one in force: a word holds it."""

    field: str
    configured: Sourced
    in_force: Sourced

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "configured": self.configured.to_json(),
            "in_force": self.in_force.to_json(),
        }

    def describe(self) -> str:
        return (
            f"{self.field}: {self.configured.describe()} not applied; in force "
            f"{self.in_force.describe()}"
        )


def held(configured: Mapping[str, Sourced], in_force: Mapping[str, Sourced]) -> tuple[Held, ...]:
    """The settings where a word holds a value other than the configured one."""
    return tuple(
        Held(name, value, in_force[name])
        for name, value in configured.items()
        if name in in_force and in_force[name].value != value.value
    )
