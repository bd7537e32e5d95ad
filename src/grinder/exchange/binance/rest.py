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
import hashlib
import hmac
import json
import logging
import os
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from grinder.clock import Clock, wall_clock_ms
from grinder.exchange.binance.errors import (
    IpBanned,
    MalformedResponse,
    RateLimited,
    error_from_response,
)
from grinder.exchange.binance.retry_policy import Pause, Raise, Resync, Retry, Step, next_step
from grinder.exchange.port import Authorize, ExchangeError, TransientExchangeError
from grinder.reconcile.config import ConfigError
from grinder.redaction import register_secret

log = logging.getLogger("grinder.exchange.rest")
E = TypeVar("E", bound=ExchangeError)

WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
DEFAULT_WEIGHT_LIMIT = 2400


@dataclass(frozen=True)
class Venue:
    name: str
    rest_url: str
    ws_url: str


VENUES: dict[str, Venue] = {
    "mainnet": Venue("mainnet", "https://fapi.binance.com", "wss://fstream.binance.com"),
    "testnet": Venue(
        "testnet", "https://testnet.binancefuture.com", "wss://fstream.binancefuture.com"
    ),
}


@dataclass(frozen=True)
class Credentials:
    """An API key and secret. ``repr`` shows neither."""

    api_key: str = field(repr=False)
    api_secret: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(api_key=…{self.api_key[-4:]})" if self.api_key else "Credentials()"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, prefix: str = "BINANCE", purpose: str = ""
    ) -> Credentials:
        """``{prefix}_API_KEY``/``{prefix}_API_SECRET`` or their ``…_FILE`` variants."""
        src = os.environ if env is None else env
        return cls(
            api_key=_secret(src, f"{prefix}_API_KEY", purpose),
            api_secret=_secret(src, f"{prefix}_API_SECRET", purpose),
        )


def _secret(env: Mapping[str, str], name: str, purpose: str) -> str:
    direct = env.get(name)
    path = env.get(f"{name}_FILE")
    why = f" ({purpose})" if purpose else ""
    if direct and path:
        raise ConfigError(f"{name} and {name}_FILE are both set; set one{why}")
    if direct:
        register_secret(direct)  # masked in every output from now on
        return direct.strip()
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {path} ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{name}_FILE: {path} is not UTF-8 text") from None
        if not value:
            raise ConfigError(f"{name}_FILE: {path} is empty")
        register_secret(value)
        return value
    raise ConfigError(f"{name} (or {name}_FILE) is not set{why}")


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


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
        self.on_weight = on_weight
        self.on_spend = on_spend
        self.weight_spent = 0
        """Request weight of every request sent (by the endpoint's documented weight)."""
        self.time_offset_ms = 0
        self.used_weight = 0
        self._weight_minute: int | None = None
        self._header_minute: int | None = None
        """The minute of the last weight header read (``weight_known``)."""
        self._inflight_weight = 0
        """Weight of requests sent whose response (and weight header) is not in yet."""
        self.requests_sent = 0
        self._paused_until_ms = 0
        """Local time before which no request goes out: the last 429's ``Retry-After``."""
        self._banned_until_ms = 0
        """Local time before which every request fails without being sent (HTTP 418)."""

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

    # --- weight --------------------------------------------------------------------------

    def _note_weight(self, headers: Mapping[str, str]) -> None:
        raw = headers.get(WEIGHT_HEADER)
        if raw is None:
            return
        try:
            used = int(raw)
        except ValueError:
            log.warning("bad %s header %r", WEIGHT_HEADER, raw)
            return
        self.used_weight = used
        self._weight_minute = self._header_minute = self.server_now_ms() // 60_000
        if self.on_weight is not None:
            self.on_weight(used)

    def weight_known(self) -> bool:
        """Whether a weight header of the current minute has been read (the IP's use,
        other clients on it included, is known)."""
        return self._header_minute == self.server_now_ms() // 60_000

    def _over_soft_limit(self, weight: int) -> bool:
        """Whether ``weight`` more would pass the soft limit of this minute's window.

        Requests still in flight count: their weight is not in the last header yet,
        so concurrent requests cannot together pass the limit unnoticed.
        """
        minute = self.server_now_ms() // 60_000
        if self._weight_minute is not None and minute != self._weight_minute:
            self.used_weight = 0
            self._weight_minute = minute
        soft = self.settings.weight_limit * self.settings.slow_down_ratio
        return self.used_weight + self._inflight_weight + weight > soft

    async def _pace(self, weight: int) -> None:
        """Wait for the next minute window if this request would pass the soft limit."""
        if weight == 0 or not self._over_soft_limit(weight):
            return  # (a new order costs no IP weight: it never waits here)
        wait_ms = 60_000 - self.server_now_ms() % 60_000 + 50
        log.warning(
            "request weight %d + %d near limit %d: waiting %d ms for the next window",
            self.used_weight + self._inflight_weight,
            weight,
            self.settings.weight_limit,
            wait_ms,
        )
        await self._sleep(wait_ms / 1000, "for the next weight window")
        self.used_weight = 0

    # --- 429 pause and 418 ban -----------------------------------------------------------

    def ban_remaining_s(self) -> float:
        """Seconds left of an IP ban (HTTP 418) this client was told of; 0 when none."""
        return max(0, self._banned_until_ms - self._clock()) / 1000

    def _note_ban(self, exc: IpBanned) -> None:
        now = self._clock()
        if exc.banned_until_ms is not None:
            until = exc.banned_until_ms - self.time_offset_ms  # server time → local time
        else:
            until = now + int(exc.backoff_hint_s * 1000)
        if until > self._banned_until_ms:
            self._banned_until_ms = until
            log.error(
                "IP banned by the exchange (HTTP 418) for %.0f s: no request is sent until then",
                max(0, until - now) / 1000,
            )

    def _refuse_while_banned(self, method: str, path: str) -> None:
        remaining = self.ban_remaining_s()
        if remaining > 0:
            raise not_sent(
                IpBanned(
                    f"{method} {path}: not sent, the IP is banned for {remaining:.0f} s more "
                    "(HTTP 418 received earlier)",
                    http_status=418,
                    retry_after_s=remaining,
                    banned_until_ms=self._banned_until_ms + self.time_offset_ms,
                )
            )

    def _refuse_while_paused(self, method: str, path: str, weight: int) -> None:
        """A trade is not held back: while a 429's pause lasts, or when it would pass the
        weight's soft limit, it fails at once instead of going out late."""
        remaining_ms = self._paused_until_ms - self._clock()
        if remaining_ms > 0:
            raise not_sent(
                RateLimited(
                    f"{method} {path}: not sent, requests are paused {remaining_ms / 1000:.1f} s "
                    "more after a 429",
                    http_status=429,
                    retry_after_s=remaining_ms / 1000,
                )
            )
        if weight and self._over_soft_limit(weight):
            raise not_sent(
                RateLimited(
                    f"{method} {path}: not sent, request weight is near the limit for this minute",
                    http_status=429,
                )
            )

    async def _wait_out_pause(self) -> None:
        """Every request waits out the last 429's ``Retry-After``, not only the one refused."""
        wait_ms = self._paused_until_ms - self._clock()
        if wait_ms > 0:
            await self._sleep(wait_ms / 1000, "after a 429 (Retry-After)")

    def wait_needed_s(self, weight: int = 1) -> float:
        """How long a request of ``weight`` would wait now before going out: the rest of a
        429's pause, or of this minute when it would pass the weight's soft limit (0: none).
        An IP ban is not waited out (``ban_remaining_s``)."""
        wait_ms = max(0, self._paused_until_ms - self._clock())
        if weight and self._over_soft_limit(weight):
            wait_ms = max(wait_ms, 60_000 - self.server_now_ms() % 60_000)
        return wait_ms / 1000

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
        self._refuse_while_banned(method, path)
        if trade:
            self._refuse_while_paused(method, path, weight)
        else:
            await self._wait_out_pause()  # the 429 that refused this or another request
            self._refuse_while_banned(method, path)
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
                self._paused_until_ms = max(self._paused_until_ms, self._clock() + int(wait * 1000))
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
                    self._note_ban(error)
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
        if signed:
            assert self.credentials is not None
            query_items.append(("recvWindow", window))
            query_items.append(("timestamp", self.server_now_ms()))
        query = urlencode(query_items)
        if signed:
            assert self.credentials is not None
            signature = sign(self.credentials.api_secret, query)
            query = f"{query}&signature={signature}"
        url = URL(f"{self.base_url}{path}" + (f"?{query}" if query else ""), encoded=True)
        self.weight_spent += weight  # counted here: a withheld write spends nothing
        if self.on_spend is not None:
            self.on_spend(weight)
        self.requests_sent += 1
        self._inflight_weight += weight
        try:
            async with self.session.request(method, url, headers=headers) as resp:
                self._note_weight(resp.headers)
                text = await resp.text()
                status = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except TimeoutError:
            raise TransientExchangeError(f"{method} {path}: timed out") from None
        except aiohttp.ClientError as exc:
            raise TransientExchangeError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        finally:
            self._inflight_weight -= weight
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


def not_sent(exc: E) -> E:
    """``exc`` marked as raised before its request left: the exchange never saw it."""
    exc.sent = False
    return exc


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
