"""The stop and what it closes: ``StopSignal`` and ``Teardown`` (grinder.service)."""

from __future__ import annotations

import asyncio

from grinder.service.shutdown import ShutdownDeadline, StopSignal, unless_stopped
from grinder.service.teardown import Stage, Teardown


async def test_the_close_runs_in_the_stops_order_whatever_the_opening_order() -> None:
    closed: list[str] = []
    teardown = Teardown()
    # Opened the way the start opens them: expected state, venue, ledger, ..., HA last.
    for stage in (Stage.EXPECTED, Stage.VENUE, Stage.LEDGER, Stage.CONTROL_SOCKET, Stage.STREAM):
        teardown.on_close_now(stage, lambda name=stage.name: closed.append(name))

    async def release(_deadline: ShutdownDeadline) -> None:
        closed.append("HA")

    teardown.on_close(Stage.HA, release)
    await teardown.close(ShutdownDeadline())
    assert closed == ["HA", "STREAM", "CONTROL_SOCKET", "VENUE", "EXPECTED", "LEDGER"]


async def test_a_second_close_closes_nothing_again() -> None:
    closed: list[str] = []
    teardown = Teardown()
    teardown.on_close_now(Stage.VENUE, lambda: closed.append("venue"))
    await teardown.close(ShutdownDeadline())
    await teardown.close(ShutdownDeadline())
    assert closed == ["venue"]


async def test_only_what_was_registered_is_closed() -> None:
    """A start cut short: what it never opened is never closed (nor touched)."""
    teardown = Teardown()
    closed: list[str] = []
    teardown.on_close_now(Stage.EXPECTED, lambda: closed.append("expected"))
    await teardown.close(ShutdownDeadline())
    assert closed == ["expected"]


async def test_tasks_are_cancelled_and_awaited_within_their_part() -> None:
    teardown = Teardown()
    ended: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    teardown.spawn(forever("a"), "a")
    adopted = asyncio.create_task(forever("b"))
    teardown.adopt(adopted)
    await asyncio.sleep(0)  # both running
    await teardown.close(ShutdownDeadline())
    assert sorted(ended) == ["a", "b"]
    assert adopted.cancelled()


async def test_a_step_that_hangs_is_cut_at_its_part_and_the_next_still_runs() -> None:
    from grinder.service.shutdown import bounded

    teardown = Teardown()
    closed: list[str] = []

    async def hangs(deadline: ShutdownDeadline) -> None:
        await bounded(asyncio.Event().wait(), deadline.part(0.05), "hangs")

    teardown.on_close(Stage.VENUE, hangs)
    teardown.on_close_now(Stage.LEDGER, lambda: closed.append("ledger"))
    await teardown.close(ShutdownDeadline())
    assert closed == ["ledger"]


async def test_the_stop_calls_its_hooks_once_asked_and_at_once_when_asked_before() -> None:
    stop = StopSignal()
    called: list[str] = []
    stop.on_stop(lambda: called.append("early"))
    assert called == []
    assert not stop.deadline.begun
    stop.request()
    assert stop.is_set()
    assert stop.deadline.begun
    assert called == ["early"]
    stop.on_stop(lambda: called.append("late"))  # registered after the stop: called now
    assert called == ["early", "late"]


async def test_unless_stopped_cancels_the_work_the_stop_interrupts() -> None:
    stop = StopSignal()
    cancelled = asyncio.Event()

    async def work() -> int:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    task = asyncio.create_task(unless_stopped(work(), stop, "work"))
    await asyncio.sleep(0)
    stop.request()
    assert await task is None
    assert cancelled.is_set()


async def test_unless_stopped_returns_the_result_when_no_stop_comes() -> None:
    async def work() -> int:
        return 7

    assert await unless_stopped(work(), StopSignal(), "work") == 7
