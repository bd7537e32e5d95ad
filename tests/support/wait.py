"""Polling until a condition holds, for threads (``wait_until``) and coroutines
(``wait_until_async``). Both return the first truthy value of ``predicate`` and, when the time
runs out, fail with ``what`` and the last value seen."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

TIMEOUT_S = 15.0
INTERVAL_S = 0.05


def _timed_out(what: str, timeout_s: float, last: Any) -> AssertionError:
    return AssertionError(f"not reached in {timeout_s} s: {what} (last: {last!r})")


def wait_until(
    predicate: Callable[[], Any],
    what: str = "the condition",
    timeout_s: float = TIMEOUT_S,
    *,
    interval_s: float = INTERVAL_S,
) -> Any:
    """Calls ``predicate`` every ``interval_s`` until it returns a truthy value, and returns it."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout_s, value)
        time.sleep(interval_s)


async def wait_until_async(
    predicate: Callable[[], Any],
    what: str = "the condition",
    timeout_s: float = TIMEOUT_S,
    *,
    interval_s: float = INTERVAL_S,
) -> Any:
    """``wait_until`` without blocking the event loop; ``predicate`` may return an awaitable,
    which is awaited on each poll."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout_s, value)
        await asyncio.sleep(interval_s)
