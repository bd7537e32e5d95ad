"""The metrics port: ``/metrics``, ``/healthz``, ``/readyz``."""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from grinder.reconcile.config import ConfigError
from grinder.redaction import redact
from grinder.reporting.metrics import exposition


def build_metrics_app(
    registry: CollectorRegistry,
    *,
    healthy: Callable[[], tuple[bool, dict[str, Any]]],
    ready: Callable[[], tuple[bool, dict[str, Any]]],
) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = exposition(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def probe(check: Callable[[], tuple[bool, dict[str, Any]]]) -> Any:
        async def handler(_: web.Request) -> web.Response:
            ok, details = check()
            return web.json_response(
                {"status": "ok" if ok else "unavailable", **details},
                status=200 if ok else 503,
                dumps=lambda o: json.dumps(redact(o, by_name=False), sort_keys=True, default=str),
            )

        return handler

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", probe(healthy))
    app.router.add_get("/readyz", probe(ready))
    return app


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0: ephemeral); returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = port
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    if sockets:
        bound = sockets[0].getsockname()[1]
    return runner, bound


async def start_unix_site(app: web.Application, path: str) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.UnixSite(runner, path)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return runner


PORT_ERRORS = frozenset({errno.EADDRINUSE, errno.EACCES, errno.EPERM})
"""Bind errors that are the port's fault (taken, or privileged); the others are the host's."""


def listen_error(exc: OSError, host: str, port: int) -> ConfigError:
    """A failed bind of the metrics endpoint as an error naming the flag at fault."""
    flag = "--metrics-port" if exc.errno in PORT_ERRORS else "--metrics-host"
    if isinstance(exc, socket.gaierror) or not exc.errno:
        reason = exc.strerror or str(exc)
    else:
        reason = os.strerror(exc.errno)  # asyncio wraps the bind error in a longer message
    return ConfigError(f"{flag}: cannot listen on {host}:{port} ({reason})")
