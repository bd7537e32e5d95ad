"""The simulator in the test's own event loop, and what talks to it over real HTTP: its
control client and a signed REST client of one API key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from grinder.exchange.binance.credentials import Credentials
from grinder.exchange.binance.rest import BinanceRestClient
from grinder.exchange.simulator import SimConfig, SimulatorServer
from grinder.exchange.simulator.client import SimControl


@asynccontextmanager
async def frozen_simulator(
    key: str,
    secret: str,
    *,
    seed: int,
    symbols: tuple[str, ...] = ("BTCUSDT",),
    more_keys: Mapping[str, str] | None = None,
) -> AsyncIterator[SimulatorServer]:
    """A simulator on a free loopback port whose prices stand still (``walk_frozen``)."""
    config = SimConfig(seed=seed, walk_frozen=True, more_keys=dict(more_keys or {}))
    server = SimulatorServer(
        port=0, api_key=key, api_secret=secret, symbols=list(symbols), config=config
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def sim_control(sim: SimulatorServer) -> AsyncIterator[SimControl]:
    async with SimControl(sim.base_url) as control:
        yield control


@asynccontextmanager
async def signed_rest(
    sim: SimulatorServer, key: str, secret: str
) -> AsyncIterator[BinanceRestClient]:
    """A REST client of ``key`` with its clock offset to the simulator's already read."""
    client = BinanceRestClient(sim.base_url, Credentials(key, secret))
    await client.sync_time()
    try:
        yield client
    finally:
        await client.close()
