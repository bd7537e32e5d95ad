"""Request weights, the 2400/min limit, 429 then 418, and the ORDERS counters."""

from __future__ import annotations

import pytest

from grinder.exchange.simulator.clock import ManualClock
from grinder.exchange.simulator.config import SimConfig
from grinder.exchange.simulator.errors import ErrorReply
from grinder.exchange.simulator.params import Params
from grinder.exchange.simulator.weights import OrderCounter, RateLimiter, weight_of

WITH_SYMBOL = Params.of(symbol="BTCUSDT")
WITHOUT = Params()


@pytest.mark.parametrize(
    ("method", "path", "params", "weight"),
    [
        ("GET", "/fapi/v1/openOrders", WITH_SYMBOL, 1),
        ("GET", "/fapi/v1/openOrders", WITHOUT, 40),
        ("GET", "/fapi/v3/positionRisk", WITHOUT, 5),
        ("GET", "/fapi/v2/positionRisk", WITH_SYMBOL, 5),
        ("GET", "/fapi/v1/order", WITH_SYMBOL, 1),
        ("POST", "/fapi/v1/order", WITH_SYMBOL, 0),
        ("DELETE", "/fapi/v1/order", WITH_SYMBOL, 1),
        ("GET", "/fapi/v1/exchangeInfo", WITHOUT, 1),
        ("GET", "/fapi/v1/positionSide/dual", WITHOUT, 30),
        ("GET", "/fapi/v1/premiumIndex", WITHOUT, 10),
        ("GET", "/fapi/v1/premiumIndex", WITH_SYMBOL, 1),
        ("GET", "/fapi/v1/ticker/price", WITHOUT, 2),
        ("GET", "/fapi/v1/openAlgoOrders", WITHOUT, 40),
        ("POST", "/fapi/v1/algoOrder", WITH_SYMBOL, 0),
        ("POST", "/fapi/v1/listenKey", WITHOUT, 1),
        ("GET", "/fapi/v2/account", WITHOUT, 5),
    ],
)
def test_endpoint_weights_follow_the_docs(
    method: str, path: str, params: Params, weight: int
) -> None:
    assert weight_of(method, path, params) == weight


def limiter(**overrides: int) -> tuple[RateLimiter, ManualClock]:
    clock = ManualClock(start_ms=1_767_225_600_000)  # on a minute boundary
    return RateLimiter(clock, SimConfig(**overrides)), clock  # type: ignore[arg-type]


def test_used_weight_accumulates_per_ip_within_the_minute() -> None:
    rl, clock = limiter()
    assert rl.charge("a", 40) == 40
    assert rl.charge("a", 5) == 45
    assert rl.charge("b", 1) == 1
    clock.advance(60_000)
    assert rl.charge("a", 1) == 1


def test_past_the_limit_429_with_retry_after_then_418_ban() -> None:
    rl, clock = limiter(weight_limit=100, rejections_before_ban=2, ban_seconds=120)
    rl.charge("a", 100)
    clock.advance(15_000)
    statuses = []
    for _ in range(3):
        with pytest.raises(ErrorReply) as info:
            rl.charge("a", 1)
        statuses.append((info.value.status, info.value.code, info.value.headers["Retry-After"]))
    assert statuses[0] == (429, -1003, "45")
    assert statuses[1][0] == 429
    assert statuses[2][:2] == (418, -1003)
    assert statuses[2][2] == "120"
    assert "IP banned until" in info.value.msg
    clock.advance(60_000)  # a new minute does not lift a ban
    with pytest.raises(ErrorReply) as info:
        rl.charge("a", 1)
    assert info.value.status == 418
    clock.advance(61_000)
    assert rl.charge("a", 1) == 1


def test_repeat_bans_double() -> None:
    rl, clock = limiter(weight_limit=1, rejections_before_ban=0, ban_seconds=10)
    for expected in ("10", "20"):
        rl.charge("a", 1)
        with pytest.raises(ErrorReply) as info:
            rl.charge("a", 1)
        assert (info.value.status, info.value.headers["Retry-After"]) == (418, expected)
        clock.advance(int(expected) * 1000 + 60_000)


def test_forced_429_and_forced_ban() -> None:
    rl, clock = limiter()
    rl.forced_429 = 2
    for _ in range(2):
        with pytest.raises(ErrorReply) as info:
            rl.charge("a", 1)
        assert info.value.status == 429
    assert rl.charge("a", 1) == 3
    rl.ban(5)
    with pytest.raises(ErrorReply) as info:
        rl.charge("b", 1)
    assert (info.value.status, info.value.headers["Retry-After"]) == (418, "5")
    clock.advance(5_000)
    assert rl.charge("b", 1) == 1


def test_order_counter_limits_new_orders() -> None:
    clock = ManualClock()
    counter = OrderCounter(clock, SimConfig(orders_per_10s=3, orders_per_minute=5))
    for _ in range(3):
        counter.check()
        counter.record()
    with pytest.raises(ErrorReply) as info:
        counter.check()
    assert (info.value.code, info.value.status) == (-1015, 429)
    clock.advance(10_001)
    counter.check()
    counter.record()
    counter.record()
    assert counter.counts() == (2, 5)
    with pytest.raises(ErrorReply):
        counter.check()
