"""Connecting to a venue: the bundled simulator, testnet, mainnet, or a URL.

``sim`` without ``--venue-url`` starts the simulator in-process on an ephemeral
loopback port. A real venue needs ``BINANCE_API_KEY`` / ``BINANCE_API_SECRET``
(or their ``…_FILE`` variants); without them the service exits 2 before it
opens a connection.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from grinder.clock import Clock
from grinder.config_sources import check_http_url
from grinder.exchange.binance.credentials import VENUES, Credentials
from grinder.exchange.binance.futures_port import BinanceFuturesPort
from grinder.exchange.binance.rest import BinanceRestClient
from grinder.exchange.simulator.config import (
    ENV_API_KEY,
    ENV_API_SECRET,
    default_api_key,
    default_api_secret,
)
from grinder.exchange.simulator.server import SimulatorServer
from grinder.redaction import register_secret
from grinder.service.options import ServiceOptions


@dataclass
class VenueConnection:
    name: str
    rest: BinanceRestClient
    port: BinanceFuturesPort
    ws_base_url: str
    sim: SimulatorServer | None = None

    async def close(self) -> None:
        await self.rest.close()
        if self.sim is not None:
            await self.sim.stop()


def ws_url_for(rest_url: str) -> str:
    parts = urlsplit(check_http_url(rest_url, "--venue-url"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}"


def credentials_for(venue: str, env: Mapping[str, str] | None = None) -> Credentials:
    if venue == "sim":
        for name in (ENV_API_KEY, ENV_API_SECRET):  # the defaults are public
            register_secret(os.environ.get(name))
        return Credentials(default_api_key(), default_api_secret())
    return Credentials.from_env(env or os.environ, purpose=f"needed for venue {venue}")


def check_venue(opts: ServiceOptions, env: Mapping[str, str] | None = None) -> Credentials:
    """Validate the venue settings before anything starts (ConfigError → exit 2)."""
    if opts.venue_url is not None:
        ws_url_for(opts.venue_url)
    return credentials_for(opts.venue, env)


async def connect_venue(
    opts: ServiceOptions,
    credentials: Credentials,
    *,
    clock: Clock,
    on_weight: Callable[[int], None] | None = None,
    on_spend: Callable[[int], None] | None = None,
) -> VenueConnection:
    sim: SimulatorServer | None = None
    if opts.venue_url is not None:
        rest_url = opts.venue_url.rstrip("/")
        ws_url = ws_url_for(rest_url)
    elif opts.venue == "sim":
        sim = SimulatorServer(
            port=0,
            seed=opts.service.sim_seed,
            api_key=credentials.api_key,
            api_secret=credentials.api_secret,
            symbols=opts.service.sim_symbols,
        )
        await sim.start()
        rest_url, ws_url = sim.base_url, sim.ws_base_url
    else:
        venue = VENUES[opts.venue]
        rest_url, ws_url = venue.rest_url, venue.ws_url
    rest = BinanceRestClient(
        rest_url, credentials, clock=clock, on_weight=on_weight, on_spend=on_spend
    )
    port = BinanceFuturesPort(rest, clock=clock)
    return VenueConnection(opts.venue, rest, port, ws_url, sim)
