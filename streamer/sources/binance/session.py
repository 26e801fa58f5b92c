"""The Binance options websocket session: the only Binance code that touches a socket.

Per connection: ``SUBSCRIBE`` to one ``<underlying>usdt@optionMarkPrice`` stream per
currency (the whole chain of that underlying, every second), each request answered
before the next; a websocket ping every ``heartbeat_s`` whose pong must come back
within ``heartbeat_s`` (Binance has no application-level heartbeat; it pings us
every few minutes and the websockets library answers). A connection with no
event for ``silence_s`` is dead too. Connecting, reading and reconnecting (capped,
jittered backoff) are ``WebsocketSession``'s; each connection subscribes every
stream exactly once.

Per stream, too: Binance acknowledges any stream name (``{"result": null}``), so a
stream that does not exist, or one that stops while the others on the connection
flow, is silent without an error, and the connection's silence check never fires.
``StreamWatch`` (streams.py, pure) notes when each stream last delivered quotes (a
quote's underlying names its stream); one silent for ``stream_silence_s`` (five of Binance's 1 s
pushes) while another delivered is counted once (``stream_silent``), logged, and
resubscribed alone (``UNSUBSCRIBE`` + ``SUBSCRIBE``) with capped, jittered backoff,
the connection and the other streams untouched, until it delivers again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from functools import partial

from websockets.asyncio.client import ClientConnection

from streamer.errors import ConfigError, VenueDisconnected, VenueError, VenueRefused
from streamer.sources.base import QuoteSink, race_reader
from streamer.sources.binance import protocol
from streamer.sources.binance.protocol import VENUE, BinanceDecoder
from streamer.sources.binance.streams import MAX_RESUBSCRIBE_S, STREAM_SILENCE_S, StreamWatch
from streamer.sources.decoded import Decoded
from streamer.sources.ws_session import WebsocketSession
from streamer.tasks import backoff_delays, cancel_and_wait

log = logging.getLogger(__name__)

MAX_STREAMS = 200  # per connection, Binance's limit
class BinanceSession(WebsocketSession):
    """Stream Binance option quotes into a QuoteSink, reconnecting forever."""

    def __init__(self, url: str, currencies: Sequence[str], sink: QuoteSink, *,
                 heartbeat_s: float = 20.0, silence_s: float = 60.0, subscribe_batch: int = 50,
                 requests_per_s: float = 4.0, stream_template: str = protocol.MARK_PRICE_STREAM,
                 stream_silence_s: float = STREAM_SILENCE_S,
                 on_raw: Callable[[int, bytes], None] | None = None,
                 clock_ns: Callable[[], int] = time.time_ns,
                 rng: random.Random | None = None) -> None:
        # requests_per_s: Binance allows 10 messages/s inbound
        super().__init__(VENUE, url, sink, BinanceDecoder(),
                         silence_s=max(silence_s, heartbeat_s),
                         subscribe_batch=max(1, subscribe_batch), requests_per_s=requests_per_s,
                         logger=log, on_raw=on_raw, clock_ns=clock_ns, rng=rng)
        self.streams = [protocol.mark_price_stream(c, stream_template) for c in currencies]
        if len(self.streams) > MAX_STREAMS:
            raise ConfigError(f"binance: at most {MAX_STREAMS} streams per connection")
        self.heartbeat_s = heartbeat_s
        self.pongs = 0
        # A mark-price stream carries one underlying's chain: its quotes' underlying.
        self._stream_of = {c.upper(): s for c, s in zip(currencies, self.streams, strict=True)}
        self._backoff_rng = rng or random.Random()
        self.watch = self._new_watch(stream_silence_s)

    def _new_watch(self, window_s: float) -> StreamWatch:
        return StreamWatch(window_s, partial(backoff_delays, window_s, max(window_s,
                           MAX_RESUBSCRIBE_S), rng=self._backoff_rng))

    def reset(self) -> None:
        self.watch = self._new_watch(self.watch.window_s)

    async def subscribe(self, ws: ClientConnection) -> None:
        self.subscriptions.want(self.streams)
        await self.subscribe_queued(ws, protocol.subscribe_request)
        subscribed = self.subscriptions.subscribed
        self.watch.expect(subscribed, asyncio.get_running_loop().time())
        log.info("%s: subscribed to %s", VENUE, ", ".join(sorted(subscribed)))

    def on_frame(self, decoded: Decoded) -> bytes | None:
        if decoded.quotes:
            self._seen({q.underlying for q in decoded.quotes})
        if decoded.response_id is None:
            return None
        if decoded.error_code is not None:
            # VenueRefused: back off and try again on a new connection
            self.requests.refuse(decoded.response_id, VenueRefused(
                f"error {decoded.error_code}: {decoded.error_message}"))
        else:
            self.requests.answer(decoded.response_id, decoded.result)
        return None

    def _seen(self, underlyings: set[str]) -> None:
        now = asyncio.get_running_loop().time()
        for underlying in underlyings:
            stream = self._stream_of.get(underlying)
            if stream is None:
                continue
            episode = self.watch.seen(stream, now)
            if episode is not None:
                log.info("%s: %s delivers again, after %.1fs silent and %d resubscribes",
                         VENUE, stream, now - episode.since, episode.resubscribes)

    async def maintain(self, ws: ClientConnection) -> None:
        """Ping (``_ping``) and watch each stream (``_watch_streams``) till either fails."""
        watcher = asyncio.create_task(self._watch_streams(ws), name=f"{VENUE}-streams")
        try:
            await race_reader(watcher, self._ping(ws))  # the watcher failing ends both
        finally:
            await cancel_and_wait(watcher)

    async def _watch_streams(self, ws: ClientConnection) -> None:
        """Resubscribe each stream silent while others flow; a tenth of the window late
        at most."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.watch.window_s / 10)
            for stream, new in self.watch.due(loop.time()):
                if new:
                    self.sink.on_reject(VENUE, "stream_silent")
                    log.warning("%s: no data on %s for %.1fs while other streams flow: "
                                "resubscribing it", VENUE, stream, self.watch.window_s)
                await self._resubscribe(ws, stream)

    async def _resubscribe(self, ws: ClientConnection, stream: str) -> None:
        """``UNSUBSCRIBE`` then ``SUBSCRIBE`` one stream, paced; a refused subscribe is
        counted and logged and the stream tried again later; no answer ends the connection.

        A refused unsubscribe (the stream was not subscribed any more, say) is only
        logged: the subscribe is what brings the stream back.
        """
        log.debug("%s: resubscribing %s", VENUE, stream)
        await self._ask_once(ws, protocol.unsubscribe_request, stream, counted=False)
        await self._ask_once(ws, protocol.subscribe_request, stream, counted=True)

    async def _ask_once(self, ws: ClientConnection, request: Callable[[list[str], int], bytes],
                        stream: str, *, counted: bool) -> None:
        try:
            await self.requests.ask(ws, partial(request, [stream]))
        except VenueDisconnected:
            raise
        except VenueError as exc:
            if counted:
                self.sink.on_reject(VENUE, "subscribe_rejected")
            log.log(logging.ERROR if counted else logging.WARNING, "%s: %s %s refused: %s",
                    VENUE, request.__name__.removesuffix("_request"), stream, exc)
        except TimeoutError as exc:
            raise VenueDisconnected(f"no answer about {stream}") from exc
        await asyncio.sleep(self.request_gap_s)

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
