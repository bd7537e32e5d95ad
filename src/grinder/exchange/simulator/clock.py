"""Time for the simulator: an injectable millisecond clock.

Everything in the simulator that reads time (order times, listenKey expiry,
weight windows, recvWindow checks) reads it from a ``Clock``: an object with a
``now_ms()`` method, since the simulator holds and hands around one clock
object. ``SystemClock`` is wall time (``grinder.clock.wall_clock_ms``);
``ManualClock`` is the shared ``grinder.clock.ManualClock``, which only moves
when told to, so tests can jump an hour ahead to expire a listenKey without
waiting.
"""

from __future__ import annotations

from typing import Protocol

from grinder.clock import ManualClock, wall_clock_ms

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """A source of the current time in integer milliseconds since the Unix epoch."""

    def now_ms(self) -> int: ...


class SystemClock:
    """Wall-clock time."""

    def now_ms(self) -> int:
        return wall_clock_ms()
