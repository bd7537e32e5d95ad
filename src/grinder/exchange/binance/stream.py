"""The user-data stream: listenKey lifecycle, WebSocket consumer, reconnect, resync.

Each connection: create (or reuse) a listenKey, connect to
``{ws_base}/private/ws?listenKey=…&events=…`` (the private path Binance moved
user data to in 2026), then run ``on_resync`` — a REST snapshot — while
buffering the events that arrive meanwhile; only after the snapshot is in are
the buffered and later events delivered (``LIVE``). Events that arrive during
the snapshot are newer than its request and win over it in the observed store.

The listenKey is (re)created before every connection (Binance returns the
active key, extended, or a new one) and kept alive every ``keepalive_s``;
``listenKeyExpired`` or a keepalive answered ``-1125`` ends the connection; a
connection is recycled before Binance's 24-hour limit; every drop reconnects
with capped, jittered backoff. A garbled message is counted and logged, never
fatal.

``stop(timeout_s)`` ends ``run`` within that time whatever it is doing
(connecting, snapshotting, waiting to reconnect). Closing the listenKey on the
way out is best effort: skipped when the REST client would first have to wait
for a rate limit (a 429's pause, the weight window, a ban), and given at most
``LISTEN_KEY_CLOSE_TIMEOUT_S`` otherwise -- a key left open expires by itself
60 minutes after its last keepalive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from urllib.parse import urlencode

import aiohttp

from grinder.clock import Clock, wall_clock_ms
from grinder.exchange.binance.errors import ListenKeyInvalid
from grinder.exchange.binance.parsing import (
    ListenKeyExpired,
    UserEvent,
    WireFormatError,
    parse_user_event,
)
from grinder.exchange.binance.rest import BinanceRestClient
from grinder.exchange.binance.stream_windows import ReconnectWindows
from grinder.exchange.port import ExchangeError

log = logging.getLogger("grinder.exchange.stream")

DEFAULT_EVENTS = ("ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE", "ALGO_UPDATE", "listenKeyExpired")
LISTEN_KEY_PATH = "/fapi/v1/listenKey"
STOP_TIMEOUT_S = 2.0
"""``stop``'s default bound: ``run`` has ended within it."""
LISTEN_KEY_CLOSE_TIMEOUT_S = 1.0
"""At most this long for the listenKey close on the way out (less when ``stop`` has less)."""
STOP_MARGIN_S = 0.05
"""Of ``stop``'s time, what ``run`` keeps to return in after its last step."""
WS_CLOSE_TIMEOUT_S = 2.0
"""At most this long for a socket's closing handshake (aiohttp's own default is 10 s)."""


class StreamState(IntEnum):
    """Exported as the ``grinder_stream_state`` gauge value."""

    DISCONNECTED = 0
    CONNECTING = 1
    RESYNCING = 2
    LIVE = 3


@dataclass
class StreamSettings:
    events: Sequence[str] = DEFAULT_EVENTS
    keepalive_s: float = 30 * 60
    max_connection_s: float = 23.5 * 3600
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    heartbeat_s: float = 30.0


@dataclass
class StreamStats:
    connections: int = 0
    reconnects: int = 0
    events: dict[str, int] = field(default_factory=dict)
    parse_errors: int = 0
    listen_keys_created: int = 0
    resyncs: int = 0


class UserDataStream:
    """Consumes the user-data stream and hands parsed events to ``on_event``."""

    def __init__(
        self,
        rest: BinanceRestClient,
        ws_base_url: str,
        *,
        on_event: Callable[[UserEvent], None],
        on_resync: Callable[[], Coroutine[object, object, None]],
        settings: StreamSettings | None = None,
        on_state: Callable[[StreamState], None] | None = None,
        on_parse_error: Callable[[WireFormatError], None] | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        windows: ReconnectWindows | None = None,
    ) -> None:
        """``windows``: where the reconnect windows are kept (a part given to their readers
        before the stream exists; a new one when not given)."""
        self.rest = rest
        self.ws_base_url = ws_base_url.rstrip("/")
        self.on_event = on_event
        self.on_resync = on_resync
        self.settings = settings or StreamSettings()
        self.on_state = on_state
        self.on_parse_error = on_parse_error
        self._clock = clock or wall_clock_ms
        self._rng = rng or random.Random()
        self.stats = StreamStats()
        self.state = StreamState.DISCONNECTED
        self.windows = windows if windows is not None else ReconnectWindows()
        """When the stream was not live after it first was (its reconnect windows)."""
        self.listen_key: str | None = None
        self._stopping = asyncio.Event()
        self._stop_by: float | None = None
        """Loop time by which ``run`` must have ended (set by ``stop``)."""
        self._running = False
        self._ended = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._live_event = asyncio.Event()

    # --- control -------------------------------------------------------------------------

    def _set_state(self, state: StreamState) -> None:
        if state is not self.state:
            log.info("STREAM_STATE state=%s", state.name)
            if state is StreamState.LIVE:
                self.windows.went_live(self._clock())
            elif self.state is StreamState.LIVE:
                self.windows.left_live(self._clock())
        self.state = state
        if state is StreamState.LIVE:
            self._live_event.set()
        else:
            self._live_event.clear()
        if self.on_state is not None:
            self.on_state(state)

    async def wait_live(self, timeout_s: float | None = None) -> bool:
        """Wait until the stream is LIVE (snapshot in, events flowing)."""
        try:
            await asyncio.wait_for(self._live_event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop consuming, close the socket and (best effort) the listenKey; returns once
        ``run`` has ended, or after ``timeout_s`` at most."""
        timeout_s = max(0.0, timeout_s)
        # The steps of run's end (socket, listenKey) keep a moment for run to return in.
        self._stop_by = asyncio.get_running_loop().time() + max(0.0, timeout_s - STOP_MARGIN_S)
        self._stopping.set()
        if self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), timeout_s)

    def _time_left(self, cap: float) -> float:
        """``cap``, or less when ``stop`` leaves less."""
        if self._stop_by is None:
            return cap
        return max(0.0, min(cap, self._stop_by - asyncio.get_running_loop().time()))

    async def run(self) -> None:
        """Connect, consume and reconnect until ``stop``."""
        failures = 0
        self._running = True
        self._ended.clear()
        try:
            while not self._stopping.is_set():
                went_live = False
                try:
                    went_live = await self._connect_or_stop()
                except Exception as exc:  # any failure means: reconnect, never die
                    log.warning("STREAM_ERROR error=%s", _one_line(exc))
                self._set_state(StreamState.DISCONNECTED)
                if self._stopping.is_set():
                    break
                failures = 0 if went_live else failures + 1
                self.stats.reconnects += 1
                # Under an IP ban (HTTP 418) nothing is sent before it ends anyway.
                delay = max(self._backoff(failures), self.rest.ban_remaining_s())
                log.info("STREAM_RECONNECT in_s=%.2f failures=%d", delay, failures)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            try:
                self._set_state(StreamState.DISCONNECTED)
                await self._close_listen_key()
            finally:
                self._running = False
                self._ended.set()

    async def _connect_or_stop(self) -> bool:
        """One connection (``_connect_once``), cancelled as soon as ``stop`` is called."""
        connection = asyncio.ensure_future(self._connect_once())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({connection, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not connection.done():
                connection.cancel()
                await asyncio.wait({connection})  # its clean-up is bounded
        if connection.cancelled():
            return False
        return connection.result()

    def _backoff(self, failures: int) -> float:
        if failures == 0:
            return self._rng.uniform(0, self.settings.backoff_base_s)
        cap = min(self.settings.backoff_cap_s, self.settings.backoff_base_s * 2**failures)
        return self._rng.uniform(cap / 2, cap)

    # --- listenKey -----------------------------------------------------------------------

    async def _create_listen_key(self) -> str:
        body = await self.rest.request("POST", LISTEN_KEY_PATH, api_key=True, weight=1)
        key = body.get("listenKey") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            raise ExchangeError("POST /fapi/v1/listenKey: response has no listenKey")
        self.stats.listen_keys_created += 1
        return key

    async def _keepalive_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await asyncio.sleep(self.settings.keepalive_s)
            try:
                await self.rest.request("PUT", LISTEN_KEY_PATH, api_key=True, weight=1)
            except ListenKeyInvalid:
                log.warning("STREAM_LISTEN_KEY_INVALID: keepalive refused; reconnecting")
                self.listen_key = None
                await ws.close()
                return
            except ExchangeError as exc:
                log.warning("STREAM_KEEPALIVE_FAILED error=%s", _one_line(exc))

    async def _close_listen_key(self) -> None:
        """Best effort, never waiting for a rate limit; logs why when the key is left open."""
        if self.listen_key is None:
            return
        self.listen_key = None
        rest = self.rest
        if rest.ban_remaining_s() > 0 or rest.wait_needed_s(1) > 0:
            log.info("STREAM_LISTEN_KEY_NOT_CLOSED reason=rate_limited")
            return
        try:
            await asyncio.wait_for(
                rest.request("DELETE", LISTEN_KEY_PATH, api_key=True, weight=1),
                self._time_left(LISTEN_KEY_CLOSE_TIMEOUT_S),
            )
        except TimeoutError:
            log.info("STREAM_LISTEN_KEY_NOT_CLOSED reason=timeout")
        except (ExchangeError, aiohttp.ClientError, OSError) as exc:
            log.info("STREAM_LISTEN_KEY_NOT_CLOSED reason=error error=%s", _one_line(exc))

    # --- one connection ------------------------------------------------------------------

    def _url(self, key: str) -> str:
        query = urlencode({"listenKey": key, "events": "/".join(self.settings.events)}, safe="/")
        return f"{self.ws_base_url}/private/ws?{query}"

    async def _connect_once(self) -> bool:
        """One connection's life; returns whether it reached LIVE."""
        self._set_state(StreamState.CONNECTING)
        # POST returns the active key (extended) or a new one: calling it before every
        # connection recovers from an expired key even when its expiry event was lost.
        self.listen_key = await self._create_listen_key()
        ws = await self.rest.session.ws_connect(
            self._url(self.listen_key), heartbeat=self.settings.heartbeat_s
        )
        self._ws = ws
        self.stats.connections += 1
        connection = _Connection(ws, self.on_event, self.stats)
        reader = asyncio.create_task(self._read(connection))
        keepalive = asyncio.create_task(self._keepalive_loop(ws))
        recycle = asyncio.get_running_loop().call_later(
            self.settings.max_connection_s, lambda: asyncio.ensure_future(ws.close())
        )
        resync: asyncio.Task[None] | None = None
        try:
            self._set_state(StreamState.RESYNCING)
            resync = asyncio.create_task(self.on_resync())
            if not await self._snapshot_before_reader_ends(resync, reader):
                return False
            self.stats.resyncs += 1
            connection.go_live()
            self._set_state(StreamState.LIVE)
            await reader
            return True
        finally:
            recycle.cancel()
            tasks = [keepalive, reader] + ([resync] if resync is not None else [])
            await self._close_connection(connection, tasks)

    async def _snapshot_before_reader_ends(
        self, resync: asyncio.Task[None], reader: asyncio.Task[None]
    ) -> bool:
        """Whether the snapshot came in while the socket was still read; when the reader
        ended first, the snapshot is cancelled (False). A failed snapshot raises: the
        connection is not trusted."""
        done, _ = await asyncio.wait({resync, reader}, return_when=asyncio.FIRST_COMPLETED)
        if resync not in done:
            resync.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await resync
            return False
        resync.result()
        return True

    async def _read(self, connection: _Connection) -> None:
        """Hand each message's event to ``connection`` until the socket closes or fails, or
        the listenKey expires (the socket is closed then: a reconnect with a new key)."""
        ws = connection.ws
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT or msg.type is aiohttp.WSMsgType.BINARY:
                event = self._parse_or_count(msg.data)
                if event is None:
                    continue
                if isinstance(event, ListenKeyExpired):
                    log.warning("STREAM_LISTEN_KEY_EXPIRED: reconnecting with a new key")
                    connection.listen_key_expired = True
                    self.listen_key = None
                    connection.deliver(event)
                    await ws.close()
                    return
                connection.deliver(event)
            elif msg.type is aiohttp.WSMsgType.ERROR:
                log.warning("STREAM_SOCKET_ERROR error=%s", _one_line(ws.exception()))
                return

    def _parse_or_count(self, data: object) -> UserEvent | None:
        """The message's event; ``None`` for a garbled one (counted, logged, reported)."""
        try:
            return parse_user_event(data, seen_ts_ms=self._clock())
        except WireFormatError as exc:
            self.stats.parse_errors += 1
            log.warning("STREAM_PARSE_ERROR error=%s", _one_line(exc))
            if self.on_parse_error is not None:
                self.on_parse_error(exc)
            return None

    async def _close_connection(
        self, connection: _Connection, tasks: list[asyncio.Task[None]]
    ) -> None:
        """End the connection's tasks and close its socket (within what ``stop`` leaves)."""
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled():
                task.exception()  # retrieved: a failure was handled or logged above
        ws = connection.ws
        if not ws.closed:
            with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
                await asyncio.wait_for(ws.close(), self._time_left(WS_CLOSE_TIMEOUT_S))
        self._ws = None
        if connection.listen_key_expired:
            log.info("STREAM_CLOSED reason=listen_key_expired")


@dataclass(slots=True)
class _Connection:
    """One connection: its socket, and its events on their way to ``on_event`` -- counted
    as they arrive, held until the connection's snapshot is in (``go_live`` hands them over
    in order), then handed over as they come."""

    ws: aiohttp.ClientWebSocketResponse
    on_event: Callable[[UserEvent], None]
    stats: StreamStats
    held: list[UserEvent] = field(default_factory=list)
    live: bool = False
    listen_key_expired: bool = False
    """Set when ``listenKeyExpired`` ended the connection."""

    def deliver(self, event: UserEvent) -> None:
        events = self.stats.events
        events[event.event_type] = events.get(event.event_type, 0) + 1
        if self.live:
            self.on_event(event)
        else:
            self.held.append(event)

    def go_live(self) -> None:
        """The snapshot is in: the held events, then every later one, go to ``on_event``."""
        for event in self.held:
            self.on_event(event)
        self.held.clear()
        self.live = True


def _one_line(exc: BaseException | None) -> str:
    text = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown"
    return " ".join(text.split())
