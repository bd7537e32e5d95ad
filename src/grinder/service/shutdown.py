"""The service's stop: one deadline, shared out among the steps of the close.

SIGTERM or SIGINT (or the end of ``--duration``) starts the deadline: from then on
the REST client waits for nothing (a 429's pause, the weight window and a retry's
backoff end at once), a snapshot in flight is cancelled, and a remediation run in
flight may finish within its part. Each step of the close then gets its part of
what is left of ``SHUTDOWN_GRACE_S`` -- never more -- and is cancelled when it
runs over: a Redis that does not answer, a listenKey close that hangs or a
remediation write that is never answered cannot hold the stop up. The run's
artifacts are written after that, so the process has exited within
``EXIT_BOUND_S`` of the signal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("grinder.service")
T = TypeVar("T")

EXIT_BOUND_S = 5.0
"""From SIGTERM/SIGINT to the process's exit, artifacts written (what the docs promise)."""
SHUTDOWN_GRACE_S = 4.0
"""The service's own deadline for its close; the rest of ``EXIT_BOUND_S`` is for writing
the artifacts and the interpreter's exit."""

# The parts of the deadline each step may use (each gets at most what is left).
RUN_DRAIN_S = 1.0
"""A remediation run in flight finishes (and is reported) within this, or is cancelled."""
HA_RELEASE_S = 1.0
"""Stop campaigning and release the HA lease (a follower takes it over at once)."""
STREAM_STOP_S = 1.0
"""Close the user-data socket and, best effort, the listenKey."""
TASKS_S = 0.5
"""The service's other tasks end once cancelled."""
HTTP_STOP_S = 0.5
"""The metrics and control endpoints stop (requests in flight are cut)."""
VENUE_CLOSE_S = 0.5
"""The REST connection pool (and an in-process simulator) close."""
UNWIND_S = 0.1
"""What a step cancelled for running over is given to unwind."""


class ShutdownDeadline:
    """The one deadline of a stop; ``begin`` starts it (idempotent)."""

    def __init__(
        self, grace_s: float = SHUTDOWN_GRACE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.grace_s = grace_s
        self._clock = clock
        self.started: float | None = None

    def begin(self) -> None:
        if self.started is None:
            self.started = self._clock()

    @property
    def begun(self) -> bool:
        return self.started is not None

    def elapsed(self) -> float:
        return 0.0 if self.started is None else self._clock() - self.started

    def remaining(self) -> float:
        return max(0.0, self.grace_s - self.elapsed())

    def part(self, share_s: float) -> float:
        """A step's time: its share, or what is left of the deadline when that is less."""
        return max(0.0, min(share_s, self.remaining()))


async def bounded(work: Awaitable[object], timeout_s: float, step: str) -> bool:
    """Await ``work`` for at most ``timeout_s``; True when it ended in time.

    Past that it is cancelled (and given ``UNWIND_S`` to unwind) and
    ``SERVICE_STOP_STEP_TIMEOUT`` is logged; an error of ``work`` is logged
    (``SERVICE_STOP_STEP_FAILED``), not raised: one step's failure does not skip the next.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(0.0, timeout_s))
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task not in done:
        task.cancel()
        await asyncio.wait({task}, timeout=UNWIND_S)
        log.warning("SERVICE_STOP_STEP_TIMEOUT step=%s after_s=%.2f", step, timeout_s)
        return False
    if not task.cancelled() and task.exception() is not None:
        error = " ".join(f"{type(task.exception()).__name__}: {task.exception()}".split())
        log.warning("SERVICE_STOP_STEP_FAILED step=%s error=%s", step, error)
    return True


class StopSignal:
    """The stop asked for (a signal, the end of ``--duration``, a test): what the loop and
    the parts wait on, the deadline it starts, and what else must stop waiting at once
    (``on_stop``: the loop's sleep, the REST client's waits)."""

    def __init__(self, deadline: ShutdownDeadline | None = None) -> None:
        self.deadline = deadline or ShutdownDeadline()
        self._event = asyncio.Event()
        self._hooks: list[Callable[[], None]] = []

    def request(self) -> None:
        """Stop (idempotent): the deadline starts now, every ``on_stop`` hook is called."""
        self.deadline.begin()
        self._event.set()
        for hook in self._hooks:
            hook()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def on_stop(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` at the stop (at once when the stop came already)."""
        self._hooks.append(hook)
        if self.is_set():
            hook()


async def unless_stopped(
    work: Coroutine[Any, Any, T], stop: StopSignal, what: str, drain_s: float = 0.0
) -> T | None:
    """``work``'s result, or None when the stop came first: ``work`` then gets ``drain_s``
    of the shutdown deadline to finish, and is cancelled after that."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and drain_s > 0:
            await asyncio.wait({task}, timeout=stop.deadline.part(drain_s))
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        stopped.cancel()
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=UNWIND_S)
        level = logging.WARNING if drain_s > 0 else logging.INFO
        log.log(level, "SERVICE_STOP_CANCELLED work=%s", what)
        return None
    if task.cancelled():
        return None
    return task.result()
