"""``grinder control --redis-url``: the operator's word given straight to the deployment.

The same record as through an instance's socket (``grinder.service.operator``: decided on
the document read fresh, compare-and-set, answered once no write authorized before it is
still on its way), without an instance: it holds on every instance before its next write.
A value is checked as an instance checks it, against the default configuration; an
instance whose own configuration refuses it blocks every write (gate O) and says why.
The URL's password is never printed (``grinder.redaction``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from grinder.cli.errors import EXIT_FAILED, CommandFailed, UsageError
from grinder.clock import wall_clock_ms
from grinder.ha.connection import DEFAULT_NAMESPACE, RedisConnection, check_namespace, check_url
from grinder.ha.operator import RedisOperatorStore
from grinder.operator.decide import Command, Lift, SetWord, WordChange
from grinder.operator.merge import Sourced
from grinder.operator.state import (
    ALLOW_MAINNET_FIELD,
    ARMED,
    OperatorStateError,
    Stamp,
    check_by,
    check_reason,
    plain,
)
from grinder.reconcile.config import ConfigError, ReconcileConfig
from grinder.redaction import register_url
from grinder.service.configured import settings_of
from grinder.service.control import parse_value
from grinder.service.operator import OperatorControl, OperatorUnavailable
from grinder.service.settings import check_settings

TIMEOUT_S = 1.0


def _store(url: str, namespace: str | None) -> RedisOperatorStore:
    register_url(url)  # its password is masked in every output from now on
    ns = namespace or os.environ.get("GRINDER_REDIS_NAMESPACE") or DEFAULT_NAMESPACE
    try:
        check_url(url)
        check_namespace(ns)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return RedisOperatorStore(RedisConnection(url, namespace=ns, timeout_s=TIMEOUT_S))


def _command(route: str, body: Mapping[str, Any]) -> Command:
    stamp = Stamp(check_by(body["by"]), wall_clock_ms(), check_reason(body.get("reason")))
    if route == "/set":
        field, value = str(body["field"]), body["value"]
        return SetWord(field, plain(parse_value(ReconcileConfig(), field, value)), stamp)
    if route == "/arm":
        return SetWord(ARMED, bool(body["armed"]), stamp)
    if route == "/mainnet":
        return SetWord(ALLOW_MAINNET_FIELD, bool(body["allow"]), stamp)
    return Lift(str(body["name"]), stamp)


def redis_command(
    url: str, namespace: str | None, route: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    """Record the word of ``route``/``body`` (as the socket takes them) in Redis."""
    store = _store(url, namespace)
    try:
        try:
            command = _command(route, body)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        try:
            store.read()  # reachable and readable, before anything is decided
        except OperatorStateError as exc:
            raise CommandFailed(f"not recorded: {exc}", EXIT_FAILED) from None
        control = OperatorControl(
            store,
            instance=f"cli:{body['by']}",
            clock=wall_clock_ms,
            apply=_nothing_to_apply,
            check=check_settings,
            on_word=_said_by_the_reply,
        )
        try:
            with _quiet():  # the reply says it all; each instance logs what it applies
                control.start(settings_of(ReconcileConfig(), False, False, {}))
                before = control.state
                reply = asyncio.run(control.command(command))
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        except OperatorUnavailable as exc:
            raise CommandFailed(str(exc), EXIT_FAILED) from None
        recorded = str(reply.get("recorded", ""))
        if recorded.startswith("this instance only"):  # Redis went away meanwhile
            raise CommandFailed(f"not recorded: {recorded.removeprefix('this instance only ')}")
        if isinstance(command, SetWord):
            old = before.word(command.field)
            reply["old"] = None if old is None else old.value
            reply["new"] = command.value
        reply.pop("in_force", None)
        reply.pop("changes", None)
        return reply
    finally:
        store.conn.close()


def redis_status(url: str, namespace: str | None) -> dict[str, Any]:
    """The deployment's operator state as Redis holds it."""
    store = _store(url, namespace)
    try:
        try:
            state = store.read()
        except OperatorStateError as exc:
            raise CommandFailed(str(exc), EXIT_FAILED) from None
    finally:
        store.conn.close()
    doc = state.to_json() if state is not None else None
    return {
        "store": store.where,
        "rollbacks": [] if state is None else [w.describe() for w in state.standing_rollbacks()],
        "document": doc,
    }


def _nothing_to_apply(
    _in_force: Mapping[str, Sourced], _cause: str, _stamp: Stamp | None
) -> tuple[list[dict[str, Any]], str | None]:
    return [], None


def _said_by_the_reply(_change: WordChange, _stamp: Stamp) -> None:
    """Without an instance, the word is the reply; every instance logs and audits the change
    it makes (``CONTROL_CHANGE … by=… reason=…``) when it reads it."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The service's log lines stay out of a command's one-line output."""
    logger = logging.getLogger("grinder.service")
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was
