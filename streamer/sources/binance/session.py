"""The Binance options websocket session: the only Binance code that touches a socket.

Per connection: ``SUBSCRIBE`` to one ``<underlying>usdt@optionMarkPrice`` stream per
currency (the whole chain of that underlying, every second), each request answered
before the next; a websocket ping every ``heartbeat_s`` whose pong must come back
within ``heartbeat_s`` (Binance has no application-level heartbeat; it pings us
every few minutes and the websockets library answers). A connection with no
event for ``silence_s`` is dead too. Any failure reconnects with capped, jittered
backoff; each connection subscribes every stream exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from streamer.errors import ConfigError, VenueDisconnected, VenueError
from streamer.sources.base import (
    QuoteSink,
    deliver_frame,
    race_reader,
    reconnect_forever,
)
from streamer.sources.binance import protocol
from streamer.sources.binance.protocol import VENUE, BinanceDecoder
from streamer.sources.deribit.protocol import Decoded

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0
MAX_STREAMS = 200  # per connection, Binance's limit


class BinanceSession:
    """Stream Binance option quotes into a QuoteSink, reconnecting forever."""

    def __init__(self, url: str, currencies: Sequence[str], sink: QuoteSink, *,
                 heartbeat_s: float = 20.0, silence_s: float = 60.0, subscribe_batch: int = 50,
                 requests_per_s: float = 4.0, stream_template: str = protocol.MARK_PRICE_STREAM,
                 on_raw: Callable[[int, bytes], None] | None = None,
                 clock_ns: Callable[[], int] = time.time_ns,
                 rng: random.Random | None = None) -> None:
        self.url = url
        self.streams = [protocol.mark_price_stream(c, stream_template) for c in currencies]
        if len(self.streams) > MAX_STREAMS:
            raise ConfigError(f"binance: at most {MAX_STREAMS} streams per connection")
        self.sink = sink
        self.heartbeat_s = heartbeat_s
        self.silence_s = max(silence_s, heartbeat_s)
        self.subscribe_batch = max(1, subscribe_batch)
        self.request_gap_s = 1.0 / requests_per_s  # Binance allows 10 messages/s inbound
        self._on_raw = on_raw
        self._clock_ns = clock_ns
        self._rng = rng or random.Random()
        self._decoder = BinanceDecoder()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._subscribed: set[str] = set()
        self.connections = 0
        self.pongs = 0
        self._subscribed_ok = False

    async def run(self) -> None:
        """Connect, subscribe and stream until cancelled."""
        await reconnect_forever(VENUE, self.url, self._connection, self.sink,
                                streamed=lambda: self._subscribed_ok,
                                on_down=lambda: self._fail_waiting(), rng=self._rng)

    async def _connection(self) -> None:
        self._subscribed = set()
        self._subscribed_ok = False
        async with connect(self.url, max_size=2**24, ping_interval=None,
                           open_timeout=REQUEST_TIMEOUT_S) as ws:
            self.connections += 1
            reader = asyncio.create_task(self._read(ws), name="binance-reader")
            try:
                await race_reader(reader, self._subscribe(ws))
                self._subscribed_ok = True
                self.sink.on_connected(VENUE, True)
                await race_reader(reader, self._ping(ws))
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader


    async def _read(self, ws: ClientConnection) -> None:
        while True:
            try:
                async with asyncio.timeout(self.silence_s):
                    frame = await ws.recv()
            except TimeoutError as exc:
                raise VenueDisconnected(f"no message for {self.silence_s:.1f}s") from exc
            decoded = deliver_frame(frame, VENUE, self._decoder.decode, self.sink, self._clock_ns,
                                    self._on_raw)
            if decoded.response_id is not None:
                self._resolve(decoded)

    def _resolve(self, decoded: Decoded) -> None:
        future = self._waiting.pop(decoded.response_id or 0, None)
        if future is None or future.done():
            return
        if decoded.error_code is not None:
            error = VenueError(f"error {decoded.error_code}: {decoded.error_message}")
            error.retryable = True  # back off and try again on a new connection
            future.set_exception(error)
        else:
            future.set_result(decoded.result)

    def _fail_waiting(self) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(VenueDisconnected("connection closed"))
                future.exception()  # mark retrieved
        self._waiting.clear()

    async def _subscribe(self, ws: ClientConnection) -> None:
        new = [s for s in self.streams if s not in self._subscribed]
        loop = asyncio.get_running_loop()
        for start in range(0, len(new), self.subscribe_batch):
            batch = new[start:start + self.subscribe_batch]
            request_id = next(self._ids)
            future: asyncio.Future[Any] = loop.create_future()
            self._waiting[request_id] = future
            await ws.send(protocol.subscribe_request(batch, request_id).decode())
            try:
                await asyncio.wait_for(future, timeout=REQUEST_TIMEOUT_S)
            except VenueError as exc:
                self.sink.on_reject(VENUE, "subscribe_rejected")
                log.error("%s: subscription rejected: %s", VENUE, exc)
                raise
            self._subscribed.update(batch)
            await asyncio.sleep(self.request_gap_s)
        log.info("%s: subscribed to %s", VENUE, ", ".join(sorted(self._subscribed)))

    async def _ping(self, ws: ClientConnection) -> None:
        """A websocket ping every heartbeat; a pong later than a heartbeat means dead."""
        while True:
            await asyncio.sleep(self.heartbeat_s)
            pong = await ws.ping()
            try:
                async with asyncio.timeout(self.heartbeat_s):
                    await pong
            except TimeoutError as exc:
                raise VenueDisconnected(f"no pong within {self.heartbeat_s:.1f}s") from exc
            self.pongs += 1
