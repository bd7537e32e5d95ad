"""The REST client's retry policy: what follows a failed attempt, decided without I/O.

One table of cases: the failure, the attempt, the kind of request and the state of
the clock's re-sync → the step (send again after a backoff or a 429's pause, re-sync,
raise). The client carrying the steps out is covered against the simulator in
``tests/integration/test_adapter_sim.py`` and ``test_write_fence_sim.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from grinder.exchange.binance.errors import (
    IpBanned,
    RateLimited,
    ServerError,
    TimestampError,
    UnknownOutcome,
)
from grinder.exchange.binance.rest import RestSettings
from grinder.exchange.binance.retry_policy import Pause, Raise, Resync, Retry, Step, next_step
from grinder.exchange.port import TransientExchangeError

SETTINGS = RestSettings(max_retries=3, backoff_base_s=0.2, backoff_cap_s=1.0, max_retry_after_s=60)

TIMEOUT = TransientExchangeError("POST /fapi/v1/order: timed out")
SERVER = ServerError("Binance server error", http_status=502)
UNKNOWN = UnknownOutcome("Binance TIMEOUT", code=-1007)
CLOCK = TimestampError("Binance INVALID_TIMESTAMP", code=-1021)
LIMITED = RateLimited("429", http_status=429, retry_after_s=2.5)
LIMITED_NO_HEADER = RateLimited("429", http_status=429)
LIMITED_LONG = RateLimited("429", http_status=429, retry_after_s=600)
BANNED = IpBanned("418", http_status=418, retry_after_s=120)


@dataclass(frozen=True)
class Request:
    """A read (GET), a POST that is not an order, or an order write (``trade``)."""

    trade: bool = False
    retry_ok: bool = True
    signed: bool = True


READ = Request()
UNSIGNED_READ = Request(signed=False)
POST = Request(retry_ok=False)
TRADE = Request(trade=True, retry_ok=False)

CASES: list[tuple[str, TransientExchangeError, int, Request, bool, Step]] = [
    # -1021: one re-sync per request; a read is sent again, a trade raises after it
    ("clock: read re-syncs", CLOCK, 1, READ, False, Resync(then_raise=False)),
    ("clock: read past max_retries", CLOCK, 9, READ, False, Resync(then_raise=False)),
    ("clock: trade re-syncs, then raises", CLOCK, 1, TRADE, False, Resync(then_raise=True)),
    ("clock: second one is raised", CLOCK, 2, READ, True, Raise(CLOCK)),
    ("clock: trade, second one", CLOCK, 2, TRADE, True, Raise(CLOCK)),
    ("clock: unsigned is raised", CLOCK, 1, UNSIGNED_READ, False, Raise(CLOCK)),
    # 429: the pause always; a read is sent again after it, up to max_retries
    ("429: read waits Retry-After", LIMITED, 1, READ, False, Pause(2.5, then_raise=False)),
    ("429: no header, 1 s", LIMITED_NO_HEADER, 1, READ, False, Pause(1.0, then_raise=False)),
    ("429: capped", LIMITED_LONG, 1, READ, False, Pause(60.0, then_raise=False)),
    ("429: POST is sent again", LIMITED, 1, POST, False, Pause(2.5, then_raise=False)),
    ("429: last retry", LIMITED, 3, READ, False, Pause(2.5, then_raise=False)),
    ("429: past max_retries", LIMITED, 4, READ, False, Pause(2.5, then_raise=True)),
    ("429: trade raises at once", LIMITED, 1, TRADE, False, Pause(2.5, then_raise=True)),
    # 418: raised at once, whatever the request
    ("418: read", BANNED, 1, READ, False, Raise(BANNED)),
    ("418: trade", BANNED, 1, TRADE, False, Raise(BANNED)),
    # other transient failures: reads back off exponentially, up to max_retries
    ("5xx: read, first backoff", SERVER, 1, READ, False, Retry(0.2)),
    ("5xx: read, second backoff", SERVER, 2, READ, False, Retry(0.4)),
    ("5xx: read, backoff capped", SERVER, 3, READ, False, Retry(0.8)),
    ("timeout: read retried", TIMEOUT, 1, READ, False, Retry(0.2)),
    ("5xx: read after re-sync", SERVER, 2, READ, True, Retry(0.4)),
    ("5xx: read past max_retries", SERVER, 4, READ, False, Raise(SERVER)),
    ("5xx: POST not repeated", SERVER, 1, POST, False, Raise(SERVER)),
    ("timeout: POST not repeated", TIMEOUT, 1, POST, False, Raise(TIMEOUT)),
    ("5xx: trade raised as is", SERVER, 1, TRADE, False, Raise(SERVER)),
    ("-1007: trade raised as is", UNKNOWN, 1, TRADE, False, Raise(UNKNOWN)),
]


@pytest.mark.parametrize(
    ("error", "attempt", "request_", "resynced", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_next_step(
    error: TransientExchangeError, attempt: int, request_: Request, resynced: bool, expected: Step
) -> None:
    step = next_step(
        error,
        attempt,
        trade=request_.trade,
        retry_ok=request_.retry_ok,
        signed=request_.signed,
        resynced=resynced,
        settings=SETTINGS,
    )
    assert step == expected
    if isinstance(expected, Raise):
        assert isinstance(step, Raise)
        assert step.error is error


def test_backoff_is_capped() -> None:
    capped = RestSettings(max_retries=10, backoff_base_s=0.2, backoff_cap_s=1.0)
    steps = [
        next_step(
            SERVER, n, trade=False, retry_ok=True, signed=True, resynced=False, settings=capped
        )
        for n in range(1, 6)
    ]
    assert steps == [Retry(0.2), Retry(0.4), Retry(0.8), Retry(1.0), Retry(1.0)]


@pytest.mark.parametrize("attempt", [1, 4])
def test_a_trade_that_timed_out_has_an_unknown_outcome(attempt: int) -> None:
    """A transport failure of an order write (not an answer from Binance): the order
    may have been executed, so it is raised as ``UnknownOutcome``, never repeated."""
    step = next_step(
        TIMEOUT, attempt, trade=True, retry_ok=False, signed=True, resynced=False, settings=SETTINGS
    )
    assert isinstance(step, Raise)
    assert type(step.error) is UnknownOutcome
    assert step.error.outcome_unknown
    assert str(step.error) == "POST /fapi/v1/order: timed out (the outcome is unknown)"


def test_the_policy_changes_nothing() -> None:
    """Pure: the same question gets the same answer, and the failure is left as it was."""
    before = (LIMITED.retry_after_s, LIMITED.http_status, str(LIMITED))
    first = next_step(
        LIMITED, 1, trade=False, retry_ok=True, signed=True, resynced=False, settings=SETTINGS
    )
    again = next_step(
        LIMITED, 1, trade=False, retry_ok=True, signed=True, resynced=False, settings=SETTINGS
    )
    assert first == again
    assert (LIMITED.retry_after_s, LIMITED.http_status, str(LIMITED)) == before
