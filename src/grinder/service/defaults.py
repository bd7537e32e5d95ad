"""The service's defaults, each named once (the CLI's help, the options and the ceremony's
fallback URL read them from here)."""

from __future__ import annotations

from typing import Final, Literal

Venue = Literal["sim", "testnet", "mainnet"]
VENUES: Final[tuple[Venue, ...]] = ("sim", "testnet", "mainnet")
DEFAULT_VENUE: Final[Venue] = "sim"
DEFAULT_METRICS_HOST: Final = "127.0.0.1"
DEFAULT_METRICS_PORT: Final = 9090
DEFAULT_ARTIFACT_TTL_DAYS: Final = 14.0
