"""Time for the simulator: an injectable millisecond clock.

Everything in the simulator that reads time (order times, listenKey expiry,
weight windows, recvWindow checks) reads it from a ``Clock``. ``SystemClock``
is wall time; ``ManualClock`` only moves when told to, so tests can jump an
hour ahead to expire a listenKey without waiting.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of the current time in integer milliseconds since the Unix epoch."""

    def now_ms(self) -> int: ...


class SystemClock:
    """Wall-clock time."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when ``advance`` or ``set`` is called."""

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, ms: int) -> int:
        if ms < 0:
            raise ValueError("a clock does not run backwards")
        self._now += ms
        return self._now

    def set(self, ms: int) -> None:
        self._now = ms
