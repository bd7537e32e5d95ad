"""``grinder control``: the operator's words on a running deployment, without a restart.

The runbook-13 rollbacks, on any instance's control socket (or straight into the
deployment's Redis with ``--redis-url``); each one holds on **every** instance, through
reload, SIGHUP, restart and failover, until it is lifted::

    grinder control set action none        # rollback action-none
    grinder control set dry_run true       # rollback dry-run
    grinder control disarm                 # rollback disarm
    grinder control deny-mainnet           # rollback deny-mainnet (gate 5 closed)
    grinder control lift disarm            # lift one (or: lift all)
    grinder control reload                 # re-read the --config file (same as SIGHUP)
    grinder control status

Every command that gives a word sends who gives it (``user@host`` of this shell) and
takes ``--reason TEXT``. It answers once the word is recorded, in force, and no write
authorized before it is still on its way to the exchange.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import click

from grinder.cli.errors import EXIT_FAILED, CommandFailed, UsageError
from grinder.cli.operator_redis import redis_command, redis_status
from grinder.operator.state import check_reason
from grinder.reconcile.config import ConfigError
from grinder.service.control import DEFAULT_SOCKET_TEXT, default_socket_path

F = TypeVar("F", bound=Callable[..., Any])

socket_option = click.option(
    "--socket",
    "socket_path",
    type=click.Path(),
    default=None,
    metavar="PATH",
    help=f"The service's control socket (default {DEFAULT_SOCKET_TEXT}).",
)
reason_option = click.option(
    "--reason", default=None, metavar="TEXT", help="Why (one line, recorded with the word)."
)
redis_option = click.option(
    "--redis-url",
    "redis_url",
    default=None,
    metavar="URL",
    help="Give the word straight to the deployment's Redis. Without it and --socket: this "
    "host's instance (default socket), else GRINDER_REDIS_URL.",
)
namespace_option = click.option(
    "--redis-namespace",
    "namespace",
    default=None,
    metavar="NS",
    help="The deployment's namespace in Redis (default GRINDER_REDIS_NAMESPACE, else grinder).",
)


async def _call(path: Path, method: str, route: str, body: dict[str, Any] | None) -> Any:
    connector = aiohttp.UnixConnector(path=str(path))
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        session.request(method, f"http://grinder{route}", json=body) as resp,
    ):
        text = await resp.text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            # Not one of the service's answers: a route this (older) service does not have.
            summary = " ".join(text.split())[:80] or "no body"
            raise UsageError(f"control {route}: HTTP {resp.status} ({summary})") from None
        if resp.status == 503:
            message = data.get("error") if isinstance(data, dict) else data
            raise CommandFailed(f"control {route}: {message}", EXIT_FAILED)
        if resp.status != 200:
            message = data.get("error") if isinstance(data, dict) else data
            raise UsageError(f"control {route}: {message}")
        return data


def socket_path_of(socket_path: str | None) -> Path:
    """The ``--socket`` given, else the service's default control socket."""
    return Path(socket_path) if socket_path else default_socket_path(os.environ)


def call(
    socket_path: str | None, method: str, route: str, body: dict[str, Any] | None = None
) -> Any:
    path = socket_path_of(socket_path)
    if not path.exists():
        raise UsageError(f"--socket: no control socket at {path} (is the service running?)")
    try:
        return asyncio.run(_call(path, method, route, body))
    except aiohttp.ClientError as exc:
        raise UsageError(f"--socket: cannot reach the service at {path} ({exc})") from None
    except TimeoutError:
        raise UsageError(
            f"--socket: the service at {path} did not answer {method} {route} in time"
        ) from None


def caller() -> str:
    """``user@host`` of this shell: who gives the word."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _show(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@dataclass(frozen=True)
class WordTo:
    """Where a word goes (``--socket``, ``--redis-url``, ``--redis-namespace``) and why it is
    given (``--reason``)."""

    socket_path: str | None
    redis_url: str | None
    namespace: str | None
    reason: str | None


def _word(route: str, body: dict[str, Any], to: WordTo) -> None:
    """Give a word: through the socket, or into Redis (see ``redis_url_of``)."""
    try:
        check_reason(to.reason)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    body = {**body, "by": caller(), "reason": to.reason}
    url = redis_url_of(to.socket_path, to.redis_url)
    if url is not None:
        result = redis_command(url, to.namespace, route, body)
    else:
        result = call(to.socket_path, "POST", route, body)
    _show(result)
    recorded = result.get("recorded", "") if isinstance(result, dict) else ""
    if recorded.startswith("this instance only"):
        raise CommandFailed(
            f"the rollback holds on this instance only, not yet for the deployment: {recorded}; "
            "it is written as soon as the store answers (grinder control status: pending)",
            EXIT_FAILED,
        )


def redis_url_of(socket_path: str | None, redis_url: str | None) -> str | None:
    """Where a word goes: ``--redis-url`` or ``--socket`` as given; else this host's
    instance (its default control socket) when there is one -- it knows where its operator
    state lives -- and only without one, ``GRINDER_REDIS_URL``."""
    if socket_path and redis_url:
        raise UsageError("--socket and --redis-url: give one (an instance, or the Redis)")
    if redis_url is not None:
        return redis_url
    if socket_path or socket_path_of(None).exists():
        return None
    return os.environ.get("GRINDER_REDIS_URL") or None


@click.group("control")
def control() -> None:
    """A running deployment's settings: rollbacks that hold everywhere until lifted."""


@control.command("status")
@socket_option
@click.option(
    "--redis-url",
    "redis_url",
    default=None,
    metavar="URL",
    help="Show the deployment's operator state as Redis holds it (no instance needed).",
)
@namespace_option
def status(socket_path: str | None, redis_url: str | None, namespace: str | None) -> None:
    """Settings in force with their sources, the standing rollbacks, mode, readiness."""
    if socket_path and redis_url:
        raise UsageError("--socket and --redis-url: give one (an instance, or the Redis)")
    if redis_url is not None:
        _show(redis_status(redis_url, namespace))
        return
    _show(call(socket_path, "GET", "/status"))


def _word_options(fn: F) -> F:
    for option in (namespace_option, redis_option, reason_option, socket_option):
        fn = option(fn)
    return fn


@control.command("set")
@click.argument("field")
@click.argument("value")
@_word_options
def set_field(
    field: str,
    value: str,
    socket_path: str | None,
    redis_url: str | None,
    namespace: str | None,
    reason: str | None,
) -> None:
    """Give FIELD the value VALUE (`action none` and `dry_run true` are rollbacks)."""
    _word(
        "/set", {"field": field, "value": value}, WordTo(socket_path, redis_url, namespace, reason)
    )


@control.command("arm")
@_word_options
def arm(
    socket_path: str | None, redis_url: str | None, namespace: str | None, reason: str | None
) -> None:
    """Arm the executor (gate 4); refused while the rollback disarm stands."""
    _word("/arm", {"armed": True}, WordTo(socket_path, redis_url, namespace, reason))


@control.command("disarm")
@_word_options
def disarm(
    socket_path: str | None, redis_url: str | None, namespace: str | None, reason: str | None
) -> None:
    """Disarm every instance: no exchange write until `lift disarm`."""
    _word("/arm", {"armed": False}, WordTo(socket_path, redis_url, namespace, reason))


@control.command("allow-mainnet")
@_word_options
def allow_mainnet(
    socket_path: str | None, redis_url: str | None, namespace: str | None, reason: str | None
) -> None:
    """Open gate 5 (ALLOW_MAINNET_TRADE=1) on every instance of the running deployment."""
    _word("/mainnet", {"allow": True}, WordTo(socket_path, redis_url, namespace, reason))


@control.command("deny-mainnet")
@_word_options
def deny_mainnet(
    socket_path: str | None, redis_url: str | None, namespace: str | None, reason: str | None
) -> None:
    """Close gate 5 on every instance (rollback deny-mainnet)."""
    _word("/mainnet", {"allow": False}, WordTo(socket_path, redis_url, namespace, reason))


@control.command("lift")
@click.argument("name")
@_word_options
def lift(
    name: str,
    socket_path: str | None,
    redis_url: str | None,
    namespace: str | None,
    reason: str | None,
) -> None:
    """Lift NAME: a rollback (action-none, dry-run, disarm, deny-mainnet), the operator's
    word on one setting (its name), or all. The setting returns to its configured value."""
    _word("/lift", {"name": name}, WordTo(socket_path, redis_url, namespace, reason))


@control.command("reload")
@socket_option
def reload(socket_path: str | None) -> int:
    """Re-read the service's --config file (as SIGHUP does); rollbacks keep holding."""
    result = call(socket_path, "POST", "/reload", {})
    _show(result)
    return 0 if isinstance(result, dict) else EXIT_FAILED
