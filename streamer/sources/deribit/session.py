"""The Deribit websocket session: the only Deribit code that touches a socket.

Per connection: ``public/set_heartbeat``, ``public/get_instruments`` per currency,
``public/subscribe`` to ``ticker.{instrument}.{interval}`` in batches paced under the
rate limit, answers to every heartbeat ``test_request``, and a periodic instrument
refresh (new listings subscribed, expired ones dropped). A connection silent for
2.5 heartbeat intervals is dead. Any failure reconnects with capped, jittered
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
from functools import partial
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from streamer.errors import VenueDisconnected, VenueError
from streamer.sources.base import QuoteSink, backoff_delays, is_retryable
from streamer.sources.deribit import protocol
from streamer.sources.deribit.protocol import VENUE, DeribitDecoder

log = logging.getLogger(__name__)

TOO_MANY_REQUESTS = 10028
SILENCE_FACTOR = 2.5
REQUEST_TIMEOUT_S = 10.0


class DeribitSession:
    """Stream Deribit option tickers into a QuoteSink, reconnecting forever."""

    def __init__(self, url: str, currencies: Sequence[str], sink: QuoteSink, *,
                 heartbeat_s: int = 10, subscribe_batch: int = 250, interval: str = "100ms",
                 requests_per_s: float = 3.0, refresh_instruments_s: float = 600.0,
                 on_raw: Callable[[int, bytes], None] | None = None,
                 clock_ns: Callable[[], int] = time.time_ns,
                 rng: random.Random | None = None) -> None:
        self.url = url
        self.currencies = list(currencies)
        self.sink = sink
        self.heartbeat_s = heartbeat_s
        self.subscribe_batch = min(subscribe_batch, 250)
        self.interval = interval
        self.request_gap_s = 1.0 / requests_per_s
        self.refresh_s = refresh_instruments_s
        self._on_raw = on_raw
        self._clock_ns = clock_ns
        self._rng = rng or random.Random()
        self._decoder = DeribitDecoder()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._subscribed: set[str] = set()
        self.connections = 0
        self._subscribed_ok = False

    async def run(self) -> None:
        """Connect, subscribe and stream until cancelled."""
        delays = backoff_delays(rng=self._rng)
        while True:
            try:
                await self._connection()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_retryable(exc):
                    log.error("%s: giving up on %s: %s", VENUE, self.url, exc)
                    raise
                log.warning("%s: connection lost (%s: %s)", VENUE, type(exc).__name__, exc)
            finally:
                self.sink.on_connected(VENUE, False)
                self._fail_waiting()
            self.sink.on_reconnect(VENUE)
            delay = next(delays)
            if self._subscribed_ok:  # a session that streamed resets the backoff
                delays = backoff_delays(rng=self._rng)
                delay = next(delays)
            await asyncio.sleep(delay)

    async def _connection(self) -> None:
        self._subscribed = set()
        self._subscribed_ok = False
        async with connect(self.url, max_size=2**24, ping_interval=None,
                           open_timeout=REQUEST_TIMEOUT_S) as ws:
            self.connections += 1
            reader = asyncio.create_task(self._read(ws), name="deribit-reader")
            try:
                await self._race(reader, self._subscribe_all(ws))
                self._subscribed_ok = True
                self.sink.on_connected(VENUE, True)
                await self._race(reader, self._refresh(ws))
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    @staticmethod
    async def _race(reader: asyncio.Task[None], work: Any) -> None:
        """Run ``work`` while the reader runs; the reader failing first ends both."""
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

    async def _read(self, ws: ClientConnection) -> None:
        timeout = SILENCE_FACTOR * self.heartbeat_s
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
            # cancellation that races a frame arriving, and shutdown then hangs.
            try:
                async with asyncio.timeout(timeout):
                    frame = await ws.recv()
            except TimeoutError as exc:
                raise VenueDisconnected(f"no message for {timeout:.1f}s") from exc
            raw = frame.encode() if isinstance(frame, str) else frame
            received_ns = self._clock_ns()
            if self._on_raw is not None:
                self._on_raw(received_ns, raw)
            decoded = self._decoder.decode(raw, received_ns)
            for quote in decoded.quotes:
                self.sink.on_quote(quote)
            for reason in decoded.rejects:
                self.sink.on_reject(VENUE, reason)
            if decoded.test_request:
                await ws.send(protocol.test_request_reply(next(self._ids)).decode())
            if decoded.platform_state is not None:
                log.warning("%s platform state: %s", VENUE, decoded.platform_state)
            if decoded.response_id is not None:
                self._resolve(decoded)

    def _resolve(self, decoded: protocol.Decoded) -> None:
        future = self._waiting.pop(decoded.response_id or 0, None)
        if future is None or future.done():
            return
        if decoded.error_code is not None:
            retry = decoded.error_code == TOO_MANY_REQUESTS
            error = VenueError(f"error {decoded.error_code}: {decoded.error_message}")
            error.retryable = True if retry else error.retryable
            future.set_exception(error)
        else:
            future.set_result(decoded.result)

    def _fail_waiting(self) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(VenueDisconnected("connection closed"))
                future.exception()  # mark retrieved
        self._waiting.clear()

    async def _call(self, ws: ClientConnection, build: Callable[[int], bytes]) -> Any:
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        await ws.send(build(request_id).decode())
        return await asyncio.wait_for(future, timeout=REQUEST_TIMEOUT_S)

    async def _instruments(self, ws: ClientConnection) -> set[str]:
        names: set[str] = set()
        for currency in self.currencies:
            result = await self._call(ws, partial(protocol.get_instruments_request, currency))
            names.update(r["instrument_name"] for r in result or [] if isinstance(r, dict))
            await asyncio.sleep(self.request_gap_s)
        return names

    async def _subscribe_all(self, ws: ClientConnection) -> None:
        await self._call(ws, lambda i: protocol.set_heartbeat_request(self.heartbeat_s, i))
        await self._subscribe(ws, await self._instruments(ws))

    async def _subscribe(self, ws: ClientConnection, instruments: set[str]) -> None:
        channels = sorted(protocol.ticker_channel(n, self.interval) for n in instruments)
        new = [c for c in channels if c not in self._subscribed]
        for start in range(0, len(new), self.subscribe_batch):
            batch = new[start:start + self.subscribe_batch]
            try:
                await self._call(ws, partial(protocol.subscribe_request, batch))
            except VenueError as exc:
                self.sink.on_reject(VENUE, "subscribe_rejected")
                log.error("%s: subscription rejected: %s", VENUE, exc)
                exc.retryable = True  # back off and try again on a new connection
                raise
            self._subscribed.update(batch)
            await asyncio.sleep(self.request_gap_s)
        log.info("%s: subscribed to %d ticker channels", VENUE, len(self._subscribed))

    async def _refresh(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self._subscribe(ws, await self._instruments(ws))
