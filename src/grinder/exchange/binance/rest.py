"""Async REST client for Binance USDⓈ-M futures.

One ``aiohttp`` connection pool, a timeout on every call, HMAC-SHA256 signed
requests (``timestamp`` and ``recvWindow`` in the signed query), a server-time
offset kept in sync (and re-synced on ``-1021``), request weight read from
``X-MBX-USED-WEIGHT-1M`` with a slow-down before the limit, ``429``/``418``
honouring ``Retry-After`` for every request of the client (after a 429 none goes
out before the pause ends; after a 418 none is sent until the ban ends), and
capped, jittered retries of transient failures for reads (what follows a failure
is decided by ``retry_policy.next_step``; the client carries it out). An order write
(``trade=True``) is sent at most once per call: whether to send it again is the
remediation executor's decision, made where the lease and the gates are checked.
Its ``authorize`` callable runs synchronously right before the request leaves and
bounds the request's ``recvWindow``, so the exchange refuses it if it arrives later
than authorized. Secrets never reach a log or an error: the key and secret read from
the environment are registered with ``grinder.redaction`` and masked wherever they
appear.

Every wait of the client (a 429's pause, the weight window, a retry's backoff)
ends at ``begin_close`` (the service's stop), and none begins after it: the
request fails at once with ``ClientClosing`` instead, unsent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from grinder.clock import Clock, wall_clock_ms
from grinder.exchange.binance.credentials import Credentials, sign
from grinder.exchange.binance.errors import (
    IpBanned,
    MalformedResponse,
    error_from_response,
)
from grinder.exchange.binance.ip_limits import IpLimits, not_sent
from grinder.exchange.binance.retry_policy import Pause, Raise, Resync, Retry, Step, next_step
from grinder.exchange.port import Authorize, ExchangeError, TransientExchangeError

log = logging.getLogger("grinder.exchange.rest")

DEFAULT_WEIGHT_LIMIT = 2400
"""Binance's request-weight limit of one IP per minute (every client on that IP counts)."""


class ClientClosing(ExchangeError):
    """Not sent: the client is closing, and the request would first have had to wait
    (a 429's pause, the weight window, a read's retry backoff). An order write never
    waits in the client (D43) and is never repeated by it (D44), so this is never the
    fate of a write that was already sent once."""

    sent = False


@dataclass
class RestSettings:
    recv_window_ms: int = 5000
    timeout_s: float = 10.0
    max_retries: int = 3
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 5.0
    weight_limit: int = DEFAULT_WEIGHT_LIMIT
    slow_down_ratio: float = 0.9
    max_retry_after_s: float = 60.0


Params = Sequence[tuple[str, str | int]] | Mapping[str, str | int] | None


class BinanceRestClient:
    """Talks to one Binance USDⓈ-M REST base URL (or the simulator)."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        settings: RestSettings | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        on_weight: Callable[[int], None] | None = None,
        on_spend: Callable[[int], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.settings = settings or RestSettings()
        self._session = session
        self._own_session = session is None
        self._clock = clock or wall_clock_ms
        self._raw_sleep = sleep
        self._closing = False
        self._waits: set[asyncio.Future[None]] = set()
        """One future per wait under way: ``begin_close`` ends them all."""
        self._rng = rng or random.Random()
        self.on_spend = on_spend
        self.weight_spent = 0
        """Request weight of every request sent (by the endpoint's documented weight)."""
        self.time_offset_ms = 0
        self.requests_sent = 0
        self.limits = IpLimits(
            weight_limit=self.settings.weight_limit,
            slow_down_ratio=self.settings.slow_down_ratio,
            clock=self._clock,
            server_now_ms=self.server_now_ms,
            on_weight=on_weight,
        )

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> BinanceRestClient:
        self._ensure_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            connector = aiohttp.TCPConnector(limit=32, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
            self._own_session = True
        never_resend(self._session)
        return self._session

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._ensure_session()

    def begin_close(self) -> None:
        """From now on no request waits: the waits under way end, and a request that would
        have to wait (a 429's pause, the weight window, a retry's backoff) fails at once
        with ``ClientClosing``. Requests that need no wait still go out (a listenKey close)."""
        self._closing = True
        for woken in list(self._waits):
            _wake(woken)

    async def close(self) -> None:
        self.begin_close()
        if self._session is not None and self._own_session and not self._session.closed:
            await self._session.close()

    async def _sleep(self, seconds: float, why: str = "before a retry") -> None:
        """Every wait of the client, cut short by ``begin_close`` (``ClientClosing``)."""
        if not self._closing:
            woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            sleeping = asyncio.ensure_future(self._raw_sleep(seconds))
            sleeping.add_done_callback(lambda _done: _wake(woken))
            self._waits.add(woken)
            try:
                await woken
            finally:
                self._waits.discard(woken)
                sleeping.cancel()
            if sleeping.done() and not sleeping.cancelled():
                sleeping.result()  # the sleep's own error, if any
            if not self._closing:
                return
        raise ClientClosing(
            f"not sent: the client is closing (it would wait {seconds:.1f} s {why})"
        )

    # --- time ----------------------------------------------------------------------------

    def server_now_ms(self) -> int:
        return self._clock() + self.time_offset_ms

    async def sync_time(self) -> int:
        """Measure the server-time offset (half the round trip corrects for latency)."""
        sent = self._clock()
        body = await self.request("GET", "/fapi/v1/time", weight=1)
        received = self._clock()
        raw = body.get("serverTime") if isinstance(body, dict) else None
        if not isinstance(raw, int) or isinstance(raw, bool) or raw <= 0:
            raise MalformedResponse(
                f"GET /fapi/v1/time: response cannot be read: serverTime is {raw!r}"
            )
        server = raw
        self.time_offset_ms = server - (sent + received) // 2
        return self.time_offset_ms

    # --- what the IP may send (``IpLimits``) --------------------------------------------

    @property
    def used_weight(self) -> int:
        """The IP's request weight of this minute, from the last header read."""
        return self.limits.used_weight

    def weight_known(self) -> bool:
        return self.limits.weight_known()

    def ban_remaining_s(self) -> float:
        return self.limits.ban_remaining_s()

    def wait_needed_s(self, weight: int = 1) -> float:
        return self.limits.wait_needed_s(weight)

    async def _pace(self, weight: int) -> None:
        """Wait for the next minute window if this request would pass the soft limit."""
        wait_ms = self.limits.pace_wait_ms(weight)
        if wait_ms:
            await self._sleep(wait_ms / 1000, "for the next weight window")
            self.limits.used_weight = 0

    async def _wait_out_pause(self) -> None:
        """Every request waits out the last 429's ``Retry-After``, not only the one refused."""
        wait_ms = self.limits.pause_left_ms()
        if wait_ms > 0:
            await self._sleep(wait_ms / 1000, "after a 429 (Retry-After)")

    # --- requests ------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        params: Params = None,
        *,
        signed: bool = False,
        api_key: bool = False,
        weight: int = 1,
        idempotent: bool | None = None,
        trade: bool = False,
        authorize: Authorize | None = None,
    ) -> Any:
        """Send one request, with retries where safe, and return the decoded JSON.

        ``idempotent`` defaults to True for GET and DELETE: those are retried
        after a timeout or a 5xx. A POST that timed out may have been executed,
        so it is not repeated blindly; the caller re-reads state instead.

        ``trade`` marks an order write (a cancel, a new order): it never waits here
        for a 429's pause or the weight window, and is sent at most once -- any
        failure is raised at once (a ``-1021`` after re-syncing the clock), so that
        whatever goes out was decided just before, by a caller that checks the lease
        and the gates again before it sends anything else. ``authorize`` (writes) is
        called right before the request leaves; see ``grinder.exchange.port``.
        """
        retry_ok = idempotent if idempotent is not None else method in ("GET", "DELETE")
        if trade:
            retry_ok = False
        items = list(params.items()) if isinstance(params, Mapping) else list(params or ())
        attempt = 0
        resynced = False
        while True:
            attempt += 1
            await self._clear_to_send(method, path, weight, trade=trade)
            try:
                return await self._send(
                    method,
                    path,
                    items,
                    signed=signed,
                    api_key=api_key,
                    weight=weight,
                    authorize=authorize,
                )
            except TransientExchangeError as exc:
                step = next_step(
                    exc,
                    attempt,
                    trade=trade,
                    retry_ok=retry_ok,
                    signed=signed,
                    resynced=resynced,
                    settings=self.settings,
                )
                resynced = resynced or isinstance(step, Resync)
                await self._take(step, exc, method, path, attempt)

    async def _clear_to_send(self, method: str, path: str, weight: int, *, trade: bool) -> None:
        """Refuse the request during a ban; a trade also while paused or near the weight
        limit, anything else waits out the pause and the weight window instead."""
        limits = self.limits
        limits.refuse_while_banned(method, path, self.time_offset_ms)
        if trade:
            limits.refuse_while_paused(method, path, weight)
        else:
            await self._wait_out_pause()  # the 429 that refused this or another request
            limits.refuse_while_banned(method, path, self.time_offset_ms)
            await self._pace(weight)

    async def _take(
        self, step: Step, exc: TransientExchangeError, method: str, path: str, attempt: int
    ) -> None:
        """Carry out what the retry policy decided after ``exc``: return to send the
        request again, or raise."""
        match step:
            case Resync(then_raise=then_raise):
                await self.sync_time()
                if then_raise:
                    raise exc  # the clock is right again; sending again is the caller's decision
            case Pause(wait_s=wait, then_raise=then_raise):
                self.limits.pause_until(self._clock() + int(wait * 1000))
                if then_raise:
                    raise exc
                log.warning("429 on %s %s: waiting %.1f s (Retry-After)", method, path, wait)
            case Retry(backoff_s=cap):
                delay = self._rng.uniform(cap / 2, cap)
                log.warning(
                    "%s %s failed (%s): retry %d in %.2f s", method, path, exc, attempt, delay
                )
                await self._sleep(delay)
            case Raise(error=error):
                if isinstance(error, IpBanned):
                    self.limits.note_ban(error, self.time_offset_ms)
                if error is exc:
                    raise exc
                raise error from None

    async def _send(
        self,
        method: str,
        path: str,
        items: list[tuple[str, str | int]],
        *,
        signed: bool,
        api_key: bool,
        weight: int,
        authorize: Authorize | None = None,
    ) -> Any:
        """One request; its ``weight`` counts as in flight until the response is in.

        ``authorize`` runs here, with no wait between it and the request leaving; the
        window it grants bounds ``recvWindow`` (``WriteWithheld`` passes through).
        """
        url, headers = self._prepare(method, path, items, signed, api_key, authorize)
        self.weight_spent += weight  # counted here: a withheld write spends nothing
        if self.on_spend is not None:
            self.on_spend(weight)
        self.requests_sent += 1
        self.limits.inflight_weight += weight
        try:
            async with self.session.request(method, url, headers=headers) as resp:
                self.limits.note_weight(resp.headers)
                text = await resp.text()
                status = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except TimeoutError:
            raise TransientExchangeError(f"{method} {path}: timed out") from None
        except aiohttp.ClientError as exc:
            raise TransientExchangeError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        finally:
            self.limits.inflight_weight -= weight
        return _decode(method, path, status, text, retry_after)

    def _prepare(
        self,
        method: str,
        path: str,
        items: list[tuple[str, str | int]],
        signed: bool,
        api_key: bool,
        authorize: Authorize | None,
    ) -> tuple[URL, dict[str, str]]:
        """The request's URL (signed: ``recvWindow``, ``timestamp``, ``signature``) and
        headers; ``authorize`` is called last before the time is stamped."""
        headers: dict[str, str] = {}
        query_items = list(items)
        if signed or api_key:
            if self.credentials is None:
                raise not_sent(ExchangeError(f"{method} {path} needs API credentials"))
            headers["X-MBX-APIKEY"] = self.credentials.api_key
        window = self.settings.recv_window_ms
        if authorize is not None:
            if not signed:
                raise not_sent(
                    ExchangeError(f"{method} {path}: an authorized write must be signed")
                )
            window = max(1, min(window, authorize()))
        query = urlencode(query_items)
        if signed:
            assert self.credentials is not None
            query_items += [("recvWindow", window), ("timestamp", self.server_now_ms())]
            query = urlencode(query_items)
            query = f"{query}&signature={sign(self.credentials.api_secret, query)}"
        return URL(f"{self.base_url}{path}" + (f"?{query}" if query else ""), encoded=True), headers


def _decode(method: str, path: str, status: int, text: str, retry_after: float | None) -> Any:
    """A response's JSON, or the exchange error it reports."""
    body: Any = None
    if text:
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            if status < 400:
                raise ExchangeError(
                    f"{method} {path}: response is not JSON ({text[:80]!r})",
                    http_status=status,
                ) from None
    if status >= 400 or (isinstance(body, dict) and _is_error_body(body)):
        raise error_from_response(status, body, retry_after)
    return body


def never_resend(session: aiohttp.ClientSession) -> None:
    """Stop ``session`` from sending a request again by itself.

    aiohttp repeats a GET, PUT or DELETE once when the server drops the connection
    before answering (RFC 9112 §9.3.1). For a cancel that is a second request nobody
    authorized, outside the executor's attempt bound: every request of this client
    goes out once per call, and only ``request`` (reads) or the executor (writes)
    decides to send another. The switch is aiohttp's own (a ``ClientSession`` slot
    since 3.10); ``tests/integration/test_write_fence_sim.py`` fails if it stops working.
    """
    session._retry_connection = False


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


def _is_error_body(body: dict[str, Any]) -> bool:
    code = body.get("code")
    return isinstance(code, int) and code < 0 and "msg" in body


def _retry_after(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None
