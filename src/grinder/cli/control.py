"""``grinder control``: change a running service's settings without a restart.

The runbook-13 rollbacks, on a running service::

    grinder control set action none        # config.action = RemediationAction.NONE
    grinder control set dry_run true       # config.dry_run = True
    grinder control disarm                 # executor.armed = False
    grinder control deny-mainnet           # unset ALLOW_MAINNET_TRADE (for this process)
    grinder control reload                 # re-read the --config file (same as SIGHUP)
    grinder control status
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import click

from grinder.cli.errors import EXIT_FAILED, UsageError
from grinder.service.control import DEFAULT_SOCKET_TEXT, default_socket_path

socket_option = click.option(
    "--socket",
    "socket_path",
    type=click.Path(),
    default=None,
    metavar="PATH",
    help=f"The service's control socket (default {DEFAULT_SOCKET_TEXT}).",
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


def _show(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group("control")
def control() -> None:
    """Change a running service's settings (effective before its next exchange write)."""


@control.command("status")
@socket_option
def status(socket_path: str | None) -> None:
    """Settings in force, mode, readiness, budget and the last run."""
    _show(call(socket_path, "GET", "/status"))


@control.command("set")
@click.argument("field")
@click.argument("value")
@socket_option
def set_field(field: str, value: str, socket_path: str | None) -> None:
    """Set a ReconcileConfig FIELD to VALUE (e.g. `action none`, `dry_run true`)."""
    _show(call(socket_path, "POST", "/set", {"field": field, "value": value}))


@control.command("arm")
@socket_option
def arm(socket_path: str | None) -> None:
    """Arm the executor (gate 4)."""
    _show(call(socket_path, "POST", "/arm", {"armed": True}))


@control.command("disarm")
@socket_option
def disarm(socket_path: str | None) -> None:
    """Disarm the executor: no exchange write from now on."""
    _show(call(socket_path, "POST", "/arm", {"armed": False}))


@control.command("allow-mainnet")
@socket_option
def allow_mainnet(socket_path: str | None) -> None:
    """Set ALLOW_MAINNET_TRADE=1 for the running service (gate 5)."""
    _show(call(socket_path, "POST", "/mainnet", {"allow": True}))


@control.command("deny-mainnet")
@socket_option
def deny_mainnet(socket_path: str | None) -> None:
    """Unset ALLOW_MAINNET_TRADE for the running service."""
    _show(call(socket_path, "POST", "/mainnet", {"allow": False}))


@control.command("reload")
@socket_option
def reload(socket_path: str | None) -> int:
    """Re-read the service's --config file (as SIGHUP does)."""
    result = call(socket_path, "POST", "/reload", {})
    _show(result)
    return 0 if isinstance(result, dict) else EXIT_FAILED
