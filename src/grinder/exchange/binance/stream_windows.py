"""The user-data stream's reconnect windows: when it was not live after it first was.

A window opens when the stream leaves LIVE and closes when it is LIVE again (its
resync snapshot in). An event the exchange sent meanwhile never reached the
service: what it announced was learned later from a snapshot or a lookup, or not
at all. The windows are what an incident's cause ``stream_gap`` is decided from
(``grinder.incidents.causes``). The time before the stream is first live is no
window: the service's first snapshot covers it.

Pure state: the stream hands in its state changes with its own clock's time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MAX_WINDOWS = 256
"""The most recent windows kept (older ones are forgotten first)."""


@dataclass(frozen=True, slots=True)
class ReconnectWindow:
    """``[start_ms, end_ms]`` on the local clock; ``end_ms`` None while still open."""

    start_ms: int
    end_ms: int | None = None

    def covers(self, ts_ms: int, *, margin_ms: int = 0) -> bool:
        """Whether ``ts_ms`` falls in the window widened by ``margin_ms`` at its start (an
        event sent just before the socket dropped was lost with it)."""
        if ts_ms < self.start_ms - margin_ms:
            return False
        return self.end_ms is None or ts_ms <= self.end_ms


class ReconnectWindows:
    """The stream's windows, oldest first, at most ``MAX_WINDOWS``."""

    def __init__(self, max_windows: int = MAX_WINDOWS) -> None:
        self._closed: deque[ReconnectWindow] = deque(maxlen=max_windows)
        self._open_since: int | None = None
        self._was_live = False

    def went_live(self, now_ms: int) -> None:
        if self._open_since is not None:
            self._closed.append(ReconnectWindow(self._open_since, now_ms))
            self._open_since = None
        self._was_live = True

    def left_live(self, now_ms: int) -> None:
        if self._was_live and self._open_since is None:
            self._open_since = now_ms

    def windows(self) -> tuple[ReconnectWindow, ...]:
        """Every window kept, the open one (if any) last."""
        current = () if self._open_since is None else (ReconnectWindow(self._open_since),)
        return (*self._closed, *current)
