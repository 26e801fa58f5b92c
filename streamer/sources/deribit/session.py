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
failure. Connecting, reading and reconnecting (capped, jittered backoff, reset by a
connection that got as far as streaming) are ``WebsocketSession``'s; each connection
subscribes every channel exactly once.

What to ask, in which order, and what each reply means is ``DeribitConnection``
(connection.py, pure); this module keeps the socket and the timers: it sends what the
connection hands out, feeds it the replies and wakes it at its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence

from websockets.asyncio.client import ClientConnection

from streamer.errors import RateLimited
from streamer.sources.base import QuoteSink
from streamer.sources.decoded import Decoded
from streamer.sources.deribit import protocol
from streamer.sources.deribit.connection import DeribitConnection
from streamer.sources.deribit.normalise import VENUE
from streamer.sources.deribit.protocol import DeribitDecoder
from streamer.sources.listing import DEFAULT_MAX_INSTRUMENTS, Listings
from streamer.sources.ws_session import WebsocketSession

log = logging.getLogger(__name__)

HEARTBEAT_MISS_FACTOR = 2.0  # Deribit beats every interval: two intervals without one is dead
RATE_LIMITED_DELAY_S = 10.0  # time for Deribit's request credits to refill


class DeribitSession(WebsocketSession):
    """Stream Deribit option tickers into a QuoteSink, reconnecting forever."""

    # Only heartbeats count: data still flowing does not prove the session sound.
    sign_of_life = "heartbeat"

    def __init__(self, url: str, currencies: Sequence[str], sink: QuoteSink, *,
                 heartbeat_s: int = 10, subscribe_batch: int = 250, interval: str = "100ms",
                 requests_per_s: float = 3.0, refresh_instruments_s: float = 600.0,
                 max_instruments: int = DEFAULT_MAX_INSTRUMENTS,
                 on_raw: Callable[[int, bytes], None] | None = None,
                 clock_ns: Callable[[], int] = time.time_ns,
                 rng: random.Random | None = None,
                 backoff: Callable[[], Iterator[float]] | None = None,
                 rate_limited_delay_s: float = RATE_LIMITED_DELAY_S) -> None:
        super().__init__(VENUE, url, sink, DeribitDecoder(),
                         silence_s=HEARTBEAT_MISS_FACTOR * heartbeat_s,
                         subscribe_batch=min(subscribe_batch, 250), requests_per_s=requests_per_s,
                         logger=log, on_raw=on_raw, clock_ns=clock_ns, rng=rng, backoff=backoff,
                         # One fixed wait after 10028 (time for the credits to refill).
                         rate_limit_cooldown_s=rate_limited_delay_s,
                         max_cooldown_s=rate_limited_delay_s,
                         # Deribit leaves out channels it cannot serve: ask once more.
                         ask_again=1)
        self.currencies = list(currencies)
        self.heartbeat_s = heartbeat_s
        self.interval = interval
        self.refresh_s = refresh_instruments_s
        self.rate_limited_delay_s = rate_limited_delay_s
        self._locks = protocol.PlatformLocks(self.currencies)
        self._listed = Listings(VENUE, sink, protocol.parse_instrument_name,
                                max_instruments=max_instruments, logger=log)
        self._connection_state = self._new_connection()
        self._wake = asyncio.Event()

    def _new_connection(self) -> DeribitConnection:
        return DeribitConnection(self.currencies, self.sink, heartbeat_s=self.heartbeat_s,
                                 interval=self.interval, refresh_s=self.refresh_s,
                                 request_gap_s=self.request_gap_s,
                                 subscriptions=self.subscriptions, listings=self._listed,
                                 locks=self._locks, on_lock_change=self._lock_changed)

    # -- hooks -----------------------------------------------------------------------
    def reset(self) -> None:
        self.subscriptions.forget_refused()  # not confirmed twice: on this connection only
        self._connection_state = self._new_connection()

    async def subscribe(self, ws: ClientConnection) -> None:
        self._connection_state.start(asyncio.get_running_loop().time())
        await self._drive(ws, until_up=True)

    async def maintain(self, ws: ClientConnection) -> None:
        """Refresh the instrument list every ``refresh_s`` (Deribit sends the heartbeats)."""
        await self._drive(ws, until_up=False)

    def alive(self, decoded: Decoded) -> bool:
        return decoded.heartbeat

    def on_frame(self, decoded: Decoded) -> bytes | None:
        if self._locks.notified(decoded):
            self._lock_changed()
        if decoded.response_id is not None:
            self._reply(decoded)
        if decoded.test_request:
            return protocol.test_request_reply(self._connection_state.next_id())
        return None

    def halted(self) -> bool:
        return self._locks.locked

    # -- receiving -------------------------------------------------------------------
    def _lock_changed(self) -> None:
        """Logged on the change only, however often Deribit repeats the state."""
        if self._locks.locked:
            log.warning("%s: platform locked (%s): reporting the venue down and keeping "
                        "the connection until it is unlocked", VENUE, self._locks.describe())
        else:
            log.warning("%s: platform unlocked: streaming again", VENUE)
        self.report()

    def _reply(self, decoded: Decoded) -> None:
        if isinstance(protocol.reply_error(decoded), RateLimited):
            # Also when the reply answers nothing we wait for.
            log.warning("%s: too_many_requests (10028): Deribit closes the connection; "
                        "reconnecting in %.1fs at the earliest", VENUE,
                        self.cooldown.rate_limited())
        self._connection_state.on_reply(decoded, asyncio.get_running_loop().time())
        self._wake.set()

    # -- sending ---------------------------------------------------------------------
    async def _drive(self, ws: ClientConnection, *, until_up: bool) -> None:
        """Send what the connection hands out; wake it at its deadline or on a reply."""
        loop = asyncio.get_running_loop()
        state = self._connection_state
        while True:
            self._wake.clear()
            state.on_timer(loop.time())
            for request in state.take_outbox():
                await ws.send(request.decode())
            if until_up and state.up:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(state.deadline):
                    await self._wake.wait()
