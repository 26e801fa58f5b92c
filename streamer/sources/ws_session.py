"""The websocket session skeleton every venue session fills in.

Per connection: ``reset`` the venue's per-connection state, connect, start a reader,
run the venue's ``subscribe`` while the reader runs, report the venue up, then run
its ``maintain`` (pings, instrument refreshes) until the connection fails. The
reader stamps, records and decodes each frame (``deliver_frame``), hands it to the
venue's ``on_frame`` and sends the reply that asks for, if any; it ends the
connection when no sign of life came for ``silence_s``. ``run`` reconnects forever
with capped, jittered backoff (``reconnect_forever``); requests still waiting when
a connection ends are failed.

A frame the decoder marks ``rate_limited`` (OKX 60014, Bybit's "too many requests",
Binance -1003) is counted under that reason by ``deliver_frame`` and ends the
connection at once; the next one waits at least a cooldown (``cooldown_s``) that
doubles with each rate-limited connection in a row, from ``rate_limit_cooldown_s``
up to ``MAX_COOLDOWN_S``, and starts over once a connection streams (``Cooldown``,
cooldown.py; Deribit's 10028 uses the same with one fixed wait).

What a connection has subscribed and was refused is ``subscriptions`` (pure, shared:
subscriptions.py); ``subscribe_queued`` asks for its queued batches, one answered
before the next, paced. A channel the venue refuses while the others are confirmed is
counted once as ``subscribe_rejected`` and logged (``left_out``); the connection goes
on. A request refused outright (``batch_refused``) ends the connection.

A venue session subclasses ``WebsocketSession`` and keeps only what is its own: what
it subscribes to, its ping, how it matches replies to requests.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from functools import partial
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect

from streamer.errors import RateLimited, VenueDisconnected, VenueError
from streamer.sources.base import (
    RATE_LIMITED,
    QuoteSink,
    deliver_frame,
    race_reader,
    reconnect_forever,
    unreachable,
)
from streamer.sources.cooldown import Cooldown
from streamer.sources.decoded import Decoded
from streamer.sources.pending import REQUEST_TIMEOUT_S, PendingRequests
from streamer.sources.subscriptions import Subscriptions
from streamer.tasks import backoff_delays, cancel_and_wait

CLOSE_TIMEOUT_S = 1.0
# The venues' rate windows are a second (OKX: 3 subscribe requests/s per IP; Binance:
# 10 incoming messages/s; Bybit documents none for subscribes): wait one, then twice as
# long each time the venue still says we are too fast, never more than a minute.
RATE_LIMIT_COOLDOWN_S = 1.0
MAX_COOLDOWN_S = 60.0
#: The reader hands the loop back after handling frames this long since its last pause:
#: frames the socket has queued come back from ``recv`` without a suspension, so a burst
#: (a reconnect's snapshot, a stalled loop catching up) would otherwise decode in one
#: step and delay every timer, heartbeat and Kafka send behind it. Only the handling is
#: counted, not recv's waits: a trickle of frames pauses once per 2 ms of handling in
#: all, which costs one loop turn.
YIELD_AFTER_S = 0.002
#: The most bytes one socket read takes (asyncio's default is 256 KiB): websockets parses
#: every frame of a read in one callback, and a full read of a backed-up socket was
#: ~300 ticker frames, 10-30 ms of parsing in one loop step. 32 KiB is ~40 frames.
READ_CHUNK_BYTES = 32 * 1024


class FrameDecoder(Protocol):
    """A venue's decoder, as the session uses it."""

    def decode(self, raw: bytes, received_ns: int) -> Decoded:
        """Quotes, rejects and control events of one raw frame."""


class WebsocketSession(abc.ABC):
    """Connect, subscribe, stream and reconnect; the venue fills in the hooks.

    Hooks: ``reset``, ``subscribe`` and ``maintain`` (required), ``on_frame``, and for
    venues that need them ``alive``, ``halted`` and ``cooldown_s``.
    """

    sign_of_life = "message"  # what ``alive`` looks for, named in the silence error

    def __init__(self, venue: str, url: str, sink: QuoteSink, decoder: FrameDecoder, *,
                 silence_s: float, subscribe_batch: int, requests_per_s: float,
                 logger: logging.Logger, on_raw: Callable[[int, bytes], None] | None,
                 clock_ns: Callable[[], int], rng: random.Random | None,
                 backoff: Callable[[], Iterator[float]] | None = None,
                 rate_limit_cooldown_s: float = RATE_LIMIT_COOLDOWN_S,
                 max_cooldown_s: float = MAX_COOLDOWN_S, ask_again: int = 0,
                 step_clock: Callable[[], float] = time.perf_counter) -> None:
        self.venue = venue
        self.url = url
        self.sink = sink
        self.silence_s = silence_s
        self.subscribe_batch = subscribe_batch
        self.subscriptions = Subscriptions(subscribe_batch, ask_again=ask_again)
        self.request_gap_s = 1.0 / requests_per_s  # pacing, under the venue's rate limit
        self.connections = 0
        self.requests = PendingRequests()
        self._decoder = decoder
        self._last_sign = 0.0  # loop time of the latest sign of life (``alive``)
        self._log = logger
        self._on_raw = on_raw
        self._clock_ns = clock_ns
        self._step_clock = step_clock  # seconds, for YIELD_AFTER_S only
        self._backoff = backoff or partial(backoff_delays, rng=rng or random.Random())
        self._streaming = False  # this connection is subscribed
        self._streamed = False  # market data flowed on the last connection
        self._up = False  # what the sink was last told
        self.cooldown = Cooldown(rate_limit_cooldown_s, max_cooldown_s)
        #: Why the latest attempt could not connect (None once one did): names the host.
        self.last_error: str | None = None

    # -- hooks -------------------------------------------------------------------------
    @abc.abstractmethod
    def reset(self) -> None:
        """Forget what the previous connection subscribed (each subscribes everything)."""

    @abc.abstractmethod
    async def subscribe(self, ws: ClientConnection) -> None:
        """Subscribe everything; the venue is reported up when this returns."""

    @abc.abstractmethod
    async def maintain(self, ws: ClientConnection) -> None:
        """Keep the connection alive and current (pings, refreshes) until it fails."""

    def on_frame(self, decoded: Decoded) -> bytes | None:
        """Handle a frame's control events; returns a reply to send at once, if any."""
        return None

    def alive(self, decoded: Decoded) -> bool:
        """Whether the frame proves the connection sound (any frame, unless overridden)."""
        return True

    def halted(self) -> bool:
        """Whether the venue says it is not trading, though the connection is fine."""
        return False

    def cooldown_s(self) -> float | None:
        """The least wait before reconnecting that the venue asked for; None if none."""
        return self.cooldown.asked_s

    # -- the skeleton ------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, subscribe and stream until cancelled."""
        await reconnect_forever(self.venue, self.url, self._connection, self.sink,
                                streamed=lambda: self._streamed, on_down=self._down,
                                backoff=self._backoff, cooldown_s=self.cooldown_s,
                                logger=self._log)

    def report(self) -> None:
        """Tell the sink the venue is up (streaming, not halted) or down, on a change only."""
        up = self._streaming and not self.halted()
        if up != self._up:
            self._up = up
            self.sink.on_connected(self.venue, up)

    def _down(self) -> None:
        self._streaming = self._up = False  # the runner has told the sink "down"
        self.requests.fail_all(VenueDisconnected("connection closed"))

    async def _connection(self) -> None:
        self._streamed = False
        self.cooldown.connection_started()
        self.subscriptions.new_connection()
        self.reset()
        # close_timeout: once the reader is cancelled nobody drains the socket, so the
        # venue's closing frame may never be read; give up on the handshake after 1 s.
        try:
            ws = await connect(self.url, max_size=2**24, ping_interval=None,
                               open_timeout=REQUEST_TIMEOUT_S, close_timeout=CLOSE_TIMEOUT_S)
        except OSError as exc:  # DNS, refused, unreachable, timed out: no connection at all
            error = unreachable(self.url, exc)
            self.last_error = str(error)
            raise error from exc
        self.last_error = None
        limit_reads(ws, READ_CHUNK_BYTES)
        async with ws:
            self.connections += 1
            reader = asyncio.create_task(self._read(ws), name=f"{self.venue}-reader")
            try:
                await race_reader(reader, self.subscribe(ws))
                self._streaming = self._streamed = True
                self.report()
                await race_reader(reader, self.maintain(ws))
            finally:
                await cancel_and_wait(reader)
                self.cooldown.connection_ended(self._streamed)

    async def _read(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        self._last_sign = loop.time()
        while True:
            deadline = self._last_sign + self.silence_s
            if loop.time() >= deadline:
                raise VenueDisconnected(f"no {self.sign_of_life} for {self.silence_s:.1f}s")
            # One timeout per silence window, not one per frame (a timer handle per frame
            # was a tenth of the service's CPU at 20k frames/s): when it fires, the loop
            # above checks the latest sign of life. Cancelling recv() loses no frame.
            # asyncio.timeout_at, not wait_for: on 3.11 wait_for can swallow a
            # cancellation that races a frame arriving, and shutdown then hangs.
            window = asyncio.timeout_at(deadline)
            try:
                async with window:
                    await self._read_frames(ws, loop)
            except TimeoutError:
                if not window.expired():  # not the window's: a real error
                    raise

    async def _read_frames(self, ws: ClientConnection, loop: asyncio.AbstractEventLoop) -> None:
        busy_s = 0.0  # handling frames since the last pause (recv's own waits not counted)
        while True:
            frame = await ws.recv()
            started = self._step_clock()
            decoded = deliver_frame(frame, self.venue, self._decoder.decode, self.sink,
                                    self._clock_ns, self._on_raw)
            if decoded.quotes:
                # Market data flowed: a sound connection, whether or not the whole
                # subscription completed before it dropped (a venue dropping every few
                # seconds must not push the backoff up while it streams).
                self._streamed = True
            if self.alive(decoded):
                self._last_sign = loop.time()
            if RATE_LIMITED in decoded.rejects:
                self._cool_down(decoded)
            reply = self.on_frame(decoded)
            busy_s += self._step_clock() - started
            if reply is not None:
                await ws.send(reply.decode())
            if busy_s >= YIELD_AFTER_S:
                busy_s = 0.0
                await asyncio.sleep(0)  # see YIELD_AFTER_S

    def _cool_down(self, decoded: Decoded) -> None:
        """Counted already (a decoder reject): cool down, and end the connection."""
        wait_s = self.cooldown.rate_limited()
        detail = (f"error {decoded.error_code}: {decoded.error_message}"  # -1: Bybit, no code
                  if decoded.error_code not in (None, -1) else decoded.error_message)
        self._log.error("%s: rate limited (%s): reconnecting in %.1fs at the earliest",
                        self.venue, detail, wait_s)
        raise RateLimited(detail)

    # -- helpers for the hooks -----------------------------------------------------------
    async def subscribe_queued(
            self, ws: ClientConnection, request: Callable[[list[str], int], bytes],
            unconfirmed: Callable[[list[str], Any], Collection[str]] = lambda *_: ()
    ) -> list[str]:
        """Ask for every batch ``subscriptions`` has queued, each answered before the next,
        paced; returns the channels refused meanwhile.

        Of an accepted batch, the channels its answer leaves ``unconfirmed`` are asked
        again if the venue gets another ask (``ask_again``), else ``left_out`` (counted,
        logged). A batch refused outright goes to ``batch_refused``, which ends the
        connection (the next one asks again after backoff).
        """
        left_out: list[str] = []
        while (batch := self.subscriptions.next_batch()) is not None:
            try:
                answer = await self.ask_subscribe(ws, batch, request)
            except VenueError as exc:
                self.subscriptions.refused_all()
                if isinstance(exc, VenueDisconnected | RateLimited):
                    raise
                self.batch_refused(batch, exc)
                raise
            refused = self.subscriptions.answered(unconfirmed(batch, answer))
            if refused:
                self.left_out(refused)
                left_out += refused
            await asyncio.sleep(self.request_gap_s)
        return left_out

    async def ask_subscribe(self, ws: ClientConnection, batch: list[str],
                            request: Callable[[list[str], int], bytes]) -> Any:
        """Send one subscribe request and return its answer (or raise its refusal); by
        request id, unless the venue answers otherwise (OKX: by channel)."""
        return await self.requests.ask(ws, partial(request, batch))

    def batch_refused(self, batch: list[str], exc: VenueError) -> None:
        """The venue refused a whole subscribe request: counted once, logged; ``exc``
        (raised on return, or the venue's own error raised here) ends the connection."""
        self.sink.on_reject(self.venue, "subscribe_rejected")
        self._log.error("%s: subscription rejected: %s", self.venue, exc)

    def left_out(self, names: Sequence[str]) -> None:
        """Channels an accepted request did not confirm: ``refused``."""
        self.refused(names)

    def refused(self, names: Sequence[str], detail: str = "") -> None:
        """Count each channel the venue refused once, in one log line naming them."""
        for _ in names:
            self.sink.on_reject(self.venue, "subscribe_rejected")
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        self._log.error("%s: %d channel(s) refused%s, left out (the others stream): %s",
                        self.venue, len(names), f" ({detail})" if detail else "", shown)


def limit_reads(ws: ClientConnection, max_bytes: int) -> None:
    """Take at most ``max_bytes`` from the socket per read (see ``READ_CHUNK_BYTES``).

    ``max_size`` is the read size of asyncio's selector transports, an attribute and
    not an API: a transport without one (another event loop) is left as it is, and so
    is TLS (``wss://``, every live venue), whose transport hands the parser all it
    decrypted at once; there the reader's yield after ``YIELD_AFTER_S`` of frames is
    what bounds a loop step.
    """
    transport = ws.transport
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = max_bytes  # type: ignore[attr-defined]
