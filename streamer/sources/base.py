"""What every venue session shares: the QuoteSink it feeds and the reconnect policy.

The reconnect policy is two small pure parts, as in the websockets library: a
delay generator (``streamer.tasks.backoff_delays``, capped exponential backoff with
jitter) and a retryable-or-fatal check (``is_retryable``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from streamer.errors import StreamerError, VenueDisconnected, VenueUnreachable
from streamer.tasks import cancel_and_wait
from streamer.types import Quote, VenueVolIndex

log = logging.getLogger(__name__)

# The reject reason of a venue's "too many requests" answer. A decoder adds it to the
# frame's rejects (counted like any other); the session then ends the connection and
# cools down before the next (``ws_session``).
RATE_LIMITED = "rate_limited"


class QuoteSink(Protocol):
    """Receives what a venue session produces (implemented by the app)."""

    def on_quote(self, quote: Quote) -> None:
        """A normalised quote."""

    def on_reject(self, venue: str, reason: str) -> None:
        """A dropped message or quote, with a short snake_case reason."""

    def on_vol_index(self, index: VenueVolIndex) -> None:
        """A venue's own implied-vol index value (Deribit's DVOL)."""

    def on_reconnect(self, venue: str) -> None:
        """The session is about to reconnect."""

    def on_connected(self, venue: str, connected: bool) -> None:
        """The session is subscribed and streaming (True) or down (False)."""


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

    @property
    def vol_indices(self) -> list[VenueVolIndex]: ...


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
    for index in decoded.vol_indices:
        sink.on_vol_index(index)
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
    await cancel_and_wait(task)
    reader.result()
    raise VenueDisconnected("connection closed")


async def reconnect_forever(venue: str, url: str, connection: Callable[[], Awaitable[None]],
                            sink: QuoteSink, *, streamed: Callable[[], bool],
                            on_down: Callable[[], None], backoff: Callable[[], Iterator[float]],
                            cooldown_s: Callable[[], float | None] = lambda: None,
                            logger: logging.Logger = log) -> None:
    """Run ``connection`` until cancelled, reconnecting with capped, jittered backoff.

    A fatal error (``is_retryable`` false) is logged and raised. After each lost
    connection the venue is reported down, ``on_down`` fails what waited on it, and
    the backoff (a fresh ``backoff()``) starts again from its first delay if the
    connection had streamed. A venue that asks us to slow down (``cooldown_s`` not
    None, e.g. Deribit after a rate limit) waits at least that long, and its backoff
    is not reset.
    """
    delays = backoff()
    while True:
        never = False
        try:
            await connection()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            never = isinstance(exc, VenueUnreachable)
            if not is_retryable(exc):
                logger.error("%s: giving up on %s: %s", venue, url, exc)
                raise
            if never:  # no connection opened: nothing was lost
                logger.warning("%s: %s", venue, exc)
            else:
                logger.warning("%s: connection lost (%s: %s)", venue, type(exc).__name__, exc)
        finally:
            sink.on_connected(venue, False)
            on_down()
        sink.on_reconnect(venue)
        cooldown = cooldown_s()
        if streamed() and cooldown is None:  # a connection that streamed resets the backoff
            delays = backoff()
        delay = max(next(delays), cooldown or 0.0)
        logger.info("%s: %s in %.2fs", venue, "retrying" if never else "reconnecting", delay)
        await asyncio.sleep(delay)


InstrumentT = TypeVar("InstrumentT")


class InstrumentCache(dict[str, InstrumentT | str]):
    """Instrument names parsed once: the parsed instrument, or the reason it is rejected.

    Look names up with ``cache[name]`` (never ``.get``, which does not parse): a
    dict subclass, so a known name, the decoders' case on every quote, is a plain
    dict lookup with no Python call. Bounded so a stream of junk names cannot grow
    it without limit (past the bound, names are still parsed, just not remembered).
    """

    def __init__(self, parse: Callable[[str], InstrumentT | None], classify: Callable[[str], str],
                 max_size: int = 100_000) -> None:
        super().__init__()
        self._parse, self._classify, self._max = parse, classify, max_size

    def __missing__(self, name: str) -> InstrumentT | str:
        info = self._parse(name) or self._classify(name)
        if len(self) < self._max:
            self[name] = info
        return info


def unreachable(url: str, exc: OSError) -> VenueUnreachable:
    """Why no connection to ``url`` opened, naming the host (and port)."""
    parts = urlsplit(url)
    host = parts.hostname or url
    port = parts.port or (443 if parts.scheme in ("wss", "https") else 80)
    if isinstance(exc, socket.gaierror):
        reason = f"cannot resolve host {host} ({exc.strerror or exc})"
    elif isinstance(exc, ConnectionRefusedError):
        reason = f"{host}:{port} refused the connection"
    elif isinstance(exc, TimeoutError):
        reason = f"no answer from {host}:{port} (timed out)"
    else:
        reason = f"cannot reach {host}:{port} ({exc.strerror or exc})"
    return VenueUnreachable(f"{reason}, for {url}")
