"""What the exchange allows this IP now, as the client knows it: the request-weight window
(``X-MBX-USED-WEIGHT-1M``, requests in flight counted), the pause after a 429 and the ban
after a 418. The client asks before every request (``refuse_while_banned``,
``refuse_while_paused`` for a trade, ``pace_wait_ms`` and ``pause_left_ms`` for a read that
may wait) and tells after every response (``note_weight``, ``note_ban``, ``pause_until``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TypeVar

from grinder.clock import Clock
from grinder.exchange.binance.errors import IpBanned, RateLimited
from grinder.exchange.port import ExchangeError

log = logging.getLogger("grinder.exchange.rest")

WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
E = TypeVar("E", bound=ExchangeError)


def not_sent(exc: E) -> E:
    """``exc`` marked as raised before its request left: the exchange never saw it."""
    exc.sent = False
    return exc


class IpLimits:
    """The IP's weight window, 429 pause and 418 ban, in local and server time."""

    def __init__(
        self,
        *,
        weight_limit: int,
        slow_down_ratio: float,
        clock: Clock,
        server_now_ms: Callable[[], int],
        on_weight: Callable[[int], None] | None = None,
    ) -> None:
        self.weight_limit = weight_limit
        self.slow_down_ratio = slow_down_ratio
        self._clock = clock
        self._server_now_ms = server_now_ms
        self.on_weight = on_weight
        self.used_weight = 0
        self._weight_minute: int | None = None
        self._header_minute: int | None = None
        """The minute of the last weight header read (``weight_known``)."""
        self.inflight_weight = 0
        """Weight of requests sent whose response (and weight header) is not in yet."""
        self.paused_until_ms = 0
        """Local time before which no request goes out: the last 429's ``Retry-After``."""
        self.banned_until_ms = 0
        """Local time before which every request fails without being sent (HTTP 418)."""

    # --- weight --------------------------------------------------------------------------

    def note_weight(self, headers: Mapping[str, str]) -> None:
        raw = headers.get(WEIGHT_HEADER)
        if raw is None:
            return
        try:
            used = int(raw)
        except ValueError:
            log.warning("bad %s header %r", WEIGHT_HEADER, raw)
            return
        self.used_weight = used
        self._weight_minute = self._header_minute = self._server_now_ms() // 60_000
        if self.on_weight is not None:
            self.on_weight(used)

    def weight_known(self) -> bool:
        """Whether a weight header of the current minute has been read (the IP's use,
        other clients on it included, is known)."""
        return self._header_minute == self._server_now_ms() // 60_000

    def over_soft_limit(self, weight: int) -> bool:
        """Whether ``weight`` more would pass the soft limit of this minute's window.

        Requests still in flight count: their weight is not in the last header yet,
        so concurrent requests cannot together pass the limit unnoticed.
        """
        minute = self._server_now_ms() // 60_000
        if self._weight_minute is not None and minute != self._weight_minute:
            self.used_weight = 0
            self._weight_minute = minute
        soft = self.weight_limit * self.slow_down_ratio
        return self.used_weight + self.inflight_weight + weight > soft

    def pace_wait_ms(self, weight: int) -> int:
        """How long a request of ``weight`` must wait for the next weight window (0: none;
        a new order costs no IP weight and never waits)."""
        if weight == 0 or not self.over_soft_limit(weight):
            return 0
        wait_ms = 60_000 - self._server_now_ms() % 60_000 + 50
        log.warning(
            "request weight %d + %d near limit %d: waiting %d ms for the next window",
            self.used_weight + self.inflight_weight,
            weight,
            self.weight_limit,
            wait_ms,
        )
        return wait_ms

    # --- 429 pause and 418 ban -----------------------------------------------------------

    def pause_until(self, until_ms: int) -> None:
        self.paused_until_ms = max(self.paused_until_ms, until_ms)

    def pause_left_ms(self) -> int:
        return max(0, self.paused_until_ms - self._clock())

    def ban_remaining_s(self) -> float:
        """Seconds left of an IP ban (HTTP 418) this client was told of; 0 when none."""
        return max(0, self.banned_until_ms - self._clock()) / 1000

    def note_ban(self, exc: IpBanned, time_offset_ms: int) -> None:
        now = self._clock()
        if exc.banned_until_ms is not None:
            until = exc.banned_until_ms - time_offset_ms  # server time → local time
        else:
            until = now + int(exc.backoff_hint_s * 1000)
        if until > self.banned_until_ms:
            self.banned_until_ms = until
            log.error(
                "IP banned by the exchange (HTTP 418) for %.0f s: no request is sent until then",
                max(0, until - now) / 1000,
            )

    def refuse_while_banned(self, method: str, path: str, time_offset_ms: int) -> None:
        remaining = self.ban_remaining_s()
        if remaining > 0:
            raise not_sent(
                IpBanned(
                    f"{method} {path}: not sent, the IP is banned for {remaining:.0f} s more "
                    "(HTTP 418 received earlier)",
                    http_status=418,
                    retry_after_s=remaining,
                    banned_until_ms=self.banned_until_ms + time_offset_ms,
                )
            )

    def refuse_while_paused(self, method: str, path: str, weight: int) -> None:
        """A trade is not held back: while a 429's pause lasts, or when it would pass the
        weight's soft limit, it fails at once instead of going out late."""
        remaining_ms = self.paused_until_ms - self._clock()
        if remaining_ms > 0:
            raise not_sent(
                RateLimited(
                    f"{method} {path}: not sent, requests are paused {remaining_ms / 1000:.1f} s "
                    "more after a 429",
                    http_status=429,
                    retry_after_s=remaining_ms / 1000,
                )
            )
        if weight and self.over_soft_limit(weight):
            raise not_sent(
                RateLimited(
                    f"{method} {path}: not sent, request weight is near the limit for this minute",
                    http_status=429,
                )
            )

    def wait_needed_s(self, weight: int = 1) -> float:
        """How long a request of ``weight`` would wait now before going out: the rest of a
        429's pause, or of this minute when it would pass the weight's soft limit (0: none).
        An IP ban is not waited out (``ban_remaining_s``)."""
        wait_ms = self.pause_left_ms()
        if weight and self.over_soft_limit(weight):
            wait_ms = max(wait_ms, 60_000 - self._server_now_ms() % 60_000)
        return wait_ms / 1000
