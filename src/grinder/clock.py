"""The one wall clock: integer milliseconds since the Unix epoch.

Everything that stamps, dates or ages with wall time takes a ``Clock`` (a
zero-argument callable returning ms) and defaults it to ``wall_clock_ms``.
Tests pass a ``ManualClock``, which moves only when told to.

Not here on purpose: the monotonic clocks (float seconds, ``time.monotonic``)
that the HA elector, the shutdown deadline and the connection backoff measure
intervals with; they are a different clock, not a copy of this one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeAlias

Clock: TypeAlias = Callable[[], int]
"""A source of the current wall time in integer milliseconds since the Unix epoch."""


def wall_clock_ms() -> int:
    """The wall clock now, in integer milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


class ManualClock:
    """A millisecond clock that moves only when ``advance`` or ``set`` is called.

    Calling it reads it (so it is a ``Clock``); ``now_ms()`` reads it too (so it
    is also the simulator's clock).
    """

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:
        self._now = start_ms

    def __call__(self) -> int:
        return self._now

    def now_ms(self) -> int:
        return self._now

    @property
    def now(self) -> int:
        return self._now

    def advance(self, ms: int) -> int:
        if ms < 0:
            raise ValueError("a clock does not run backwards")
        self._now += ms
        return self._now

    def set(self, ms: int) -> None:
        self._now = ms
