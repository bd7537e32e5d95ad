"""``grinder incidents``: list, show and acknowledge the ledger's incidents.

By default against the running service (its control socket, as ``grinder control``);
with ``--ledger-db FILE`` on a service's ledger file, or with ``--redis-url`` on the
shared ledger of an HA deployment, directly (the service need not run)::

    grinder incidents list --open
    grinder incidents list --since 2h --json
    grinder incidents show INC-ABCDEFGHIJ
    grinder incidents ack INC-ABCDEFGHIJ --note "manual order, cancelled by hand"

Bad input (an unknown id, a corrupt ledger, an ack without a note, a ``--since`` that
is no time) is one line and exit 2; nothing is written.
"""

from __future__ import annotations

import getpass
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from grinder.cli.control import call, socket_option
from grinder.cli.errors import UsageError
from grinder.cli.options import file_option, url_option
from grinder.clock import wall_clock_ms
from grinder.ha.connection import DEFAULT_NAMESPACE, RedisConnection, check_namespace
from grinder.incidents import render
from grinder.incidents.ledger import check_ack
from grinder.incidents.record_json import (
    ack_from_json,
    full_json,
    record_from_json,
    summary_from_json,
    summary_to_json,
)
from grinder.incidents.records import (
    Ack,
    IncidentRecord,
    LedgerError,
)
from grinder.incidents.redis_store import RedisIncidentStore
from grinder.incidents.sqlite_store import SqliteIncidentStore
from grinder.incidents.store import IncidentStore, unknown

T = TypeVar("T")
_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_since(text: str, now_ms: int) -> int:
    """``--since``: a duration back from now (``90s``, ``30m``, ``2h``, ``7d``), a UTC date or
    time (``2026-01-02``, ``2026-01-02T03:04:05``, with or without ``Z``), or epoch ms."""
    value = text.strip()
    duration = _DURATION.fullmatch(value)
    if duration:
        return max(0, now_ms - int(duration.group(1)) * _UNIT_MS[duration.group(2)])
    if value.isascii() and value.isdigit() and len(value) >= 12:
        return int(value)
    try:
        when = datetime.fromisoformat(value.removesuffix("Z"))
    except ValueError:
        raise UsageError(
            f"--since: expected a duration (30m, 2h, 7d), a UTC time (2026-01-02T03:04:05Z) "
            f"or epoch milliseconds, got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


ledger_db_option = file_option(
    "--ledger-db", help="Read the service's ledger file directly [env GRINDER_LEDGER_DB]."
)
redis_url_option = url_option(
    "--redis-url",
    help="Read the HA deployment's shared ledger in this Redis directly [env GRINDER_REDIS_URL].",
    http=False,
)
namespace_option = click.option(
    "--redis-namespace",
    default=None,
    metavar="NS",
    help=f"Key prefix in Redis [env GRINDER_REDIS_NAMESPACE; default {DEFAULT_NAMESPACE}].",
)


def _sources(func: Any) -> Any:
    for option in (namespace_option, redis_url_option, ledger_db_option, socket_option):
        func = option(func)
    return func


@contextmanager
def _direct(
    ledger_db: str | None, redis_url: str | None, namespace: str | None, *, write: bool
) -> Iterator[IncidentStore | None]:
    """The store named on the command line, or None (then: the service's control socket)."""
    env = os.environ
    ledger_db = ledger_db or env.get("GRINDER_LEDGER_DB") or None
    redis_url = redis_url or (None if ledger_db else env.get("GRINDER_REDIS_URL") or None)
    if ledger_db and redis_url:
        raise UsageError("--ledger-db and --redis-url: name one ledger, not both")
    if ledger_db:
        path = Path(ledger_db)
        if not path.is_file() or path.stat().st_size == 0:
            raise UsageError(f"--ledger-db: no incident ledger at {path}")
        try:
            store: IncidentStore = SqliteIncidentStore(path, readonly=not write)
        except LedgerError as exc:
            raise UsageError(f"--ledger-db: {exc}") from None
        try:
            yield store
        finally:
            store.close()
        return
    if redis_url:
        ns = namespace or env.get("GRINDER_REDIS_NAMESPACE") or DEFAULT_NAMESPACE
        try:
            check_namespace(ns)
            conn = RedisConnection(redis_url, namespace=ns, timeout_s=2.0)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        try:
            yield RedisIncidentStore(conn)
        finally:
            conn.close()
        return
    yield None


def _checked(fn: Callable[[], T]) -> T:
    """``fn()``, a ledger's refusal (an unknown id, a damaged record) as a usage error."""
    try:
        return fn()
    except LedgerError as exc:
        raise UsageError(str(exc)) from None


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group("incidents")
def incidents() -> None:
    """The incident ledger: every mismatch with its cause, evidence, steps and end."""


@incidents.command("list")
@click.option("--open", "open_only", is_flag=True, help="Only the incidents still open.")
@click.option("--since", default=None, metavar="WHEN", help="Open at any time since WHEN.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1_000_000),
    default=None,
    metavar="N",
    help="At most N incidents, the newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@_sources
def list_incidents(
    open_only: bool,
    since: str | None,
    limit: int | None,
    as_json: bool,
    socket_path: str | None,
    ledger_db: str | None,
    redis_url: str | None,
    redis_namespace: str | None,
) -> None:
    """The incidents, the newest first."""
    now = wall_clock_ms()
    since_ms = None if since is None else parse_since(since, now)
    with _direct(ledger_db, redis_url, redis_namespace, write=False) as store:
        if store is not None:
            found = _checked(
                lambda: store.summaries(open_only=open_only, since_ms=since_ms, limit=limit)
            )
            where = store.where
        else:
            query = [f"open={'1' if open_only else '0'}"]
            if since_ms is not None:
                query.append(f"since={since_ms}")
            if limit is not None:
                query.append(f"limit={limit}")
            data = call(socket_path, "GET", "/incidents?" + "&".join(query))
            where = str(data.get("store", "the service"))
            found = _checked(
                lambda: [summary_from_json(s, "the service's reply") for s in data["incidents"]]
            )
    if as_json:
        _print_json({"incidents": [summary_to_json(s) for s in found], "store": where})
        return
    if found:
        for line in render.table(found, now):
            click.echo(line)
    click.echo(render.footer(found, where))


def _fetch(
    incident_id: str,
    socket_path: str | None,
    ledger_db: str | None,
    redis_url: str | None,
    namespace: str | None,
) -> IncidentRecord:
    with _direct(ledger_db, redis_url, namespace, write=False) as store:
        if store is not None:
            rec = _checked(lambda: store.get(incident_id))
            if rec is None:
                raise UsageError(str(unknown(incident_id, store.where)))
            return rec
    data = call(socket_path, "GET", f"/incidents/{incident_id}")
    return _from_reply(data)


def _from_reply(data: Any) -> IncidentRecord:
    ack = data.get("ack") if isinstance(data, dict) else None
    where = "the service's reply"
    return _checked(
        lambda: record_from_json(data, where, None if ack is None else ack_from_json(ack, where))
    )


@incidents.command("show")
@click.argument("incident_id")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
@_sources
def show(
    incident_id: str,
    as_json: bool,
    socket_path: str | None,
    ledger_db: str | None,
    redis_url: str | None,
    redis_namespace: str | None,
) -> None:
    """One incident whole: cause, evidence, remediation steps, acknowledgement."""
    rec = _fetch(incident_id, socket_path, ledger_db, redis_url, redis_namespace)
    if as_json:
        _print_json(full_json(rec))
        return
    for line in render.detail(rec, wall_clock_ms()):
        click.echo(line)


@incidents.command("ack")
@click.argument("incident_id")
@click.option("--note", required=True, help="What was done about it, or why nothing.")
@click.option("--by", default=None, help="Who acknowledges [default: the login name].")
@_sources
def ack(
    incident_id: str,
    note: str,
    by: str | None,
    socket_path: str | None,
    ledger_db: str | None,
    redis_url: str | None,
    redis_namespace: str | None,
) -> None:
    """Acknowledge an incident (with a note); a later one replaces it."""
    who = by if by is not None else _login()
    clean_by, clean_note = _checked(lambda: check_ack(who, note))
    with _direct(ledger_db, redis_url, redis_namespace, write=True) as store:
        if store is not None:
            stamp = Ack(by=clean_by, ts_ms=wall_clock_ms(), note=clean_note)
            rec = _checked(lambda: store.acknowledge(incident_id, stamp))
        else:
            body = {"by": clean_by, "note": clean_note}
            rec = _from_reply(call(socket_path, "POST", f"/incidents/{incident_id}/ack", body))
    assert rec.ack is not None
    click.echo(f"{rec.id} acknowledged by {rec.ack.by} at {render.utc(rec.ack.ts_ms)} UTC")


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"
