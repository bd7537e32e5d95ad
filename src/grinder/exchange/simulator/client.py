"""A small client of the simulator's ``/_sim/`` control API (docs/SIMULATOR.md)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import aiohttp


class SimControlError(RuntimeError):
    """The control API refused a call (its body says why)."""


class SimControl:
    """Calls ``/_sim/…`` on a simulator at ``base_url`` over one HTTP session."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = aiohttp.ClientSession()

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.session.request(method, f"{self.base_url}/_sim{path}", json=body) as resp:
            data = await resp.json()
            if resp.status != 200:
                raise SimControlError(f"{method} /_sim{path}: HTTP {resp.status} {data}")
            return data

    async def state(self) -> Any:
        return await self.call("GET", "/state")

    async def place_order(
        self,
        symbol: str,
        side: str,
        quantity: str,
        price: str,
        client_order_id: str,
        **fields: Any,
    ) -> Any:
        """A resting GTC LIMIT order, as if placed by hand (``POST /_sim/orders``); ``fields``
        add to or override the request body (e.g. ``emitEvents=False``)."""
        body: dict[str, Any] = {
            "symbol": symbol,
            "side": side,
            "type": "LIMIT",
            "quantity": quantity,
            "price": price,
            "timeInForce": "GTC",
            "clientOrderId": client_order_id,
        }
        body.update(fields)
        return await self.call("POST", "/orders", body)

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> SimControl:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
