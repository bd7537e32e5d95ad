"""A small Binance USDⓈ-M futures client, written from the public API docs alone.

It shares nothing with GRINDER's adapter: it signs as the "General Info" page says (HMAC-SHA256
of the query string and the form body, hex, in ``signature``; the key in ``X-MBX-APIKEY``;
``timestamp`` in ms), sends GET/DELETE parameters in the query string and POST/PUT ones as a
form body, and reads the user-data stream from ``/private/ws?listenKey=`` after ``POST
/fapi/v1/listenKey``. Answers are kept whole (status, JSON, headers) for the tests to judge.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
from yarl import URL


@dataclass
class Reply:
    status: int
    data: Any
    headers: dict[str, str]

    @property
    def code(self) -> int | None:
        return self.data.get("code") if isinstance(self.data, dict) else None

    @property
    def used_weight(self) -> int:
        return int(self.headers["X-MBX-USED-WEIGHT-1M"])


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


@dataclass
class BinanceFutures:
    """Signed and public REST calls against ``base_url`` (a venue or the simulator)."""

    session: aiohttp.ClientSession
    base_url: str
    api_key: str
    api_secret: str
    recv_window_ms: int = 5000
    clock: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    """Where ``timestamp`` comes from: the wall clock, or a test's clock."""
    sent: list[tuple[str, str]] = field(default_factory=list)

    def _signed_query(self, params: dict[str, Any]) -> str:
        values = {k: _text(v) for k, v in params.items() if v is not None}
        values["recvWindow"] = str(self.recv_window_ms)
        values["timestamp"] = str(self.clock())
        query = urlencode(values)
        signature = hmac.new(self.api_secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        return f"{query}&signature={signature}"

    async def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, *, signed: bool
    ) -> Reply:
        params = params or {}
        if signed:
            text = self._signed_query(params)
        else:
            text = urlencode({k: _text(v) for k, v in params.items() if v is not None})
        headers = {"X-MBX-APIKEY": self.api_key}
        url = self.base_url + path
        data = None
        if method in ("POST", "PUT"):
            data = text
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif text:
            url = f"{url}?{text}"
        self.sent.append((method, path))
        async with self.session.request(
            method, URL(url, encoded=True), data=data, headers=headers
        ) as resp:
            body = await resp.text()
            return Reply(resp.status, json.loads(body) if body else None, dict(resp.headers))

    async def public(self, path: str, **params: Any) -> Reply:
        return await self.request("GET", path, params, signed=False)

    async def get(self, path: str, **params: Any) -> Reply:
        return await self.request("GET", path, params, signed=True)

    async def post(self, path: str, **params: Any) -> Reply:
        return await self.request("POST", path, params, signed=True)

    async def put(self, path: str, **params: Any) -> Reply:
        return await self.request("PUT", path, params, signed=True)

    async def delete(self, path: str, **params: Any) -> Reply:
        return await self.request("DELETE", path, params, signed=True)

    async def ok(self, method: str, path: str, **params: Any) -> Any:
        """The JSON of a call that must succeed (HTTP 200)."""
        reply = await self.request(method, path, params, signed=True)
        assert reply.status == 200, (method, path, reply.status, reply.data)
        return reply.data

    async def listen_key(self) -> str:
        reply = await self.request("POST", "/fapi/v1/listenKey", signed=False)
        assert reply.status == 200, reply.data
        return str(reply.data["listenKey"])


class UserStream:
    """The user-data stream of one listenKey: every event received, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, client: BinanceFutures, ws_base_url: str) -> UserStream:
        key = await client.listen_key()
        ws = await client.session.ws_connect(f"{ws_base_url}/private/ws?listenKey={key}")
        return cls(ws)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(msg.data))

    def of(self, kind: str, pred: Callable[[dict[str, Any]], bool] | None = None) -> list[Any]:
        return [e for e in self.events if e.get("e") == kind and (pred is None or pred(e))]

    def order_updates(self, exec_type: str | None = None) -> list[dict[str, Any]]:
        return [
            e["o"]
            for e in self.of("ORDER_TRADE_UPDATE")
            if exec_type is None or e["o"]["x"] == exec_type
        ]

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def dec(value: Any) -> Decimal:
    return Decimal(str(value))
