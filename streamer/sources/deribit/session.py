"""The Deribit websocket session: the only Deribit code that touches a socket.

Per connection: ``public/set_heartbeat``; ``public/get_instruments`` per currency;
``public/subscribe`` to ``platform_state`` and ``ticker.{instrument}.{interval}`` in
batches paced under the rate limit, each reply's channel list checked (a channel
left out is asked for once more, then counted as ``subscribe_rejected`` and left
alone for the rest of the connection); ``public/status`` for locks already in
force; an answer to every heartbeat ``test_request``; and a periodic instrument
refresh (new listings subscribed, expired ones unsubscribed and dropped).

The sink hears "up" once everything is subscribed, "down" while Deribit reports
maintenance or a lock on one of our price indices (the connection is kept, and
"up" again on unlock), and "down" when the connection ends. A connection ends when
no heartbeat came for two intervals, when Deribit refuses a subscription (counted
and logged), on error 10028 too_many_requests (Deribit closes the connection too;
the next attempt waits at least ``rate_limited_delay_s``), or on any network
failure. Reconnects use capped, jittered backoff, reset by a connection that got as
far as streaming; each connection subscribes every channel exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect

from streamer.errors import VenueDisconnected, VenueError
from streamer.sources.base import (
    QuoteSink,
    backoff_delays,
    deliver_frame,
    is_retryable,
    race_reader,
)
from streamer.sources.deribit import protocol
from streamer.sources.deribit.protocol import PLATFORM_STATE, VENUE, DeribitDecoder
from streamer.sources.deribit.schema import PlatformStatus

log = logging.getLogger(__name__)

TOO_MANY_REQUESTS = 10028
HEARTBEAT_MISS_FACTOR = 2.0  # Deribit beats every interval: two intervals without one is dead
REQUEST_TIMEOUT_S = 10.0
RATE_LIMITED_DELAY_S = 10.0  # time for Deribit's request credits to refill


class RateLimited(VenueError):
    """Deribit answered 10028 too_many_requests (and closes the connection)."""

    retryable = True


class DeribitSession:
    """Stream Deribit option tickers into a QuoteSink, reconnecting forever."""

    def __init__(self, url: str, currencies: Sequence[str], sink: QuoteSink, *,
                 heartbeat_s: int = 10, subscribe_batch: int = 250, interval: str = "100ms",
                 requests_per_s: float = 3.0, refresh_instruments_s: float = 600.0,
                 on_raw: Callable[[int, bytes], None] | None = None,
                 clock_ns: Callable[[], int] = time.time_ns,
                 rng: random.Random | None = None,
                 backoff: Callable[[], Iterator[float]] | None = None,
                 rate_limited_delay_s: float = RATE_LIMITED_DELAY_S) -> None:
        self.url = url
        self.currencies = list(currencies)
        self.sink = sink
        self.heartbeat_s = heartbeat_s
        self.subscribe_batch = min(subscribe_batch, 250)
        self.interval = interval
        self.request_gap_s = 1.0 / requests_per_s
        self.refresh_s = refresh_instruments_s
        self.rate_limited_delay_s = rate_limited_delay_s
        self._on_raw = on_raw
        self._clock_ns = clock_ns
        self._backoff = backoff or partial(backoff_delays, rng=rng or random.Random())
        self._decoder = DeribitDecoder()
        self._locks = protocol.PlatformLocks(self.currencies)
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._listed: dict[str, set[str]] = {}  # currency -> instruments last listed
        self._subscribed: set[str] = set()  # confirmed on this connection
        self._refused: set[str] = set()  # not confirmed twice on this connection
        self.connections = 0
        self._streaming = False  # this connection is subscribed
        self._streamed = False  # the last connection got as far as streaming
        self._rate_limited = False  # the last connection was told 10028
        self._up = False  # what the sink was last told

    async def run(self) -> None:
        """Connect, subscribe and stream until cancelled."""
        delays = self._backoff()
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
                self._streaming = self._up = False
                self.sink.on_connected(VENUE, False)
                self._fail_waiting()
            self.sink.on_reconnect(VENUE)
            if self._streamed and not self._rate_limited:
                delays = self._backoff()  # a connection that streamed resets the backoff
            delay = next(delays)
            if self._rate_limited:
                delay = max(delay, self.rate_limited_delay_s)
            log.info("%s: reconnecting in %.2fs", VENUE, delay)
            await asyncio.sleep(delay)

    async def _connection(self) -> None:
        self._subscribed, self._refused = set(), set()
        self._streamed = self._rate_limited = False
        async with connect(self.url, max_size=2**24, ping_interval=None,
                           open_timeout=REQUEST_TIMEOUT_S) as ws:
            self.connections += 1
            reader = asyncio.create_task(self._read(ws), name="deribit-reader")
            try:
                await race_reader(reader, self._start(ws))
                self._streaming = self._streamed = True
                self._report()
                await race_reader(reader, self._refresh(ws))
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader


    # -- receiving -------------------------------------------------------------------
    async def _read(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        limit = HEARTBEAT_MISS_FACTOR * self.heartbeat_s
        last_beat = loop.time()
        while True:
            # asyncio.timeout_at, not wait_for: on 3.11 wait_for can swallow a
            # cancellation that races a frame arriving, and shutdown then hangs.
            # Only heartbeats count: data still flowing does not prove the session sound.
            try:
                async with asyncio.timeout_at(last_beat + limit):
                    frame = await ws.recv()
            except TimeoutError as exc:
                raise VenueDisconnected(f"no heartbeat for {limit:.1f}s") from exc
            decoded = self._decode(frame)
            if decoded.heartbeat:
                last_beat = loop.time()
            if decoded.test_request:
                await ws.send(protocol.test_request_reply(next(self._ids)).decode())
            if decoded.platform is not None and self._locks.apply(decoded.platform):
                self._lock_changed()
            if decoded.response_id is not None:
                self._resolve(decoded)

    def _decode(self, frame: str | bytes) -> protocol.Decoded:
        return deliver_frame(frame, VENUE, self._decoder.decode, self.sink, self._clock_ns,
                             self._on_raw)

    def _lock_changed(self) -> None:
        """Logged on the change only, however often Deribit repeats the state."""
        if self._locks.locked:
            log.warning("%s: platform locked (%s): reporting the venue down and keeping "
                        "the connection until it is unlocked", VENUE, self._locks.describe())
        else:
            log.warning("%s: platform unlocked: streaming again", VENUE)
        self._report()

    def _report(self) -> None:
        up = self._streaming and not self._locks.locked
        if up != self._up:
            self._up = up
            self.sink.on_connected(VENUE, up)

    def _resolve(self, decoded: protocol.Decoded) -> None:
        if decoded.error_code == TOO_MANY_REQUESTS:
            self._rate_limited = True  # also when the reply answers nothing we wait for
            log.warning("%s: too_many_requests (10028): Deribit closes the connection; "
                        "reconnecting in %.1fs at the earliest", VENUE,
                        self.rate_limited_delay_s)
        future = self._waiting.pop(decoded.response_id or 0, None)
        if future is None or future.done():
            return
        if decoded.error_code is not None:
            kind = RateLimited if decoded.error_code == TOO_MANY_REQUESTS else VenueError
            future.set_exception(kind(f"error {decoded.error_code}: {decoded.error_message}"))
        else:
            future.set_result(decoded.result)

    def _fail_waiting(self) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(VenueDisconnected("connection closed"))
                future.exception()  # mark retrieved
        self._waiting.clear()

    # -- requests --------------------------------------------------------------------
    async def _call(self, ws: ClientConnection, build: Callable[[int], bytes]) -> Any:
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        await ws.send(build(request_id).decode())
        return await asyncio.wait_for(future, timeout=REQUEST_TIMEOUT_S)

    async def _start(self, ws: ClientConnection) -> None:
        await self._call(ws, partial(protocol.set_heartbeat_request, self.heartbeat_s))
        tickers = self._tickers(await self._instruments(ws))
        await self._subscribe(ws, [PLATFORM_STATE, *tickers])
        await self._platform_status(ws)

    async def _platform_status(self, ws: ClientConnection) -> None:
        """Locks in force now: notifications sent while we were away were missed."""
        try:
            status = msgspec.convert(await self._call(ws, protocol.status_request),
                                     PlatformStatus)
        except (RateLimited, VenueDisconnected):
            raise
        except (VenueError, msgspec.ValidationError) as exc:
            log.warning("%s: public/status unusable (%s); locks as last notified", VENUE, exc)
            return
        if self._locks.reset(status):
            self._lock_changed()

    async def _instruments(self, ws: ClientConnection) -> set[str]:
        for currency in self.currencies:
            result = await self._call(ws, partial(protocol.get_instruments_request, currency))
            names = protocol.instrument_names(result)
            if names or not self._listed.get(currency):
                self._listed[currency] = names
            else:  # one empty answer must not unsubscribe a whole currency
                log.warning("%s: no %s options listed; keeping the %d known", VENUE, currency,
                            len(self._listed[currency]))
            await asyncio.sleep(self.request_gap_s)
        return set().union(*self._listed.values())

    def _tickers(self, instruments: Iterable[str]) -> list[str]:
        return sorted(protocol.ticker_channel(n, self.interval) for n in instruments)

    def _batches(self, channels: list[str]) -> Iterator[list[str]]:
        for start in range(0, len(channels), self.subscribe_batch):
            yield channels[start:start + self.subscribe_batch]

    async def _subscribe(self, ws: ClientConnection, channels: list[str]) -> None:
        new = [c for c in channels if c not in self._subscribed and c not in self._refused]
        for batch in self._batches(new):
            missing = await self._subscribe_batch(ws, batch)
            if missing:  # Deribit leaves out channels it cannot serve: ask once more
                missing = await self._subscribe_batch(ws, missing)
            if missing:
                self._refused.update(missing)
                self._count_rejected(missing)
                log.error("%s: %d channel(s) not confirmed twice, left out on this "
                          "connection: %s", VENUE, len(missing), _some(missing))
        if new:
            log.info("%s: subscribed to %d channels", VENUE, len(self._subscribed))

    async def _subscribe_batch(self, ws: ClientConnection, batch: list[str]) -> list[str]:
        """Subscribe ``batch``; returns the channels the reply did not confirm."""
        try:
            result = await self._call(ws, partial(protocol.subscribe_request, batch))
        except (RateLimited, VenueDisconnected):
            raise
        except VenueError as exc:
            self._count_rejected(batch)
            log.error("%s: subscription of %d channel(s) refused (%s): %s; reconnecting "
                      "with backoff", VENUE, len(batch), exc, _some(batch))
            exc.retryable = True  # back off and try again on a new connection
            raise
        missing = protocol.unconfirmed(batch, result)
        self._subscribed.update(set(batch).difference(missing))
        await asyncio.sleep(self.request_gap_s)
        return missing

    def _count_rejected(self, channels: list[str]) -> None:
        for _ in channels:
            self.sink.on_reject(VENUE, "subscribe_rejected")

    async def _unsubscribe_delisted(self, ws: ClientConnection, listed: set[str]) -> None:
        wanted = {PLATFORM_STATE, *self._tickers(listed)}
        self._refused &= wanted
        gone = sorted(self._subscribed - wanted)
        for batch in self._batches(gone):
            await self._call(ws, partial(protocol.unsubscribe_request, batch))
            self._subscribed.difference_update(batch)
            await asyncio.sleep(self.request_gap_s)
        if gone:
            log.info("%s: unsubscribed %d channel(s) of delisted instruments: %s", VENUE,
                     len(gone), _some(gone))

    async def _refresh(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            listed = await self._instruments(ws)
            await self._unsubscribe_delisted(ws, listed)
            await self._subscribe(ws, self._tickers(listed))


def _some(channels: Sequence[str], shown: int = 5) -> str:
    """The first few channels, for a log line."""
    more = len(channels) - shown
    return ", ".join(channels[:shown]) + (f" and {more} more" if more > 0 else "")
