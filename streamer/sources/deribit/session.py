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
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial

import msgspec
from websockets.asyncio.client import ClientConnection

from streamer.errors import RateLimited, VenueDisconnected, VenueError, VenueRefused
from streamer.sources.base import QuoteSink
from streamer.sources.decoded import Decoded
from streamer.sources.deribit import protocol
from streamer.sources.deribit.normalise import VENUE
from streamer.sources.deribit.protocol import (
    PLATFORM_STATE,
    DeribitDecoder,
    volatility_index_channel,
)
from streamer.sources.deribit.schema import PlatformStatus
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

    # -- hooks -----------------------------------------------------------------------
    def reset(self) -> None:
        self.subscriptions.forget_refused()  # not confirmed twice: on this connection only

    async def subscribe(self, ws: ClientConnection) -> None:
        await self.requests.ask(ws, partial(protocol.set_heartbeat_request, self.heartbeat_s))
        tickers = self._tickers(await self._instruments(ws))
        await self._subscribe_channels(ws, [PLATFORM_STATE, *self._indices(), *tickers])
        await self._platform_status(ws)

    async def maintain(self, ws: ClientConnection) -> None:
        """Refresh the instrument list every ``refresh_s`` (Deribit sends the heartbeats)."""
        while True:
            await asyncio.sleep(self.refresh_s)
            listed = await self._instruments(ws)
            await self._unsubscribe_delisted(ws, listed)
            await self._subscribe_channels(ws, self._tickers(listed))

    def alive(self, decoded: Decoded) -> bool:
        return decoded.heartbeat

    def on_frame(self, decoded: Decoded) -> bytes | None:
        if self._locks.notified(decoded):
            self._lock_changed()
        if decoded.response_id is not None:
            self._resolve(decoded)
        if decoded.test_request:
            return protocol.test_request_reply(self.requests.next_id())
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

    def _resolve(self, decoded: Decoded) -> None:
        error = protocol.reply_error(decoded)
        if isinstance(error, RateLimited):
            # Also when the reply answers nothing we wait for.
            log.warning("%s: too_many_requests (10028): Deribit closes the connection; "
                        "reconnecting in %.1fs at the earliest", VENUE,
                        self.cooldown.rate_limited())
        if error is None:
            self.requests.answer(decoded.response_id, decoded.result)
        else:
            self.requests.refuse(decoded.response_id, error)

    # -- requests --------------------------------------------------------------------
    async def _platform_status(self, ws: ClientConnection) -> None:
        """Locks in force now: notifications sent while we were away were missed."""
        try:
            status = msgspec.convert(await self.requests.ask(ws, protocol.status_request),
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
            request = partial(protocol.get_instruments_request, currency)
            result = await self.requests.ask(ws, request)
            self._listed.update(currency, protocol.instrument_names(result))
            await asyncio.sleep(self.request_gap_s)
        return self._listed.names()

    def _tickers(self, instruments: Iterable[str]) -> list[str]:
        return sorted(protocol.ticker_channel(n, self.interval) for n in instruments)

    async def _subscribe_channels(self, ws: ClientConnection, channels: list[str]) -> None:
        new = self.subscriptions.want(channels)
        await self.subscribe_queued(ws, protocol.subscribe_request,
                                    unconfirmed=protocol.unconfirmed)
        if new:
            log.info("%s: subscribed to %d channels", VENUE, len(self.subscriptions.subscribed))

    def batch_refused(self, batch: list[str], exc: VenueError) -> None:
        """Every channel of the request counted; the connection ends, retryable."""
        self._count_rejected(batch)
        log.error("%s: subscription of %d channel(s) refused (%s): %s; reconnecting "
                  "with backoff", VENUE, len(batch), exc, _some(batch))
        raise VenueRefused(str(exc)) from exc  # back off; a new connection asks again

    def left_out(self, names: Sequence[str]) -> None:
        self._count_rejected(list(names))
        log.error("%s: %d channel(s) not confirmed twice, left out on this "
                  "connection: %s", VENUE, len(names), _some(names))

    def _indices(self) -> list[str]:
        """DVOL of every currency, published beside our own variance index."""
        return [volatility_index_channel(c) for c in self.currencies]

    def _count_rejected(self, channels: list[str]) -> None:
        for _ in channels:
            self.sink.on_reject(VENUE, "subscribe_rejected")

    async def _unsubscribe_delisted(self, ws: ClientConnection, listed: set[str]) -> None:
        wanted = {PLATFORM_STATE, *self._indices(), *self._tickers(listed)}
        gone = self.subscriptions.delisted(wanted)
        for batch in gone:
            await self.requests.ask(ws, partial(protocol.unsubscribe_request, batch))
            self.subscriptions.unsubscribed(batch)
            await asyncio.sleep(self.request_gap_s)
        if gone:
            names = [c for batch in gone for c in batch]
            log.info("%s: unsubscribed %d channel(s) of delisted instruments: %s", VENUE,
                     len(names), _some(names))


def _some(channels: Sequence[str], shown: int = 5) -> str:
    """The first few channels, for a log line."""
    more = len(channels) - shown
    return ", ".join(channels[:shown]) + (f" and {more} more" if more > 0 else "")
