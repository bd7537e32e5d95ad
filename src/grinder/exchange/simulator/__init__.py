"""A local Binance USDⓈ-M futures venue that speaks the real protocol.

Same REST paths, parameters, HMAC signatures, JSON shapes, error codes and
user-data stream events as the real venue, so the real client runs against it
unchanged; plus a control API under ``/_sim/`` to inject drift and faults.
See ``docs/SIMULATOR.md``.
"""

from grinder.exchange.simulator.clock import Clock, ManualClock, SystemClock
from grinder.exchange.simulator.config import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    ENV_API_KEY,
    ENV_API_SECRET,
    SimConfig,
)
from grinder.exchange.simulator.exchange import Simulator
from grinder.exchange.simulator.server import SimulatorServer, run_forever, serve
from grinder.exchange.simulator.symbols import CATALOG, DEFAULT_SYMBOLS, SymbolSpec

__all__ = [
    "CATALOG",
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "DEFAULT_SYMBOLS",
    "ENV_API_KEY",
    "ENV_API_SECRET",
    "Clock",
    "ManualClock",
    "SimConfig",
    "Simulator",
    "SimulatorServer",
    "SymbolSpec",
    "SystemClock",
    "run_forever",
    "serve",
]
