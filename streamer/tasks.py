"""Stopping a background task without losing a cancellation of our own."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has ended; its own error, if any, is dropped.

    ``with suppress(CancelledError): await task`` would also swallow a cancellation
    of the caller that lands while it waits, and the caller would carry on as if
    nothing happened (a session cancelled at the wrong moment reconnected forever).
    ``asyncio.wait`` never raises the task's outcome, only the caller's own cancel.
    """
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: the caller has its own reason for stopping it
