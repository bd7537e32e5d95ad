"""Simulator settings: one object, every knob documented, safe defaults.

Default credentials come from ``GRINDER_SIM_API_KEY`` / ``GRINDER_SIM_API_SECRET``
and fall back to ``grinder-sim-key`` / ``grinder-sim-secret``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from grinder.exchange.simulator.symbols import SymbolSpec

DEFAULT_API_KEY = "grinder-sim-key"
DEFAULT_API_SECRET = "grinder-sim-secret"
ENV_API_KEY = "GRINDER_SIM_API_KEY"
ENV_API_SECRET = "GRINDER_SIM_API_SECRET"


def default_api_key() -> str:
    return os.environ.get(ENV_API_KEY) or DEFAULT_API_KEY


def default_api_secret() -> str:
    return os.environ.get(ENV_API_SECRET) or DEFAULT_API_SECRET


@dataclass(slots=True)
class SimConfig:
    """Everything that shapes one simulator instance."""

    seed: int = 1
    """Seeds the mark-price walk and listenKey generation: same seed, same run."""
    api_key: str = field(default_factory=default_api_key)
    api_secret: str = field(default_factory=default_api_secret)
    more_keys: Mapping[str, str] = field(default_factory=dict)
    """Further API keys of the same account (key → secret), as an account may hold
    several; the write log tells which key sent each write."""
    symbols: Sequence[str | SymbolSpec] | None = None
    """Symbol names from the catalog (or specs); ``None`` = all 20 catalog symbols."""

    tick_interval_ms: int = 200
    """How often the mark-price walk steps and resting orders are matched."""
    walk_volatility: float = 0.0005
    """Standard deviation of one walk step, as a fraction of the price."""
    walk_frozen: bool = False

    listen_key_validity_ms: int = 60 * 60 * 1000
    """A listenKey expires this long after its creation or last keepalive."""
    max_connection_age_ms: int = 24 * 60 * 60 * 1000
    """A user-data WebSocket older than this is closed, as Binance does at 24 h."""

    weight_limit: int = 2400
    """REQUEST_WEIGHT per IP per minute (exchangeInfo rateLimits)."""
    rejections_before_ban: int = 3
    """Requests an IP may send after its first 429 in a window before a 418 ban."""
    ban_seconds: int = 120
    """Length of the first 418 ban; repeat bans double it, up to three days."""
    orders_per_10s: int = 300
    orders_per_minute: int = 1200

    recv_window_default_ms: int = 5000
    recv_window_max_ms: int = 60000

    starting_balance: Decimal = Decimal("10000")
    """USDT wallet balance at start (and after reset)."""
    leverage: int = 20
    maker_fee: Decimal = Decimal("0.0002")
    taker_fee: Decimal = Decimal("0.0005")
    dual_side_position: bool = False
    """Hedge mode at start (``False`` = one-way mode)."""

    order_id_start: int = 8_389_765_900_000_000_000
    """First order id; above 2^53 on purpose, as Binance's ids are."""
    algo_id_start: int = 2_000_000_037_000_000
    trade_id_start: int = 7_043_000_000
    tran_id_start: int = 9_689_322_392
    """First income ``tranId``."""
    funding_interval_ms: int = 8 * 60 * 60 * 1000
    """Funding settles at every multiple of this since the Unix epoch (00:00, 08:00, 16:00
    UTC by default); ``0`` turns funding off."""
    funding_rate: Decimal = Decimal("0.0001")
    """The funding rate of every settlement (longs pay shorts when positive)."""
    history_limit: int = 100_000
    """Ended orders kept for ``GET /fapi/v1/order``; the oldest are forgotten first."""
    trade_lite: bool = True
    """Also send TRADE_LITE for each fill, as Binance does."""
