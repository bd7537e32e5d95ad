"""Request weight per IP per minute, 429 / 418, and the account's order counters.

Weights are Binance's (``openOrders`` 1 with a symbol, 40 without;
``v3/positionRisk`` 5; ``POST /fapi/v1/order`` 0; ...). The used weight of the
current minute is reported in ``X-MBX-USED-WEIGHT-1M`` on every response. A
request that takes an IP past the limit gets HTTP 429 (-1003) with
``Retry-After`` (seconds to the next minute); an IP that keeps sending after
``rejections_before_ban`` 429s in a window is banned with HTTP 418 for
``ban_seconds`` (doubling for repeat offenders, up to three days).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grinder.exchange.simulator import errors as E
from grinder.exchange.simulator.clock import Clock
from grinder.exchange.simulator.config import SimConfig
from grinder.exchange.simulator.params import Params

MINUTE_MS = 60_000
MAX_BAN_MS = 3 * 24 * 60 * 60 * 1000
WeightRule = int | Callable[[Params], int]


def _by_symbol(with_symbol: int, without: int) -> Callable[[Params], int]:
    def rule(params: Params) -> int:
        return with_symbol if params.sent("symbol") else without

    return rule


def _depth(params: Params) -> int:
    """5-50 levels: 2; 100: 5; 500 (the default): 10; 1000: 20."""
    limit = _limit(params, 500)
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


def _klines(params: Params) -> int:
    """Under 100 rows: 1; under 500: 2; 500 (the default) to 1000: 5; more: 10."""
    limit = _limit(params, 500)
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def _limit(params: Params, default: int) -> int:
    value = params.raw("limit")
    return int(value) if value is not None and value.isdigit() else default


WEIGHTS: dict[tuple[str, str], WeightRule] = {
    ("GET", "/fapi/v1/ping"): 1,
    ("GET", "/fapi/v1/time"): 1,
    ("GET", "/fapi/v1/exchangeInfo"): 1,
    ("GET", "/fapi/v1/premiumIndex"): _by_symbol(1, 10),
    ("GET", "/fapi/v1/ticker/price"): _by_symbol(1, 2),
    ("GET", "/fapi/v1/positionSide/dual"): 30,
    ("POST", "/fapi/v1/positionSide/dual"): 1,
    ("GET", "/fapi/v1/openOrders"): _by_symbol(1, 40),
    ("GET", "/fapi/v1/openOrder"): 1,
    ("GET", "/fapi/v1/order"): 1,
    ("POST", "/fapi/v1/order"): 0,
    ("DELETE", "/fapi/v1/order"): 1,
    ("DELETE", "/fapi/v1/allOpenOrders"): 1,
    ("GET", "/fapi/v3/positionRisk"): 5,
    ("GET", "/fapi/v2/positionRisk"): 5,
    ("GET", "/fapi/v2/account"): 5,
    ("GET", "/fapi/v3/account"): 5,
    ("POST", "/fapi/v1/listenKey"): 1,
    ("PUT", "/fapi/v1/listenKey"): 1,
    ("DELETE", "/fapi/v1/listenKey"): 1,
    ("POST", "/fapi/v1/algoOrder"): 0,
    ("DELETE", "/fapi/v1/algoOrder"): 1,
    ("GET", "/fapi/v1/algoOrder"): 1,
    ("GET", "/fapi/v1/openAlgoOrders"): _by_symbol(1, 40),
    ("DELETE", "/fapi/v1/algoOpenOrders"): 1,
    ("GET", "/fapi/v1/allAlgoOrders"): 5,
    # market data
    ("GET", "/fapi/v1/depth"): _depth,
    ("GET", "/fapi/v1/klines"): _klines,
    ("GET", "/fapi/v1/fundingRate"): 1,
    ("GET", "/fapi/v1/ticker/bookTicker"): _by_symbol(2, 5),
    ("GET", "/fapi/v2/ticker/price"): _by_symbol(1, 2),
    ("GET", "/fapi/v1/ticker/24hr"): _by_symbol(1, 40),
    # account
    ("GET", "/fapi/v2/balance"): 5,
    ("GET", "/fapi/v3/balance"): 5,
    ("GET", "/fapi/v1/leverageBracket"): 1,
    ("GET", "/fapi/v1/commissionRate"): 20,
    ("GET", "/fapi/v1/income"): 30,
    ("GET", "/fapi/v1/userTrades"): 5,
    ("GET", "/fapi/v1/allOrders"): 5,
    ("GET", "/fapi/v1/forceOrders"): _by_symbol(20, 50),
    ("GET", "/fapi/v1/adlQuantile"): 5,
    ("GET", "/fapi/v1/multiAssetsMargin"): 30,
    ("POST", "/fapi/v1/multiAssetsMargin"): 1,
    ("POST", "/fapi/v1/leverage"): 1,
    ("POST", "/fapi/v1/marginType"): 1,
    ("GET", "/fapi/v1/symbolConfig"): 5,
    ("GET", "/fapi/v1/accountConfig"): 5,
    # trading
    ("PUT", "/fapi/v1/order"): 0,
    ("POST", "/fapi/v1/batchOrders"): 5,
    ("PUT", "/fapi/v1/batchOrders"): 5,
    ("DELETE", "/fapi/v1/batchOrders"): 1,
    ("POST", "/fapi/v1/countdownCancelAll"): 10,
}


def weight_of(method: str, path: str, params: Params) -> int:
    rule = WEIGHTS.get((method, path), 1)
    return rule if isinstance(rule, int) else rule(params)


@dataclass(slots=True)
class _IpState:
    window: int = -1
    used: int = 0
    rejections: int = 0
    banned_until_ms: int = 0
    bans: int = 0


class RateLimiter:
    """REQUEST_WEIGHT accounting per IP, with 429 and 418."""

    def __init__(self, clock: Clock, config: SimConfig) -> None:
        self.clock = clock
        self.config = config
        self.reset()

    def reset(self) -> None:
        self._ips: dict[str, _IpState] = {}
        self.count_429 = 0
        self.count_418 = 0
        self.clear_faults()

    def clear_faults(self) -> None:
        self.forced_429 = 0
        self.forced_retry_after_s: int | None = None
        """``Retry-After`` of the forced 429s; None: seconds to the next minute."""
        self.forced_429_paths: tuple[str, ...] | None = None
        """Only requests to these paths get the forced 429s (None: any ``/fapi`` path)."""
        self.forced_ban_until_ms = 0
        self.other_weight = 0
        """Weight other clients of every IP are taken to use each minute (counted, reported)."""

    def set_other_weight(self, weight: int) -> None:
        """Every IP's use of this minute is raised to at least ``weight``, and each later
        minute starts from it: as if other clients shared the IP."""
        self.other_weight = weight
        now = self.clock.now_ms()
        for ip in self._ips:
            st = self._state(ip, now)
            st.used = max(st.used, weight)

    def _state(self, ip: str, now: int) -> _IpState:
        st = self._ips.get(ip)
        if st is None:
            st = self._ips[ip] = _IpState()
        window = now // MINUTE_MS
        if st.window != window:
            st.window = window
            st.used = self.other_weight
            st.rejections = 0
        return st

    def used(self, ip: str) -> int:
        return self._state(ip, self.clock.now_ms()).used

    def _retry_429(self, now: int) -> str:
        return str(max(1, math.ceil((MINUTE_MS - now % MINUTE_MS) / 1000)))

    def _banned(self, until_ms: int, now: int, used: int) -> E.ErrorReply:
        self.count_418 += 1
        exc = E.ip_banned(until_ms)
        exc.headers["Retry-After"] = str(max(1, math.ceil((until_ms - now) / 1000)))
        exc.headers["X-MBX-USED-WEIGHT-1M"] = str(used)
        return exc

    def charge(self, ip: str, weight: int, path: str = "") -> int:
        """Count ``weight`` for ``ip``; returns the minute's used weight or raises 429/418
        (``path``: the request's, which a forced 429 may be limited to)."""
        now = self.clock.now_ms()
        st = self._state(ip, now)
        ban_until = max(st.banned_until_ms, self.forced_ban_until_ms)
        if ban_until > now:
            raise self._banned(ban_until, now, st.used)
        st.used += weight
        limit = self.config.weight_limit
        paths = self.forced_429_paths
        forced = self.forced_429 > 0 and (paths is None or path in paths)
        if forced:
            self.forced_429 -= 1
        elif st.used > limit:
            st.rejections += 1
            if st.rejections > self.config.rejections_before_ban:
                duration = min(self.config.ban_seconds * 1000 * (2**st.bans), MAX_BAN_MS)
                st.bans += 1
                st.banned_until_ms = now + duration
                raise self._banned(st.banned_until_ms, now, st.used)
        if forced or st.used > limit:
            self.count_429 += 1
            exc = E.too_many_requests(limit)
            retry = self.forced_retry_after_s if forced else None
            exc.headers["Retry-After"] = str(retry) if retry is not None else self._retry_429(now)
            exc.headers["X-MBX-USED-WEIGHT-1M"] = str(st.used)
            raise exc
        return st.used

    def ban(self, seconds: float) -> None:
        self.forced_ban_until_ms = self.clock.now_ms() + int(seconds * 1000)

    def dump(self) -> dict[str, Any]:
        now = self.clock.now_ms()
        return {
            "limit": self.config.weight_limit,
            "byIp": {
                ip: {
                    "usedWeight1m": self._state(ip, now).used,
                    "rejections": st.rejections,
                    "bannedForMs": max(0, st.banned_until_ms - now),
                }
                for ip, st in self._ips.items()
            },
            "forced429Remaining": self.forced_429,
            "forced429RetryAfter": self.forced_retry_after_s,
            "forced429Paths": list(self.forced_429_paths or ()),
            "otherWeight1m": self.other_weight,
            "forcedBanForMs": max(0, self.forced_ban_until_ms - now),
            "responses429": self.count_429,
            "responses418": self.count_418,
        }


class OrderCounter:
    """New orders of the account in the last 10 s and minute (X-MBX-ORDER-COUNT-*).

    A request counts ``(ten, minute)``: 1 and 1 for one order or amendment; 5 and 1 for a
    batch (``batchOrders``), as the docs weigh it.
    """

    def __init__(self, clock: Clock, config: SimConfig) -> None:
        self.clock = clock
        self.config = config
        self._times: deque[tuple[int, int, int]] = deque()

    def reset(self) -> None:
        self._times.clear()

    def _prune(self, now: int) -> None:
        while self._times and self._times[0][0] <= now - MINUTE_MS:
            self._times.popleft()

    def counts(self) -> tuple[int, int]:
        now = self.clock.now_ms()
        self._prune(now)
        recent = sum(ten for t, ten, _ in self._times if t > now - 10_000)
        return recent, sum(minute for _, _, minute in self._times)

    def check(self) -> None:
        ten, minute = self.counts()
        if ten >= self.config.orders_per_10s:
            raise E.too_many_orders(self.config.orders_per_10s, "10 SECOND")
        if minute >= self.config.orders_per_minute:
            raise E.too_many_orders(self.config.orders_per_minute, "1 MINUTE")

    def record(self, ten: int = 1, minute: int = 1) -> tuple[int, int]:
        self._times.append((self.clock.now_ms(), ten, minute))
        return self.counts()
