"""The Binance options websocket session: the only Binance code that touches a socket.

Per connection: ``SUBSCRIBE`` to one ``<underlying>usdt@optionMarkPrice`` stream per
currency (the whole chain of that underlying, every second), each request answered
before the next; a websocket ping every ``heartbeat_s`` whose pong must come back
within ``heartbeat_s`` (Binance has no application-level heartbeat; it pings us
every few minutes and the websockets library answers). A connection with no
event for ``silence_s`` is dead too. Connecting, reading and reconnecting (capped,
jittered backoff) are ``WebsocketSession``'s; each connection subscribes every
stream exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence

from websockets.asyncio.client import ClientConnection

from streamer.errors import ConfigError, VenueDisconnected, VenueError
from streamer.sources.base import QuoteSink
from streamer.sources.binance import protocol
from streamer.sources.binance.protocol import VENUE, BinanceDecoder
from streamer.sources.decoded import Decoded
from streamer.sources.ws_session import WebsocketSession

log = logging.getLogger(__name__)

MAX_STREAMS = 200  # per connection, Binance's limit


class BinanceSession(WebsocketSession):
    """Stream Binance option quotes into a QuoteSink, reconnecting forever."""

    def __init__(self, url: str, currencies: Sequence[str], sink: QuoteSink, *,
                 heartbeat_s: float = 20.0, silence_s: float = 60.0, subscribe_batch: int = 50,
                 requests_per_s: float = 4.0, stream_template: str = protocol.MARK_PRICE_STREAM,
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
        self._subscribed: set[str] = set()
        self.pongs = 0

    def reset(self) -> None:
        self._subscribed = set()

    async def subscribe(self, ws: ClientConnection) -> None:
        new = [s for s in self.streams if s not in self._subscribed]
        await self.subscribe_in_batches(ws, new, protocol.subscribe_request, self._subscribed)
        log.info("%s: subscribed to %s", VENUE, ", ".join(sorted(self._subscribed)))

    def on_frame(self, decoded: Decoded) -> bytes | None:
        if decoded.response_id is None:
            return None
        if decoded.error_code is not None:
            error = VenueError(f"error {decoded.error_code}: {decoded.error_message}")
            error.retryable = True  # back off and try again on a new connection
            self.requests.refuse(decoded.response_id, error)
        else:
            self.requests.answer(decoded.response_id, decoded.result)
        return None

    async def maintain(self, ws: ClientConnection) -> None:
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
