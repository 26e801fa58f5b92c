"""What every venue session shares: the QuoteSink it feeds and the reconnect policy.

The reconnect policy is two small pure parts, as in the websockets library: a
delay generator (capped exponential backoff with jitter) and a retryable-or-fatal
check.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from streamer.errors import StreamerError, VenueDisconnected
from streamer.types import Quote


class QuoteSink(Protocol):
    """Receives what a venue session produces (implemented by the app)."""

    def on_quote(self, quote: Quote) -> None:
        """A normalised quote."""

    def on_reject(self, venue: str, reason: str) -> None:
        """A dropped message or quote, with a short snake_case reason."""

    def on_reconnect(self, venue: str) -> None:
        """The session is about to reconnect."""

    def on_connected(self, venue: str, connected: bool) -> None:
        """The session is subscribed and streaming (True) or down (False)."""


def backoff_delays(initial_s: float = 0.5, max_s: float = 30.0, factor: float = 2.0,
                   jitter: float = 0.2, rng: random.Random | None = None) -> Iterator[float]:
    """Capped exponential delays, each spread by ±``jitter`` (a fraction) at random."""
    rand = rng or random.Random()
    delay = initial_s
    while True:
        yield delay * (1.0 + jitter * (2.0 * rand.random() - 1.0))
        delay = min(delay * factor, max_s)


def is_retryable(exc: BaseException) -> bool:
    """Network trouble and venue hiccups are retried; bad URLs and bugs are not."""
    if isinstance(exc, InvalidURI):
        return False
    if isinstance(exc, StreamerError):
        return exc.retryable
    return isinstance(exc, OSError | ConnectionClosed | InvalidHandshake | TimeoutError | EOFError)


class _Decoded(Protocol):
    @property
    def quotes(self) -> list[Quote]: ...

    @property
    def rejects(self) -> list[str]: ...


D = TypeVar("D", bound=_Decoded)


def deliver_frame(frame: str | bytes, venue: str, decode: Callable[[bytes, int], D],
                  sink: QuoteSink, clock_ns: Callable[[], int],
                  on_raw: Callable[[int, bytes], None] | None) -> D:
    """Stamp a received frame, record it raw, decode it, hand quotes and rejects on.

    Every venue session does this with each frame; the decoded message is returned
    for the session's own protocol handling (replies, pongs, heartbeats).
    """
    raw = frame.encode() if isinstance(frame, str) else frame
    received_ns = clock_ns()
    if on_raw is not None:
        on_raw(received_ns, raw)
    decoded = decode(raw, received_ns)
    for quote in decoded.quotes:
        sink.on_quote(quote)
    for reason in decoded.rejects:
        sink.on_reject(venue, reason)
    return decoded


async def race_reader(reader: asyncio.Task[None], work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` while the connection's reader runs; the reader ending first ends both.

    A reader only ends on a lost or silent connection, so that ends ``work`` with the
    reader's error (or ``VenueDisconnected``); cancelling the caller cancels ``work``.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({reader, task}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()  # shutting down: the work must not outlive the session
        raise
    if task in done:
        task.result()
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    reader.result()
    raise VenueDisconnected("connection closed")
