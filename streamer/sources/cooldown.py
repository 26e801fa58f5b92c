"""How long to stay away after a venue said we ask too fast: one rule for every venue.

Pure (no clock): the session says when the venue rate-limited us, when a connection
starts and when it ends. A rate limit asks the next connection to wait at least the
current cooldown; the cooldown doubles with each rate-limited connection in a row, from
``first_s`` up to ``max_s`` (Deribit's is one fixed wait: ``first_s == max_s``), and
starts over once a connection streamed without being limited.
"""

from __future__ import annotations

from collections.abc import Iterator

from streamer.tasks import backoff_delays


class Cooldown:
    """The least wait before reconnecting that the venue asked for, connection by
    connection."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self.first_s, self.max_s = first_s, max(first_s, max_s)
        self._waits = self._fresh()
        #: Asked for by the current (or just ended) connection; None if it was not limited.
        self.asked_s: float | None = None

    def connection_started(self) -> None:
        """A new connection: not limited (yet)."""
        self.asked_s = None

    def rate_limited(self) -> float:
        """The venue said we ask too fast: the wait the next connection owes (the same
        however often one connection is told)."""
        if self.asked_s is None:
            self.asked_s = next(self._waits)
        return self.asked_s

    def connection_ended(self, streamed: bool) -> None:
        """A connection that streamed and was not limited starts the cooldowns over (rate
        limits can come after streaming began: those keep doubling)."""
        if streamed and self.asked_s is None:
            self._waits = self._fresh()

    def _fresh(self) -> Iterator[float]:
        return backoff_delays(self.first_s, self.max_s, jitter=0.0)
