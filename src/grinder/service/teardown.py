"""What the service opened, closed at its stop in one order, each step within its part.

A part is registered here as it is opened (``on_close``, ``spawn``, ``add_site``), so a
start the stop interrupts closes exactly what it had opened, and a full one everything.
The order is the stop's, not the reverse of the opening: the HA lease is handed over
first (a follower takes it at once), then the user-data stream, the tasks, the HTTP
endpoints, the control socket, the venue, the expected state and the ledger. Each step
gets its part of the shutdown deadline (``grinder.service.shutdown``); one that fails
or runs over is logged and the next goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from enum import IntEnum
from typing import Any

from aiohttp import web

from grinder.service.shutdown import HTTP_STOP_S, TASKS_S, ShutdownDeadline, bounded

log = logging.getLogger("grinder.service")


class Stage(IntEnum):
    """The steps of the close, in their order."""

    HA = 0
    STREAM = 1
    TASKS = 2
    HTTP = 3
    CONTROL_SOCKET = 4
    VENUE = 5
    EXPECTED = 6
    LEDGER = 7


Step = Callable[[ShutdownDeadline], Awaitable[object]]
"""One close step; it keeps to its part of the deadline it is given."""


class Teardown:
    """See the module doc."""

    def __init__(self) -> None:
        self._steps: list[tuple[Stage, Step]] = [
            (Stage.TASKS, self._end_tasks),
            (Stage.HTTP, self._stop_sites),
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._sites: list[web.AppRunner] = []

    def on_close(self, stage: Stage, step: Step) -> None:
        self._steps.append((stage, step))

    def on_close_now(self, stage: Stage, close: Callable[[], None]) -> None:
        """A step that does not wait (closing a file, removing a socket)."""

        async def step(_deadline: ShutdownDeadline) -> None:
            close()

        self.on_close(stage, step)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run a task that is cancelled at the stop."""
        self._tasks.append(asyncio.create_task(work, name=name))

    def adopt(self, task: asyncio.Task[None]) -> None:
        """A task started elsewhere, cancelled at the stop like the spawned ones."""
        self._tasks.append(task)

    def add_site(self, site: web.AppRunner) -> None:
        self._sites.append(site)

    async def close(self, deadline: ShutdownDeadline) -> None:
        """Every step once, in the stop's order (a second close does nothing)."""
        steps = sorted(self._steps, key=lambda s: s[0])  # stable: opening order within a stage
        self._steps = []
        for _stage, step in steps:
            await step(deadline)

    async def _end_tasks(self, deadline: ShutdownDeadline) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            tasks = asyncio.gather(*self._tasks, return_exceptions=True)
            await bounded(tasks, deadline.part(TASKS_S), "tasks")

    async def _stop_sites(self, deadline: ShutdownDeadline) -> None:
        if self._sites:
            sites = asyncio.gather(*(site.cleanup() for site in self._sites))
            await bounded(sites, deadline.part(HTTP_STOP_S), "http endpoints")
