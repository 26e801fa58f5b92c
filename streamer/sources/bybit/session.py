"""The Bybit option websocket session: the only Bybit code that touches the network.

Per connection: the live options of each base coin from the REST instrument list
(paged), ``subscribe`` to ``tickers.{symbol}`` in batches paced by
``requests_per_s`` (each batch acknowledged before the next), the JSON ping
``{"op": "ping"}`` every ``heartbeat_s`` (Bybit asks for one every 20 s), and a
periodic instrument refresh (new listings subscribed; expired ones simply stop).
A connection with no frame for 2.5 heartbeats is dead. Any failure reconnects with
capped, jittered backoff; each connection subscribes every channel exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
import urllib.request
from collections.abc import Callable, Sequence

from websockets.asyncio.client import ClientConnection, connect

from streamer.errors import VenueDisconnected, VenueError
from streamer.sources.base import (
    QuoteSink,
    deliver_frame,
    race_reader,
    reconnect_forever,
)
from streamer.sources.bybit import protocol
from streamer.sources.bybit.protocol import PONG, VENUE, BybitDecoder
from streamer.sources.deribit.protocol import Decoded

log = logging.getLogger(__name__)

SILENCE_FACTOR = 2.5
REQUEST_TIMEOUT_S = 10.0
MAX_PAGES = 50


def _http_get(url: str, timeout_s: float) -> bytes:
    """GET ``url`` (blocking: run in a thread)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        body: bytes = response.read()
        return body


class BybitSession:
    """Stream Bybit option tickers into a QuoteSink, reconnecting forever."""

    def __init__(self, url: str, currencies: Sequence[str], sink: QuoteSink, *,
                 rest_url: str = protocol.DEFAULT_REST_URL, heartbeat_s: float = 20.0,
                 subscribe_batch: int = 100, requests_per_s: float = 5.0,
                 refresh_instruments_s: float = 600.0,
                 on_raw: Callable[[int, bytes], None] | None = None,
                 clock_ns: Callable[[], int] = time.time_ns,
                 rng: random.Random | None = None) -> None:
        self.url = url
        self.rest_url = rest_url
        self.currencies = list(currencies)
        self.sink = sink
        self.heartbeat_s = heartbeat_s
        self.subscribe_batch = max(1, subscribe_batch)
        self.request_gap_s = 1.0 / requests_per_s
        self.refresh_s = refresh_instruments_s
        self._on_raw = on_raw
        self._clock_ns = clock_ns
        self._rng = rng or random.Random()
        self._decoder = BybitDecoder()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._subscribed: set[str] = set()
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
        self._subscribed = set()
        self._subscribed_ok = False
        async with connect(self.url, max_size=2**24, ping_interval=None,
                           open_timeout=REQUEST_TIMEOUT_S) as ws:
            self.connections += 1
            reader = asyncio.create_task(self._read(ws), name="bybit-reader")
            try:
                await race_reader(reader, self._subscribe_all(ws))
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
            if decoded.result == PONG:
                self.pongs += 1
            elif decoded.result is not None or decoded.error_code is not None:
                self._resolve(decoded)

    def _resolve(self, decoded: Decoded) -> None:
        # The option endpoint may not echo req_id: then the oldest request is answered.
        key = decoded.response_id if decoded.response_id is not None else next(
            iter(self._waiting), None)
        future = self._waiting.pop(key, None) if key is not None else None
        if future is None or future.done():
            return
        if decoded.error_code is not None:
            error = VenueError(f"subscribe refused: {decoded.error_message}")
            error.retryable = True
            future.set_exception(error)
        else:
            future.set_result(None)

    def _fail_waiting(self, error: Exception) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
                future.exception()  # mark retrieved
        self._waiting.clear()

    async def _instruments(self) -> set[str]:
        names: set[str] = set()
        for coin in self.currencies:
            cursor = ""
            for _ in range(MAX_PAGES):
                url = protocol.instruments_url(self.rest_url, coin, cursor)
                try:
                    body = await asyncio.to_thread(_http_get, url, REQUEST_TIMEOUT_S)
                except OSError as exc:  # urllib's errors, HTTP ones included
                    raise VenueDisconnected(f"instrument list: {exc}") from exc
                try:
                    page, cursor = protocol.parse_instruments(body)
                except VenueError as exc:
                    exc.retryable = True
                    raise
                names.update(page)
                if not cursor:
                    break
        return names

    async def _subscribe_all(self, ws: ClientConnection) -> None:
        await self._subscribe(ws, await self._instruments())

    async def _subscribe(self, ws: ClientConnection, symbols: set[str]) -> None:
        topics = sorted(protocol.ticker_topic(s) for s in symbols)
        new = [t for t in topics if t not in self._subscribed]
        loop = asyncio.get_running_loop()
        for start in range(0, len(new), self.subscribe_batch):
            batch = new[start:start + self.subscribe_batch]
            request_id = next(self._ids)
            future: asyncio.Future[None] = loop.create_future()
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
        log.info("%s: subscribed to %d ticker topics", VENUE, len(self._subscribed))

    async def _maintain(self, ws: ClientConnection) -> None:
        """Ping every heartbeat; refresh the instrument list every ``refresh_s``."""
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + self.refresh_s
        while True:
            await asyncio.sleep(self.heartbeat_s)
            await ws.send(protocol.ping_request(next(self._ids)).decode())
            if loop.time() >= next_refresh:
                await self._subscribe(ws, await self._instruments())
                next_refresh = loop.time() + self.refresh_s
