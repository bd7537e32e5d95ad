"""Start and stop the simulator: in-process (``SimulatorServer``) or as a service (``run_forever``).

In-process::

    async with SimulatorServer(port=0, seed=1) as sim:
        sim.base_url       # "http://127.0.0.1:PORT"  (REST and /_sim/)
        sim.ws_base_url    # "ws://127.0.0.1:PORT"    (/private/ws?listenKey=...)
        sim.exchange       # the Simulator: direct access to orders, positions, faults

Credentials default to ``GRINDER_SIM_API_KEY`` / ``GRINDER_SIM_API_SECRET``,
else ``grinder-sim-key`` / ``grinder-sim-secret``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from dataclasses import replace
from types import TracebackType

from aiohttp import web

from grinder.exchange.simulator.app import build_app
from grinder.exchange.simulator.clock import Clock
from grinder.exchange.simulator.config import SimConfig, default_api_key, default_api_secret
from grinder.exchange.simulator.exchange import Simulator
from grinder.exchange.simulator.symbols import SymbolSpec

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 1.0
"""How long ``stop`` waits for requests still in flight before cutting them."""


class SimulatorServer:
    """A real HTTP + WebSocket server on ``host:port`` (port 0 = an ephemeral port)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        symbols: Sequence[str | SymbolSpec] | None = None,
        *,
        config: SimConfig | None = None,
        clock: Clock | None = None,
        background: bool = True,
    ) -> None:
        """``config`` carries every knob; the plain arguments, when given, override it.

        ``seed`` defaults to 1 (or ``config.seed``); credentials default to the
        environment (``GRINDER_SIM_API_KEY`` / ``GRINDER_SIM_API_SECRET``) and then
        to ``grinder-sim-key`` / ``grinder-sim-secret``. ``background=False`` skips
        the tick task (call ``sim.exchange.heartbeat()`` yourself).
        """
        base = config or SimConfig()
        self.config = replace(
            base,
            seed=seed if seed is not None else base.seed,
            api_key=api_key or base.api_key or default_api_key(),
            api_secret=api_secret or base.api_secret or default_api_secret(),
            symbols=symbols if symbols is not None else base.symbols,
        )
        self.host = host
        self._requested_port = port
        self.port = 0
        self.exchange = Simulator(self.config, clock)
        self.app = build_app(self.exchange)
        self._background = background
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self._url_host}:{self.port}"

    @property
    def ws_base_url(self) -> str:
        return f"ws://{self._url_host}:{self.port}"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def api_secret(self) -> str:
        return self.config.api_secret

    async def start(self) -> None:
        if self._runner is not None:
            return
        # At stop, requests still in flight (an injected latency) are cut after a second.
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=STOP_TIMEOUT_S
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port, reuse_address=True)
        await site.start()
        self._runner = runner
        addresses = runner.addresses
        self.port = int(addresses[0][1]) if addresses else self._requested_port
        if self._background:
            self.exchange.start_background()
        log.info("simulator listening on %s", self.base_url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        await self.exchange.stop_background()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    seed: int = 1,
    api_key: str | None = None,
    api_secret: str | None = None,
    symbols: Sequence[str] | None = None,
    *,
    tick_interval_ms: int = 200,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the simulator until ``stop`` is set (or SIGINT / SIGTERM)."""
    config = SimConfig(seed=seed, tick_interval_ms=tick_interval_ms)
    server = SimulatorServer(host, port, seed, api_key, api_secret, symbols, config=config)
    log.info("simulator seed=%s symbols=%s", seed, ",".join(server.exchange.specs))
    done = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, done.set)
    await server.start()
    print(f"grinder simulator on {server.base_url} (ws {server.ws_base_url})", flush=True)
    try:
        await done.wait()
    finally:
        await server.stop()


def run_forever(
    host: str = "127.0.0.1",
    port: int = 8765,
    seed: int = 1,
    api_key: str | None = None,
    api_secret: str | None = None,
    symbols: Sequence[str] | None = None,
    tick_interval_ms: int = 200,
) -> None:
    """Blocking entry point for ``grinder sim serve``: serve until SIGINT / SIGTERM."""
    asyncio.run(
        serve(
            host,
            port,
            seed,
            api_key,
            api_secret,
            symbols,
            tick_interval_ms=tick_interval_ms,
        )
    )
