"""The service's side of the operator state: read before every write, applied, commanded.

``OperatorControl`` keeps the document this instance last read from its store (a file
alone, Redis with HA; ``grinder.operator``) and the configured settings (file and
environment, ``grinder.service.configured``), and applies what is in force -- the
configured values, replaced by the operator's words (``grinder.operator.merge``) -- to
the service's live objects through ``apply``. It is read:

* at every run's start (``refresh``) and by the HA elector when Redis lost its data;
* right before every exchange request is signed (``begin_write``, called by
  ``RemediationExecutor.authorize_write``), in the same atomic step that marks this
  instance's write as on its way (``end_write`` when it is answered).

A command (``command``) is decided on the document read fresh (compare-and-set, retried
when another instance changed it meanwhile), applied here at once, and answered only
once no write marked before it is still on its way (``drain``). While the document
cannot be read, or is lost, ``problem`` says why and gate O blocks every write.

A rollback that cannot be recorded (Redis unreachable, the file unwritable) still holds
on this instance at once and is written as soon as the store answers (``pending``);
every other command is refused then, since it could not hold anywhere else.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from grinder.clock import Clock
from grinder.operator.decide import (
    ChangeKind,
    Command,
    Decision,
    Lift,
    SetWord,
    WordChange,
    decide,
    judge,
    lost_problem,
)
from grinder.operator.merge import Held, Sourced, effective, held
from grinder.operator.state import (
    OperatorState,
    OperatorStateError,
    Stamp,
    describe_words,
    rollback_of,
)
from grinder.operator.stores import FileOperatorStore, OperatorStore, Read, Unchanged
from grinder.reporting.logs import log_event

log = logging.getLogger("grinder.service")

MARK_WINDOW_MS = 2_500
"""How long a write's mark holds at most: its window to reach the exchange (at most
``WRITE_WINDOW_MS``, 2 s: its ``recvWindow``) and a margin for the clocks."""
DRAIN_POLL_S = 0.01
CAS_ATTEMPTS = 8

Apply = Callable[
    [Mapping[str, Sourced], str, Stamp | None], tuple[list[dict[str, Any]], str | None]
]
"""Puts the settings in force on the live objects (``(in_force, cause, stamp)``: ``stamp``
says who made a change whose value carries none -- a lift); returns the changes made
(field, old, new) and, when a word cannot apply on this instance, why (then the rollbacks
alone are applied and every write is blocked)."""


class OperatorUnavailable(RuntimeError):
    """A command that could not be recorded (the store did not answer): nothing changed."""


class OperatorControl:
    """See the module doc."""

    def __init__(
        self,
        store: OperatorStore,
        *,
        instance: str,
        clock: Clock,
        apply: Apply,
        check: Callable[[Mapping[str, Sourced]], None],
        mirror: FileOperatorStore | None = None,
        on_word: Callable[[WordChange, Stamp], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.instance = instance
        self.clock = clock
        self._apply = apply
        self._check = check
        self.mirror = mirror
        self._on_word = on_word or log_word
        self._monotonic = monotonic
        self._sleep = sleep
        self.holder = f"{instance}:{secrets.token_hex(4)}"
        self.configured: dict[str, Sourced] = {}
        self.state = OperatorState()
        self.in_force: dict[str, Sourced] = {}
        self.pending: tuple[SetWord, ...] = ()
        self._memory: OperatorState | None = None
        self._store_problem: str | None = None
        self._apply_problem: str | None = None
        self._marked = False

    # --- what the executor asks ---------------------------------------------------------

    @property
    def problem(self) -> str | None:
        """Why the operator state is not known here (gate O blocks); None when it is."""
        if self.state.lost is not None:
            return lost_problem(self.state)
        return self._store_problem or self._apply_problem

    def refresh(self) -> None:
        self._read(lambda version: self.store.read_if_changed(version))

    def begin_write(self) -> None:
        """Mark this instance's write as on its way and read the document, in one step."""
        self._marked = True
        self._read(lambda version: self.store.mark_write(self.holder, MARK_WINDOW_MS, version))

    def end_write(self) -> None:
        if self._marked:
            self._marked = False
            self.store.unmark_write(self.holder)

    # --- start, reload ------------------------------------------------------------------

    def start(self, configured: Mapping[str, Sourced]) -> None:
        """First read (``OperatorStateError`` when a file cannot be read: exit 2; Redis
        that does not answer only blocks writes until it does)."""
        self.configured = dict(configured)
        if self.mirror is not None:
            self._memory = self.mirror.read()
        self._read(
            lambda _version: self.store.read(), fatal=isinstance(self.store, FileOperatorStore)
        )
        self._put("operator")
        self.report_held("start")
        if self.state.words or self.problem:
            log_event(
                log,
                "OPERATOR_STATE",
                logging.WARNING,
                standing=describe_words(self.state.words),
                problem=self.problem or "-",
            )

    def reconfigure(self, configured: Mapping[str, Sourced], cause: str) -> list[dict[str, Any]]:
        """New configured settings (a reload); returns the changes made to what is in force."""
        in_force = effective(configured, self._with_pending())
        self._check(in_force)
        self.configured = dict(configured)
        return self._put(cause)

    def held(self) -> tuple[Held, ...]:
        return held(self.configured, self.in_force)

    def report_held(self, source: str) -> tuple[Held, ...]:
        """The settings a word holds away from their configured value, each logged
        (``CONFIG_HELD``): a start or reload that would have changed them says so."""
        items = self.held()
        for item in items:
            stamp = item.in_force.stamp
            log_event(
                log,
                "CONFIG_HELD",
                logging.WARNING,
                source=source,
                field=item.field,
                configured=item.configured.value,
                in_force=item.in_force.value,
                held_by=item.in_force.source.value,
                by=stamp.by if stamp else "-",
                reason=(stamp.reason or "-") if stamp else "-",
            )
        return items

    # --- commands -----------------------------------------------------------------------

    async def command(self, command: Command) -> dict[str, Any]:
        """Record ``command`` for the deployment, apply it here, wait until no write marked
        before it is on its way, and say what changed (``OperatorRefused``: not taken;
        ``OperatorUnavailable``: the store did not answer)."""
        before = dict(self.in_force)
        decision, changes = self.record(command)
        if decision is None:
            recorded = f"this instance only ({self._store_problem})"
            return self._reply(command, before, changes, None, recorded)
        drained = await self.drain()
        return self._reply(command, before, changes, decision, self.store.where, drained)

    def record(self, command: Command) -> tuple[Decision | None, list[dict[str, Any]]]:
        """Record ``command`` and apply it here: the decision and the changes made. A
        rollback the store cannot take now holds here at once and is written when the store
        answers (decision None); any other command is ``OperatorUnavailable`` then."""
        try:
            decision = self._record(command)
        except OperatorStateError as exc:
            if not (isinstance(command, SetWord) and rollback_of(command.field, command.value)):
                raise OperatorUnavailable(f"not recorded: {exc}") from None
            self._store_problem = str(exc)
            self.pending = (*self.pending, command)
            log_event(log, "OPERATOR_STATE_PENDING", logging.WARNING, error=str(exc))
            return None, self._put("control")
        self._adopt(decision.state)
        self._store_problem = None
        for change in decision.changes:
            self._on_word(change, command.stamp)
        return decision, self._put("control")

    def _record(self, command: Command) -> Decision:
        for _ in range(CAS_ATTEMPTS):
            base = self._judged(self.store.read())
            decision = decide(base, command, new_id=self._new_id())
            self._check(effective(self.configured, decision.state))
            if self.store.replace(base.version, decision.state):
                return decision
        raise OperatorStateError(f"{self.store.where}: changed {CAS_ATTEMPTS} times meanwhile")

    async def drain(self) -> int | None:
        """Wait (at most a mark's window) until no write marked before now is on its way;
        the milliseconds waited. When the store cannot say (Redis stopped answering), the
        whole window is waited out: a write marked before the word has then been answered,
        or arrives past its ``recvWindow`` and is refused by the exchange."""
        started = self._monotonic()
        deadline = started + MARK_WINDOW_MS / 1000 + 0.5
        known = True
        while True:
            if known:
                try:
                    if self.store.writes_in_flight() == 0:
                        return int((self._monotonic() - started) * 1000)
                except OperatorStateError:
                    known = False
            if self._monotonic() > deadline:
                return int((self._monotonic() - started) * 1000)
            await self._sleep(DRAIN_POLL_S)

    # --- status -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        state = self.state
        return {
            "store": self.store.where,
            "id": state.id or None,
            "revision": state.revision,
            "rollbacks": [w.rollback.name for w in state.standing_rollbacks() if w.rollback],
            "words": [
                {"field": w.field, "value": w.value, **w.stamp.to_json()} for w in state.words
            ],
            "lost": None if state.lost is None else lost_problem(state),
            "pending": [f"{c.field}={c.value}" for c in self.pending],
            "problem": self.problem,
        }

    # --- internals ----------------------------------------------------------------------

    def _read(self, read: Callable[[str], Read], *, fatal: bool = False) -> None:
        before = self.state.version
        try:
            got = read(before)
            if not isinstance(got, Unchanged):
                self._adopt(self._judged(got))
        except OperatorStateError as exc:
            if fatal:
                raise
            if self._store_problem != str(exc):
                log_event(log, "OPERATOR_STATE_UNREADABLE", logging.WARNING, error=str(exc))
            self._store_problem = str(exc)
            return
        self._store_problem = None
        self._push_pending()
        if self.state.version != before:
            self._put("operator")

    def _judged(self, read: OperatorState | None) -> OperatorState:
        """``read`` judged against what this instance knew; a lost document written back."""
        reading = judge(
            self._memory,
            read,
            instance=self.instance,
            now_ms=self.clock(),
            new_id=self._new_id(),
            where=self.store.where,
        )
        if reading.write is not None:
            expected = reading.expected.version if reading.expected is not None else ""
            if not self.store.replace(expected, reading.write):
                raise OperatorStateError(f"{self.store.where}: changed while being restored")
            assert reading.write.lost is not None
            log_event(
                log,
                "OPERATOR_STATE_LOST",
                logging.ERROR,
                where=self.store.where,
                detail=reading.write.lost.detail,
                effect="no write until an operator re-asserts (grinder control status)",
            )
        return reading.state

    def _adopt(self, state: OperatorState) -> None:
        self.state = state
        self._memory = state
        if self.mirror is not None and state.id:  # a document to remember (not "none yet")
            try:
                self.mirror.save(state)
            except OperatorStateError as exc:
                log_event(log, "OPERATOR_MIRROR_FAILED", logging.WARNING, error=str(exc))

    def _push_pending(self) -> None:
        pending, self.pending = self.pending, ()
        for command in pending:
            try:
                decision = self._record(command)
            except OperatorStateError:
                self.pending = (*self.pending, command)
                continue
            self._adopt(decision.state)
            log_event(log, "OPERATOR_STATE_RECORDED", field=command.field, by=command.stamp.by)

    def _with_pending(self) -> OperatorState:
        state = self.state
        for command in self.pending:
            state = decide(state, command, new_id=state.id or "pending").state
        return state

    def _put(self, cause: str) -> list[dict[str, Any]]:
        self.in_force = effective(self.configured, self._with_pending())
        changes, problem = self._apply(self.in_force, cause, self.state.last)
        self._apply_problem = problem
        return changes

    def _new_id(self) -> str:
        return f"{self.clock()}-{secrets.token_hex(4)}"

    def _reply(
        self,
        command: Command,
        before: Mapping[str, Sourced],
        changes: list[dict[str, Any]],
        decision: Decision | None,
        recorded: str,
        drained_ms: int | None = None,
    ) -> dict[str, Any]:
        stamp = command.stamp
        fields = (
            [command.field]
            if isinstance(command, SetWord)
            else [c.field for c in (decision.changes if decision else ())]
        )
        reply: dict[str, Any] = {
            "by": stamp.by,
            "at_ms": stamp.at_ms,
            "reason": stamp.reason,
            "recorded": recorded,
            "drained_ms": drained_ms,
        }
        if isinstance(command, SetWord):
            name = command.field
            reply["field"] = name
            reply["old"] = before[name].value if name in before else None
            reply["new"] = self.in_force[name].value if name in self.in_force else command.value
            kind = decision.changes[0].kind if decision else ChangeKind.ROLLBACK
            reply["kind"] = kind.value
        else:
            assert isinstance(command, Lift)
            reply["lifted"] = fields
            reply["in_force"] = {
                f: self.in_force[f].to_json() for f in fields if f in self.in_force
            }
            reply["kind"] = ChangeKind.LIFT.value
            reply["changes"] = changes
        if decision is not None and decision.reasserted:
            reply["reasserted"] = True
        return reply


def log_word(change: WordChange, stamp: Stamp) -> None:
    """``OPERATOR_WORD``: every word recorded, whatever it changes in force."""
    after = change.after
    log_event(
        log,
        "OPERATOR_WORD",
        logging.WARNING,
        kind=change.kind.value,
        field=change.field,
        value=after.value if after is not None else "-",
        by=stamp.by,
        reason=stamp.reason or "-",
    )
