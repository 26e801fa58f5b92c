"""cancel_and_wait: a task is stopped, and a cancellation of the caller is never lost."""

from __future__ import annotations

import asyncio
import contextlib

from streamer.tasks import cancel_and_wait


async def _slow_to_stop(stopped: asyncio.Event) -> None:
    """A task that needs a moment to clean up after being cancelled."""
    try:
        await asyncio.sleep(3600)
    finally:
        await asyncio.sleep(0.05)
        stopped.set()


async def test_the_task_has_ended_when_it_returns() -> None:
    stopped = asyncio.Event()
    task = asyncio.create_task(_slow_to_stop(stopped))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()
    assert stopped.is_set()


async def test_the_tasks_own_error_is_dropped_not_raised() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert isinstance(task.exception(), RuntimeError)


async def test_a_cancel_of_the_caller_while_it_waits_is_not_swallowed() -> None:
    """The bug it replaces: ``with suppress(CancelledError): await task`` carried on."""
    carried_on = False

    async def caller() -> None:
        nonlocal carried_on
        child = asyncio.create_task(_slow_to_stop(asyncio.Event()))
        await asyncio.sleep(0)
        await cancel_and_wait(child)
        carried_on = True

    outer = asyncio.create_task(caller())
    await asyncio.sleep(0.01)  # the caller now waits on its cancelled child
    outer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await outer
    assert outer.cancelled()
    assert not carried_on


async def test_the_old_pattern_does_swallow_it() -> None:
    """Guards the test above: the same schedule loses the cancel with suppress()."""
    carried_on = False

    async def caller() -> None:
        nonlocal carried_on
        child = asyncio.create_task(_slow_to_stop(asyncio.Event()))
        await asyncio.sleep(0)
        child.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await child
        carried_on = True

    outer = asyncio.create_task(caller())
    await asyncio.sleep(0.01)
    outer.cancel()
    await outer  # no CancelledError: it was swallowed
    assert not outer.cancelled()
    assert carried_on  # the caller went on after its own cancel
