"""The OKX websocket session: the only OKX code that touches a socket.

Per connection: one ``subscribe`` for ``opt-summary`` and ``index-tickers`` of every
instrument family, acknowledged before the session counts as streaming; then a
``tickers`` subscription for each option the family summaries list, in batches
paced under OKX's 3 requests/s (new listings are picked up as they appear in the
summaries, so no instrument refresh is needed); the text ``ping`` every
``heartbeat_s`` (OKX drops a connection silent for 30 s). A connection with no
frame for 2.5 heartbeats is dead. Any failure reconnects with capped, jittered
backoff; each connection subscribes every channel exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable, Sequence

from websockets.asyncio.client import ClientConnection, connect

from streamer.errors import VenueDisconnected, VenueError
from streamer.sources.base import (
    QuoteSink,
    deliver_frame,
    race_reader,
    reconnect_forever,
)
from streamer.sources.deribit.protocol import Decoded
from streamer.sources.okx import protocol
from streamer.sources.okx.protocol import PONG, VENUE, Ack, Listed, OkxDecoder
from streamer.sources.okx.schema import Arg

log = logging.getLogger(__name__)

SILENCE_FACTOR = 2.5
REQUEST_TIMEOUT_S = 10.0


class OkxSession:
    """Stream OKX option quotes into a QuoteSink, reconnecting forever."""

    def __init__(self, url: str, currencies: Sequence[str], sink: QuoteSink, *,
                 heartbeat_s: float = 20.0, subscribe_batch: int = 200,
                 requests_per_s: float = 3.0,
                 on_raw: Callable[[int, bytes], None] | None = None,
                 clock_ns: Callable[[], int] = time.time_ns,
                 rng: random.Random | None = None) -> None:
        self.url = url
        self.families = [protocol.instrument_family(c) for c in currencies]
        self.sink = sink
        self.heartbeat_s = heartbeat_s
        self.subscribe_batch = max(1, subscribe_batch)
        self.request_gap_s = 1.0 / requests_per_s
        self._on_raw = on_raw
        self._clock_ns = clock_ns
        self._rng = rng or random.Random()
        self._decoder = OkxDecoder()
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._tickers: set[str] = set()  # instruments subscribed or queued on this connection
        self._pending: dict[str, None] = {}  # queued, in arrival order
        self._wake = asyncio.Event()
        self.connections = 0
        self.pongs = 0
        self._subscribed_ok = False

    async def run(self) -> None:
        """Connect, subscribe and stream until cancelled."""
        await reconnect_forever(VENUE, self.url, self._connection, self.sink,
                                streamed=lambda: self._subscribed_ok,
                                on_down=self._connection_lost, rng=self._rng)

    def _connection_lost(self) -> None:
        self._fail_waiting(VenueDisconnected("connection closed"))

    async def _connection(self) -> None:
        self._tickers, self._pending = set(), {}
        self._subscribed_ok = False
        self._decoder = OkxDecoder()  # books and summaries of a lost connection are stale
        async with connect(self.url, max_size=2**24, ping_interval=None,
                           open_timeout=REQUEST_TIMEOUT_S) as ws:
            self.connections += 1
            reader = asyncio.create_task(self._read(ws), name="okx-reader")
            try:
                args = [a for family in self.families for a in protocol.family_args(family)]
                await race_reader(reader, self._subscribe(ws, args, wait=True))
                self._subscribed_ok = True
                self.sink.on_connected(VENUE, True)
                await race_reader(reader, self._maintain(ws))
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader


    async def _read(self, ws: ClientConnection) -> None:
        timeout = SILENCE_FACTOR * self.heartbeat_s
        while True:
            try:
                async with asyncio.timeout(timeout):
                    frame = await ws.recv()
            except TimeoutError as exc:
                raise VenueDisconnected(f"no message for {timeout:.1f}s") from exc
            decoded = deliver_frame(frame, VENUE, self._decoder.decode, self.sink, self._clock_ns,
                                    self._on_raw)
            self._control(decoded)

    def _want(self, listed: Listed) -> None:
        """Queue the options a summary listed that have no ``tickers`` subscription yet."""
        new = [name for name in listed.instruments if name not in self._tickers]
        if new:
            self._tickers.update(new)
            self._pending.update(dict.fromkeys(new))
            self._wake.set()

    def _control(self, decoded: Decoded) -> None:
        if isinstance(decoded.result, Listed):
            self._want(decoded.result)
        elif decoded.result == PONG:
            self.pongs += 1
        elif isinstance(decoded.result, Ack):
            future = self._waiting.pop(decoded.result.key, None)
            if future is not None and not future.done():
                future.set_result(None)
        if decoded.error_code is not None:
            # OKX does not say which argument failed: count it, fail what waits.
            self.sink.on_reject(VENUE, "subscribe_rejected")
            log.error("%s: error %s: %s", VENUE, decoded.error_code, decoded.error_message)
            error = VenueError(f"error {decoded.error_code}: {decoded.error_message}")
            error.retryable = True  # back off and try again on a new connection
            self._fail_waiting(error)
        if decoded.platform_state is not None:
            log.warning("%s notice: %s", VENUE, decoded.platform_state)

    def _fail_waiting(self, error: Exception) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
                future.exception()  # mark retrieved
        self._waiting.clear()

    async def _subscribe(self, ws: ClientConnection, args: list[Arg], *, wait: bool) -> None:
        """Subscribe ``args`` in one request; with ``wait``, until OKX acknowledged each."""
        loop = asyncio.get_running_loop()
        futures = []
        if wait:
            for arg in args:
                future: asyncio.Future[None] = loop.create_future()
                self._waiting[protocol.arg_key(arg)] = future
                futures.append(future)
        await ws.send(protocol.subscribe_request(args).decode())
        if futures:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await asyncio.gather(*futures)

    async def _maintain(self, ws: ClientConnection) -> None:
        """Ping every heartbeat; subscribe queued instruments, paced, in batches."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.heartbeat_s
        next_request = loop.time()
        while True:
            self._wake.clear()
            now = loop.time()
            if self._pending and now >= next_request:
                batch = list(itertools.islice(self._pending, self.subscribe_batch))
                for name in batch:
                    del self._pending[name]
                await self._subscribe(ws, [protocol.ticker_arg(n) for n in batch], wait=False)
                log.info("%s: subscribed to %d tickers", VENUE, len(self._tickers) - len(
                    self._pending))
                next_request = loop.time() + self.request_gap_s
            if now >= next_ping:
                await ws.send(protocol.PING)
                next_ping = now + self.heartbeat_s
            wake_at = min(next_ping, next_request) if self._pending else next_ping
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(wake_at):
                    await self._wake.wait()
