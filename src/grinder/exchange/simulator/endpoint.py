"""One REST endpoint of the venue: method, path, security, handler and how it is counted.

Each concern's module (``rest``, ``market_data``, ``account_api``, ``trading``) lists its
endpoints; ``rest.ENDPOINTS`` is all of them, routed by ``app.py``. Request weights are
``weights.WEIGHTS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from grinder.exchange.simulator.params import Params

if TYPE_CHECKING:
    from grinder.exchange.simulator.exchange import Simulator


@dataclass(frozen=True, slots=True)
class RawJSON:
    """A body already serialized (the openOrders snapshot)."""

    text: str


Handler = Callable[["Simulator", Params], Any]


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    security: str
    handler: Handler
    write: bool = False
    """A write to the account (orders, algo orders, batches, amendments, countdown timers,
    account settings): recorded in the write log and counted in ``writeRequests``."""
    new_order: bool = False
    """Counts against the ORDERS rate limits and reports X-MBX-ORDER-COUNT-*."""
    orders_10s: int = 1
    """What one request counts on the 10-second ORDERS limit (5 for a batch)."""
    orders_1m: int = 1
    """What one request counts on the 1-minute ORDERS limit."""
