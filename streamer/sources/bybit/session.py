"""The Bybit option websocket session: the only Bybit code that touches the network.

Per connection: the live options of each base coin from the REST instrument list
(paged), ``subscribe`` to ``tickers.{symbol}`` in batches paced by
``requests_per_s`` (each batch acknowledged before the next), the JSON ping
``{"op": "ping"}`` every ``heartbeat_s`` (Bybit asks for one every 20 s), and a
periodic instrument refresh (new listings subscribed, delisted ones unsubscribed).
A topic Bybit lists in ``failTopics`` (an option expiring, say) is counted and
logged once, the rest of its batch streams, and it is not asked for again until
the next refresh, however often the connection is lost meanwhile. A connection with
no frame for 2.5 heartbeats is dead. Connecting, reading and reconnecting (capped,
jittered backoff; a cooldown after a rate limit) are ``WebsocketSession``'s; each
connection subscribes every channel exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import urllib.request
from collections.abc import Callable, Collection, Sequence
from functools import partial
from typing import Any

from websockets.asyncio.client import ClientConnection

from streamer.errors import VenueDisconnected, VenueError, VenueRefused
from streamer.sources.base import QuoteSink
from streamer.sources.bybit import protocol
from streamer.sources.bybit.protocol import PONG, VENUE, BybitDecoder, Subscribed
from streamer.sources.decoded import Decoded
from streamer.sources.listing import DEFAULT_MAX_INSTRUMENTS, Listings
from streamer.sources.pending import REQUEST_TIMEOUT_S
from streamer.sources.ws_session import WebsocketSession

log = logging.getLogger(__name__)

SILENCE_FACTOR = 2.5
MAX_PAGES = 50


def _http_get(url: str, timeout_s: float) -> bytes:
    """GET ``url`` (blocking: run in a thread)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        body: bytes = response.read()
        return body


class BybitSession(WebsocketSession):
    """Stream Bybit option tickers into a QuoteSink, reconnecting forever."""

    def __init__(self, url: str, currencies: Sequence[str], sink: QuoteSink, *,
                 rest_url: str = protocol.DEFAULT_REST_URL, heartbeat_s: float = 20.0,
                 subscribe_batch: int = 100, requests_per_s: float = 5.0,
                 refresh_instruments_s: float = 600.0,
                 max_instruments: int = DEFAULT_MAX_INSTRUMENTS,
                 on_raw: Callable[[int, bytes], None] | None = None,
                 clock_ns: Callable[[], int] = time.time_ns,
                 rng: random.Random | None = None) -> None:
        super().__init__(VENUE, url, sink, BybitDecoder(), silence_s=SILENCE_FACTOR * heartbeat_s,
                         subscribe_batch=max(1, subscribe_batch), requests_per_s=requests_per_s,
                         logger=log, on_raw=on_raw, clock_ns=clock_ns, rng=rng)
        self.rest_url = rest_url
        self.currencies = list(currencies)
        self.heartbeat_s = heartbeat_s
        self.refresh_s = refresh_instruments_s
        self._listed = Listings(VENUE, sink, protocol.parse_instrument_name,
                                max_instruments=max_instruments, logger=log)
        self.pongs = 0

    def reset(self) -> None:
        """Nothing of Bybit's own: topics in failTopics stay refused until the next refresh."""

    async def subscribe(self, ws: ClientConnection) -> None:
        await self._subscribe_symbols(ws, await self._instruments())

    def on_frame(self, decoded: Decoded) -> bytes | None:
        if decoded.result == PONG:
            self.pongs += 1
        elif decoded.result is not None or decoded.error_code is not None:
            self._resolve(decoded)
        return None

    def _resolve(self, decoded: Decoded) -> None:
        # The option endpoint may not echo req_id: then the oldest request is answered.
        key = decoded.response_id if decoded.response_id is not None else self.requests.oldest()
        if decoded.error_code is not None:
            self.requests.refuse(key, VenueRefused(f"subscribe refused: {decoded.error_message}"))
        else:
            self.requests.answer(key, decoded.result)

    async def _instruments(self) -> set[str]:
        for coin in self.currencies:
            self._listed.update(coin, await self._coin_instruments(coin))
        return self._listed.names()

    async def _coin_instruments(self, coin: str) -> set[str]:
        """The live options of one base coin, over the list's pages."""
        names: set[str] = set()
        cursor = ""
        for _ in range(MAX_PAGES):
            url = protocol.instruments_url(self.rest_url, coin, cursor)
            try:
                body = await asyncio.to_thread(_http_get, url, REQUEST_TIMEOUT_S)
            except OSError as exc:  # urllib's errors, HTTP ones included
                raise VenueDisconnected(f"instrument list: {exc}") from exc
            page, cursor = protocol.parse_instruments(body)
            names.update(page)
            if not cursor:
                break
        return names

    async def _subscribe_symbols(self, ws: ClientConnection, symbols: set[str]) -> None:
        new = self.subscriptions.want(sorted(protocol.ticker_topic(s) for s in symbols))
        refused = await self.subscribe_queued(ws, protocol.subscribe_request, unconfirmed=_failed)
        subscribed = self.subscriptions.subscribed
        if new and not subscribed and len(refused) == len(new):
            # Every topic refused: Bybit refuses us, not an option. Back off; ask again.
            self.subscriptions.refused.difference_update(refused)
            raise VenueRefused(f"every topic refused ({len(refused)})")
        log.info("%s: subscribed to %d ticker topics", VENUE, len(subscribed))

    async def _unsubscribe_delisted(self, ws: ClientConnection, symbols: set[str]) -> None:
        """Unsubscribe options no longer listed: an expired option's topic would linger."""
        gone = self.subscriptions.delisted({protocol.ticker_topic(s) for s in symbols})
        for batch in gone:
            try:
                await self.requests.ask(ws, partial(protocol.unsubscribe_request, batch))
            except VenueDisconnected:
                raise
            except VenueError as exc:  # harmless: a delisted option sends nothing anyway
                log.warning("%s: unsubscribe refused (%s): %s", VENUE, exc, ", ".join(batch))
            self.subscriptions.unsubscribed(batch)
            await asyncio.sleep(self.request_gap_s)
        if gone:
            names = [t for batch in gone for t in batch]
            log.info("%s: unsubscribed %d delisted option(s): %s", VENUE, len(names),
                     ", ".join(names[:5]) + (" ..." if len(names) > 5 else ""))

    async def maintain(self, ws: ClientConnection) -> None:
        """Ping every heartbeat; refresh the instrument list every ``refresh_s``."""
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + self.refresh_s
        while True:
            await asyncio.sleep(self.heartbeat_s)
            await ws.send(protocol.ping_request(self.requests.next_id()).decode())
            if loop.time() >= next_refresh:
                symbols = await self._instruments()
                await self._unsubscribe_delisted(ws, symbols)
                self.subscriptions.forget_refused()  # a refresh asks again for what was refused
                await self._subscribe_symbols(ws, symbols)
                next_refresh = loop.time() + self.refresh_s


def _failed(_batch: list[str], answer: Any) -> Collection[str]:
    """The topics a subscribe answer left out."""
    return answer.failed if isinstance(answer, Subscribed) else ()
