"""What the REST client does after a failed attempt: a pure decision.

``next_step`` reads the failure and the request's state (which attempt, whether it is
an order write, whether it may be repeated, whether the clock was already re-synced)
and returns one step; it reads no clock, sleeps nowhere and sends nothing.
``BinanceRestClient.request`` carries the step out: it sends again (after a backoff or
a 429's pause), re-syncs the clock, or raises.

The rules:

* ``-1021``/``-5028`` (``TimestampError``) on a signed request: re-sync the clock once;
  a read is then sent again, an order write raises (sending it again is the executor's
  decision, D44). A second one, or one on an unsigned request, is raised.
* ``429`` (``RateLimited``): every request of the client pauses for ``Retry-After``
  (1 s when absent, at most ``max_retry_after_s``); a read is then sent again, up to
  ``max_retries`` times; an order write raises at once (D43).
* ``418`` (``IpBanned``): raised; the client notes the ban, and sends nothing until it ends.
* any other transient failure: a repeatable request (a read) is sent again after a
  jittered exponential backoff, up to ``max_retries`` times; otherwise it is raised --
  and an order write that timed out or lost its connection becomes ``UnknownOutcome``:
  it may have been executed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from grinder.exchange.binance.errors import (
    BinanceError,
    IpBanned,
    RateLimited,
    TimestampError,
    UnknownOutcome,
)
from grinder.exchange.port import TransientExchangeError

__all__ = ["Pause", "Raise", "Resync", "Retry", "RetrySettings", "Step", "next_step"]


class RetrySettings(Protocol):
    """The settings the policy reads (``RestSettings`` has them)."""

    max_retries: int
    backoff_base_s: float
    backoff_cap_s: float
    max_retry_after_s: float


@dataclass(frozen=True, slots=True)
class Retry:
    """Send the request again after a backoff drawn from ``[backoff_s / 2, backoff_s]``."""

    backoff_s: float


@dataclass(frozen=True, slots=True)
class Pause:
    """A 429: no request of the client goes out for ``wait_s``; then this one is sent
    again (after the pause), or the failure is raised when ``then_raise``."""

    wait_s: float
    then_raise: bool


@dataclass(frozen=True, slots=True)
class Resync:
    """Re-sync the clock with the server; then send again, or raise when ``then_raise``."""

    then_raise: bool


@dataclass(frozen=True, slots=True)
class Raise:
    """Give up: raise ``error`` (the failure itself, or what it means for the caller)."""

    error: TransientExchangeError


Step = Retry | Pause | Resync | Raise


def next_step(
    error: TransientExchangeError,
    attempt: int,
    *,
    trade: bool,
    retry_ok: bool,
    signed: bool,
    resynced: bool,
    settings: RetrySettings,
) -> Step:
    """What to do after ``error`` ended ``attempt`` (counted from 1) of one request.

    ``trade``: an order write (sent at most once); ``retry_ok``: the request may be
    repeated after a failure (a read); ``resynced``: the clock was already re-synced
    for this request.
    """
    exhausted = attempt > settings.max_retries
    if isinstance(error, TimestampError):
        return Raise(error) if resynced or not signed else Resync(then_raise=trade)
    if isinstance(error, RateLimited):
        # A 429'd request was not processed: repeating it is safe (not a trade's).
        wait = min(error.retry_after_s or 1.0, settings.max_retry_after_s)
        return Pause(wait, then_raise=trade or exhausted)
    if isinstance(error, IpBanned):
        return Raise(error)
    if not retry_ok or exhausted:
        if trade and not isinstance(error, BinanceError):
            # A timeout or a broken connection: the order may have been executed.
            return Raise(UnknownOutcome(f"{error} (the outcome is unknown)"))
        return Raise(error)
    return Retry(min(settings.backoff_cap_s, settings.backoff_base_s * 2 ** (attempt - 1)))
