"""The ack deadline: a batch sent to Kafka and not acknowledged within
``kafka.ack_deadline_ms`` (a frozen broker answers nothing, and aiokafka's request
timeout is far longer) is reported once, as the ``ack_timeout`` error, so the metric
and /readyz show it while the batch still waits. Every Kafka sink watches its sends
with one; the clock is injected, so tests need no wall-clock waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: How often an in-flight batch is checked against the ack deadline.
ACK_POLL_S = 0.25
ACK_TIMEOUT = "ack_timeout"

Clock = Callable[[], float]
#: Told the reason of each counted error (``ack_timeout`` here).
OnError = Callable[[str], None]


class AckDeadline:
    """One sink's batch in flight against the deadline."""

    def __init__(self, deadline_ms: int, what: str, bootstrap: str,
                 on_error: OnError | None = None, clock: Clock = time.monotonic) -> None:
        self._deadline_s = deadline_ms / 1000
        self._what, self._bootstrap = what, bootstrap
        self._on_error = on_error
        self._clock = clock
        self._since: float | None = None
        self._reported = False

    @property
    def overdue(self) -> bool:
        """True while a batch has waited longer than the deadline."""
        return self._since is not None and self._clock() - self._since > self._deadline_s

    async def wait(self, acks: asyncio.Future[Any], count: int) -> None:
        """Wait for a batch's ``acks``, reporting it once (``on_error``) if it goes
        overdue. Cancelling the wait cancels ``acks``."""
        self._since, self._reported = self._clock(), False
        try:
            while not acks.done():
                await asyncio.wait([acks], timeout=ACK_POLL_S)
                self._check(count)
        except BaseException:
            acks.cancel()
            raise
        finally:
            self._since = None

    def _check(self, count: int) -> None:
        if self.overdue and not self._reported:
            self._reported = True
            if self._on_error is not None:
                self._on_error(ACK_TIMEOUT)
            log.warning("Kafka at %s has not acknowledged %d %s for more than %.0f ms "
                        "(kafka.ack_deadline_ms)", self._bootstrap, count, self._what,
                        self._deadline_s * 1000)
