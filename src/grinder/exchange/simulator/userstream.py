"""The user-data stream: listenKeys, WebSocket subscribers, and events that are never sent.

A listenKey lives ``listen_key_validity_ms`` (60 min) from its creation or
last keepalive; ``POST`` on an account that has a live key returns that key
and extends it. When a key expires, or is closed with ``DELETE``, every socket
on it receives ``listenKeyExpired`` and is then closed. A socket older than
``max_connection_age_ms`` (24 h) is closed. Each socket may name the events it
wants (``events=A/B`` or ``A,B``); without the parameter it gets all of them.

Suppression rules drop events before any socket sees them: the next N events
(optionally of given types), or every event about one client order id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import string
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator import events as ev
from grinder.exchange.simulator.clock import Clock
from grinder.exchange.simulator.config import SimConfig

log = logging.getLogger(__name__)
_KEY_ALPHABET = string.ascii_letters + string.digits
_CLOSE = object()


@dataclass(slots=True)
class ListenKey:
    key: str
    created_ms: int
    expires_ms: int


@dataclass(slots=True)
class SuppressRule:
    remaining: int | None
    client_order_id: str | None = None
    event_types: frozenset[str] | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        if self.event_types is not None and event.get("e") not in self.event_types:
            return False
        return self.client_order_id is None or ev.client_id_of(event) == self.client_order_id

    def dump(self) -> dict[str, Any]:
        return {
            "remaining": self.remaining,
            "clientOrderId": self.client_order_id,
            "eventTypes": sorted(self.event_types) if self.event_types else None,
        }


@dataclass(eq=False)
class Connection:
    """One user-data WebSocket."""

    ws: web.WebSocketResponse
    request: web.Request
    listen_key: str
    events: frozenset[str] | None
    connected_ms: int
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    sent: int = 0

    def wants(self, event_type: str) -> bool:
        return self.events is None or event_type in self.events


def parse_events(raw: str | None) -> frozenset[str] | None:
    """``events=A/B/C`` (or ``A,B,C``) -> the allow-list; absent or empty -> all events."""
    if not raw:
        return None
    names = {part.strip() for part in raw.replace(",", "/").split("/") if part.strip()}
    return frozenset(names) or None


class StreamHub:
    """ListenKeys, live sockets, and the publishing of events to them."""

    def __init__(self, clock: Clock, config: SimConfig, ws_latency_ms: Callable[[], int]) -> None:
        self.clock = clock
        self.config = config
        self._ws_latency_ms = ws_latency_ms
        self.connections: set[Connection] = set()
        self.reset()

    def reset(self) -> None:
        self.keys: dict[str, ListenKey] = {}
        self.rules: list[SuppressRule] = []
        self.published = 0
        self.delivered = 0
        self.suppressed = 0
        self.suppressed_log: deque[dict[str, Any]] = deque(maxlen=200)
        self.recent: deque[dict[str, Any]] = deque(maxlen=1000)
        self._rng = random.Random(self.config.seed * 15485863 + 5)

    # --- listenKeys -----------------------------------------------------------------------------

    def _active(self) -> ListenKey | None:
        now = self.clock.now_ms()
        for lk in self.keys.values():
            if lk.expires_ms > now:
                return lk
        return None

    def create_key(self) -> str:
        now = self.clock.now_ms()
        lk = self._active()
        if lk is None:
            key = "".join(self._rng.choice(_KEY_ALPHABET) for _ in range(64))
            lk = ListenKey(key, now, now)
            self.keys[key] = lk
        lk.expires_ms = now + self.config.listen_key_validity_ms
        return lk.key

    def keepalive(self, key: str | None) -> str:
        lk = self._active()
        if lk is None or (key is not None and key != lk.key):
            raise E.err(E.INVALID_LISTEN_KEY)
        lk.expires_ms = self.clock.now_ms() + self.config.listen_key_validity_ms
        return lk.key

    def close_key(self, key: str | None) -> None:
        lk = self._active()
        if lk is None or (key is not None and key != lk.key):
            raise E.err(E.INVALID_LISTEN_KEY)
        self.expire(lk.key)

    def valid(self, key: str) -> bool:
        lk = self.keys.get(key)
        return lk is not None and lk.expires_ms > self.clock.now_ms()

    def expire(self, key: str) -> int:
        """End ``key`` now: its sockets get ``listenKeyExpired`` and are closed."""
        self.keys.pop(key, None)
        message = json.dumps(ev.listen_key_expired(key, self.clock.now_ms()))
        closed = 0
        for conn in list(self.connections):
            if conn.listen_key != key:
                continue
            if conn.wants("listenKeyExpired"):
                conn.queue.put_nowait(message)
            conn.queue.put_nowait(_CLOSE)
            closed += 1
        return closed

    def expire_all(self) -> int:
        return sum(self.expire(key) for key in list(self.keys))

    def check(self) -> None:
        """Expire lapsed keys and close sockets past their maximum age."""
        now = self.clock.now_ms()
        for lk in list(self.keys.values()):
            if lk.expires_ms <= now:
                self.expire(lk.key)
        limit = self.config.max_connection_age_ms
        for conn in list(self.connections):
            if now - conn.connected_ms >= limit:
                conn.queue.put_nowait(_CLOSE)

    # --- sockets ----------------------------------------------------------------------------------

    def register(self, conn: Connection) -> None:
        self.connections.add(conn)

    def unregister(self, conn: Connection) -> None:
        self.connections.discard(conn)

    async def writer(self, conn: Connection) -> None:
        """Send ``conn``'s queued events in order, after the configured WS latency."""
        while True:
            item = await conn.queue.get()
            if item is _CLOSE:
                await conn.ws.close(code=1000, message=b"closed by server")
                return
            latency = self._ws_latency_ms()
            if latency > 0:
                await asyncio.sleep(latency / 1000)
            if conn.ws.closed:
                return
            try:
                await conn.ws.send_str(str(item))
            except (ConnectionError, RuntimeError):
                return
            conn.sent += 1
            self.delivered += 1

    def drop_all(self, *, abort: bool = True) -> int:
        """Cut every socket now: ``abort`` resets the TCP connection, else a close frame."""
        count = 0
        for conn in list(self.connections):
            count += 1
            transport = conn.request.transport
            if abort and transport is not None:
                transport.abort()
            else:
                conn.queue.put_nowait(_CLOSE)
        return count

    async def close_all(self) -> None:
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"server shutdown")

    # --- events -----------------------------------------------------------------------------------

    def suppress(
        self,
        *,
        count: int | None,
        client_order_id: str | None = None,
        event_types: Iterable[str] | None = None,
    ) -> SuppressRule:
        types = frozenset(event_types) if event_types else None
        rule = SuppressRule(count, client_order_id, types)
        self.rules.append(rule)
        return rule

    def clear_suppression(self) -> None:
        self.rules.clear()

    def _suppressed(self, event: dict[str, Any]) -> bool:
        for rule in self.rules:
            if rule.matches(event):
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self.rules.remove(rule)
                return True
        return False

    def publish(self, event: dict[str, Any]) -> None:
        """Send ``event`` to every socket that wants it, unless a rule suppresses it."""
        self.published += 1
        if self.rules and self._suppressed(event):
            self.suppressed += 1
            self.suppressed_log.append(event)
            return
        self.recent.append(event)
        if not self.connections:
            return
        kind = str(event.get("e"))
        text = json.dumps(event, separators=(",", ":"))
        for conn in self.connections:
            if conn.wants(kind) and self.valid(conn.listen_key):
                conn.queue.put_nowait(text)

    def send_raw(self, text: str) -> int:
        """Send ``text`` as-is (a garbled frame, say) to every open socket; returns how many."""
        count = 0
        for conn in self.connections:
            if self.valid(conn.listen_key):
                conn.queue.put_nowait(text)
                count += 1
        return count

    def dump(self) -> dict[str, Any]:
        now = self.clock.now_ms()
        return {
            "listenKeys": [
                {"listenKey": lk.key, "expiresInMs": lk.expires_ms - now}
                for lk in self.keys.values()
            ],
            "connections": [
                {
                    "listenKey": c.listen_key,
                    "events": sorted(c.events) if c.events else None,
                    "ageMs": now - c.connected_ms,
                    "sent": c.sent,
                }
                for c in self.connections
            ],
            "suppressionRules": [r.dump() for r in self.rules],
            "eventsPublished": self.published,
            "eventsDelivered": self.delivered,
            "eventsSuppressed": self.suppressed,
        }
