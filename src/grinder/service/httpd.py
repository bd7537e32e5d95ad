"""The metrics port: ``/metrics``, ``/healthz``, ``/readyz``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def build_metrics_app(
    registry: CollectorRegistry,
    *,
    healthy: Callable[[], tuple[bool, dict[str, Any]]],
    ready: Callable[[], tuple[bool, dict[str, Any]]],
) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def probe(check: Callable[[], tuple[bool, dict[str, Any]]]) -> Any:
        async def handler(_: web.Request) -> web.Response:
            ok, details = check()
            return web.json_response(
                {"status": "ok" if ok else "unavailable", **details},
                status=200 if ok else 503,
                dumps=lambda o: json.dumps(o, sort_keys=True, default=str),
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
