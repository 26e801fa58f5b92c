"""Background tasks: stopping one without losing a cancellation of our own, and the
delays between a failing task's retries (every reconnect: venue sessions, Kafka sinks).

The retry policy is two small pure parts, as in the websockets library: this delay
generator (capped exponential backoff with jitter) and a retryable-or-fatal check
(``StreamerError.retryable``; ``sources.base.is_retryable`` for a venue's errors).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
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


#: The first reconnect's delay. A connection that streamed resets the backoff to it, so a
#: venue that drops every few seconds (a restart, a flapping gateway) costs a tenth of a
#: second of data each time, not half a second (bench_flapping_venue.py: 58% of a clean
#: run's surfaces at 0.5 s, 72% at 0.1 s, drops every 3 s); a venue that refuses every
#: connection still sees the delay double to its cap within nine attempts.
RECONNECT_INITIAL_S = 0.1


def backoff_delays(initial_s: float = RECONNECT_INITIAL_S, max_s: float = 30.0,
                   factor: float = 2.0,
                   jitter: float = 0.2, rng: random.Random | None = None) -> Iterator[float]:
    """Capped exponential delays, each spread by ±``jitter`` (a fraction) at random."""
    rand = rng or random.Random()
    delay = initial_s
    while True:
        yield delay * (1.0 + jitter * (2.0 * rand.random() - 1.0))
        delay = min(delay * factor, max_s)
