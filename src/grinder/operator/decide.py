"""What a command makes of the operator state, and what a document read means (pure).

``decide(state, command)`` is the one rule for every control command that changes a
setting:

* a **rollback** (``set action none``, ``set dry_run true``, ``disarm``, ``deny-mainnet``)
  is always taken: it replaces whatever word stood on its setting, and it re-asserts a
  lost document;
* any other word -- an **escalation** of a gate (``arm``, ``allow-mainnet``, ``set action
  cancel_all``, ``set dry_run false``) or a **setting** (``set max_orders_per_action 1``) --
  is refused while a rollback stands on that setting (lift it first) and while the
  document is lost (re-assert it first);
* ``lift NAME`` removes words: a rollback by its name, the word on one setting by the
  setting's name, or ``all``; lifting what does not stand is refused. A lift re-asserts
  a lost document too (``lift all`` with nothing standing says "nothing should stand").

``judge(memory, read)`` compares the document read from the store with the last one this
instance knew: a document gone, or made anew without descending from it, while words were
standing is **lost** -- the reading says what to write back (the words it knew, marked
``lost``) and every write is blocked until an operator re-asserts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from grinder.operator.state import (
    FIELDS,
    MAX_ANCESTORS,
    ROLLBACK_FIELDS,
    ROLLBACKS,
    Lost,
    OperatorRefused,
    OperatorState,
    Stamp,
    Word,
    describe_words,
    rollback_of,
    utc_text,
)


@dataclass(frozen=True, slots=True)
class SetWord:
    """``grinder control set FIELD VALUE`` (and ``arm``, ``disarm``, ``allow-mainnet``,
    ``deny-mainnet``): ``value`` already parsed for its setting, JSON-plain."""

    field: str
    value: Any
    stamp: Stamp


@dataclass(frozen=True, slots=True)
class Lift:
    """``grinder control lift NAME``: a rollback's name, a setting's name, or ``all``."""

    name: str
    stamp: Stamp


Command = SetWord | Lift


class ChangeKind(StrEnum):
    ROLLBACK = "rollback"
    ESCALATION = "escalation"
    """A word that opens one of the rollback's gates (arm, allow-mainnet, …)."""
    SETTING = "setting"
    LIFT = "lift"


@dataclass(frozen=True, slots=True)
class WordChange:
    field: str
    before: Word | None
    after: Word | None
    kind: ChangeKind


@dataclass(frozen=True, slots=True)
class Decision:
    state: OperatorState
    changes: tuple[WordChange, ...]
    reasserted: bool
    """The command re-asserted a lost document."""


def decide(state: OperatorState, command: Command, *, new_id: str) -> Decision:
    """The document after ``command`` (``OperatorRefused`` when it is not taken)."""
    changes: tuple[WordChange, ...]
    if isinstance(command, SetWord):
        changes = (_set(state, command),)
        words = [w for w in state.words if w.field != command.field]
        words.append(Word(command.field, command.value, command.stamp))
        reasserts = changes[0].kind is ChangeKind.ROLLBACK
    else:
        changes = _lift(state, command)
        lifted = {c.field for c in changes}
        words = [w for w in state.words if w.field not in lifted]
        reasserts = True
    lost = None if reasserts else state.lost
    new = state.with_words(
        words,
        id=state.id or new_id,
        revision=state.revision + 1,
        lost=lost,
        last=command.stamp,
    )
    return Decision(new, changes, reasserted=state.lost is not None and lost is None)


def _set(state: OperatorState, command: SetWord) -> WordChange:
    if command.field not in FIELDS:
        raise OperatorRefused(
            f"unknown setting {command.field!r}; known: {', '.join(sorted(FIELDS))}"
        )
    before = state.word(command.field)
    if rollback_of(command.field, command.value) is not None:
        return WordChange(
            command.field,
            before,
            Word(command.field, command.value, command.stamp),
            ChangeKind.ROLLBACK,
        )
    if state.lost is not None:
        raise OperatorRefused(f"{lost_problem(state)}; then give this command again")
    if before is not None and before.rollback is not None:
        raise OperatorRefused(
            f"the rollback {before.rollback.name} stands on {command.field} "
            f"({before.stamp.describe()}): lift it first: grinder control lift "
            f"{before.rollback.name}"
        )
    kind = ChangeKind.ESCALATION if command.field in ROLLBACK_FIELDS else ChangeKind.SETTING
    return WordChange(
        command.field, before, Word(command.field, command.value, command.stamp), kind
    )


def lift_names() -> str:
    return ", ".join(r.name for r in ROLLBACKS)


def _lift(state: OperatorState, command: Lift) -> tuple[WordChange, ...]:
    name = command.name.strip().lower()
    if name == "all":
        if not state.words and state.lost is None:
            raise OperatorRefused("nothing to lift: no rollback or other operator word stands")
        return tuple(WordChange(w.field, w, None, ChangeKind.LIFT) for w in state.words)
    # A rollback by its name (``dry-run``), else a setting by its name (``dry_run``: whatever
    # word stands on it), else a rollback's name written with underscores (``deny_mainnet``).
    rollback = next((r for r in ROLLBACKS if r.name == name), None)
    if rollback is None and name not in FIELDS:
        rollback = next((r for r in ROLLBACKS if r.name == name.replace("_", "-")), None)
    field = rollback.field if rollback is not None else name
    if field not in FIELDS:
        raise OperatorRefused(
            f"lift: unknown name {command.name!r}; expected a rollback ({lift_names()}), "
            "a setting's name, or all"
        )
    word = state.word(field)
    if rollback is not None and (word is None or word.rollback != rollback):
        now = f"the word on {field} is {word.describe()}" if word else f"no word on {field}"
        raise OperatorRefused(
            f"nothing to lift: the rollback {rollback.name} does not stand ({now})"
        )
    if word is None:
        raise OperatorRefused(
            f"nothing to lift: no operator word on {field} (it follows its configured value)"
        )
    return (WordChange(field, word, None, ChangeKind.LIFT),)


# --- what a document read means ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """The document in force after a read, and what to write back first, if anything."""

    state: OperatorState
    write: OperatorState | None = None
    """The document to write back (``lost``): created when ``expected`` is None, else
    compare-and-set over ``expected``."""
    expected: OperatorState | None = None


def judge(
    memory: OperatorState | None,
    read: OperatorState | None,
    *,
    instance: str,
    now_ms: int,
    new_id: str,
    where: str,
) -> Reading:
    """``read`` (None: no document) against ``memory`` (the last document this instance
    knew). Words that stood in ``memory`` and are gone from the store are written back,
    marked ``lost``: every instance then blocks until an operator re-asserts."""
    knew = memory is not None and memory.id != "" and bool(memory.words)
    if read is None:
        if not knew:
            return Reading(OperatorState())
        assert memory is not None
        lost = Lost(
            instance,
            now_ms,
            f"{where} was gone while this instance knew revision {memory.revision} of it "
            f"({describe_words(memory.words)})",
        )
        restored = memory.with_words(
            memory.words,
            id=new_id,
            revision=memory.revision + 1,
            lost=lost,
            ancestors=_ancestry(memory.id, memory.ancestors),
        )
        return Reading(restored, write=restored, expected=None)
    if not knew or memory is None or memory.id in read.ancestors:
        return Reading(read)
    missing = [w for w in memory.words if read.word(w.field) is None]
    if memory.id == read.id and (read.revision >= memory.revision or not missing):
        return Reading(read)
    if not missing and read.lost is not None:
        return Reading(read)
    if memory.id == read.id:  # the same document at an older revision: writes were lost
        why = (
            f"{where} went back to revision {read.revision} while this instance knew revision "
            f"{memory.revision} ({describe_words(memory.words)})"
        )
    else:
        why = (
            f"{where} was made anew (id {read.id}) while this instance knew revision "
            f"{memory.revision} of id {memory.id} ({describe_words(memory.words)})"
        )
    lost = read.lost or Lost(instance, now_ms, why)
    marked = read.with_words(
        (*read.words, *missing),
        revision=max(read.revision, memory.revision) + 1,
        lost=lost,
        ancestors=read.ancestors if memory.id == read.id else _ancestry(memory.id, read.ancestors),
    )
    return Reading(marked, write=marked, expected=read)


def _ancestry(doc_id: str, ancestors: tuple[str, ...]) -> tuple[str, ...]:
    return (doc_id, *(a for a in ancestors if a != doc_id))[:MAX_ANCESTORS]


def lost_problem(state: OperatorState) -> str:
    """Why nothing is written while ``state`` is lost, and how to re-assert it."""
    lost = state.lost
    assert lost is not None
    standing = describe_words(state.words)
    return (
        f"operator state lost ({lost.detail}; noticed by {lost.noticed_by} at "
        f"{utc_text(lost.at_ms)}); restored: {standing}; nothing is written until an operator "
        "re-asserts it: give the rollbacks that should stand, or lift what should not "
        "(grinder control lift NAME, or lift all)"
    )
