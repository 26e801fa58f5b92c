"""Which channels a connection has, which the venue refused, and what to ask for next.

One bookkeeping for every venue that subscribes in acknowledged batches (Deribit, Bybit,
Binance), pure: no socket, no clock. The session asks for ``next_batch()``, sends it,
and feeds the answer back (``answered`` with the channels the answer left out, or
``refused_all``); it counts and logs what comes back refused, and paces the requests.

A venue that leaves a channel out of its answer but may serve it when asked again
(Deribit) is asked ``ask_again`` more times, each straight after the answer and alone
with the others left out of it; a channel still left out is refused. Refused channels
are not asked for again until ``forget_refused`` (a new connection for Deribit, the
next instrument refresh for Bybit).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Iterator


class Subscriptions:
    """The channels of one venue's connection: subscribed, refused, queued, waiting."""

    def __init__(self, batch_size: int, *, ask_again: int = 0) -> None:
        self.batch_size = max(1, batch_size)
        self.ask_again = ask_again
        self.subscribed: set[str] = set()  # confirmed on this connection
        self.refused: set[str] = set()  # not asked for again until forget_refused
        self._queue: deque[tuple[list[str], int]] = deque()  # (batch, times asked before)
        self._waiting: tuple[list[str], int] | None = None  # sent, its answer not yet in

    def new_connection(self) -> None:
        """Nothing subscribed yet: each connection subscribes everything once."""
        self.subscribed.clear()
        self._queue.clear()
        self._waiting = None

    def forget_refused(self) -> None:
        """Ask again for what was refused, the next time it is wanted."""
        self.refused.clear()

    def want(self, channels: Iterable[str]) -> list[str]:
        """Queue, in batches, the ``channels`` neither subscribed, refused nor queued.

        Returns them, in order.
        """
        queued = {c for batch, _ in self._queue for c in batch}
        new = [c for c in dict.fromkeys(channels)
               if c not in self.subscribed and c not in self.refused and c not in queued]
        self._queue.extend((batch, 0) for batch in self.batches(new))
        return new

    def next_batch(self) -> list[str] | None:
        """The channels of the next subscribe request (None: nothing queued); it waits on
        its answer until ``answered`` or ``refused_all``."""
        if self._waiting is not None:
            raise RuntimeError("one subscribe request at a time: the last one is unanswered")
        if not self._queue:
            return None
        self._waiting = self._queue.popleft()
        return list(self._waiting[0])

    def answered(self, missing: Collection[str] = ()) -> list[str]:
        """The waiting request was accepted, leaving ``missing`` out.

        Those are asked again first if they have asks left; returns the channels now
        refused (each returned once, to be counted once).
        """
        batch, asked = self._take()
        left_out = [c for c in batch if c in missing]
        self.subscribed.update(c for c in batch if c not in missing)
        if not left_out:
            return []
        if asked < self.ask_again:
            self._queue.appendleft((left_out, asked + 1))
            return []
        self.refused.update(left_out)
        return left_out

    def refused_all(self) -> list[str]:
        """The venue refused the waiting request outright; returns its channels.

        They are not marked refused: a new connection asks for them again.
        """
        batch, _ = self._take()
        return batch

    def delisted(self, wanted: Collection[str]) -> list[list[str]]:
        """Subscribed channels not ``wanted`` any more, in unsubscribe batches; refusals of
        channels not wanted are forgotten (a channel listed again is asked for anew)."""
        self.refused.intersection_update(wanted)
        return list(self.batches(sorted(self.subscribed.difference(wanted))))

    def unsubscribed(self, channels: Iterable[str]) -> None:
        """``channels`` are no longer subscribed."""
        self.subscribed.difference_update(channels)

    def batches(self, channels: list[str]) -> Iterator[list[str]]:
        """``channels`` in request-sized batches of ``batch_size``."""
        for start in range(0, len(channels), self.batch_size):
            yield channels[start:start + self.batch_size]

    def _take(self) -> tuple[list[str], int]:
        if self._waiting is None:
            raise RuntimeError("no subscribe request is waiting on an answer")
        waiting, self._waiting = self._waiting, None
        return waiting
