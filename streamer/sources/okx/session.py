"""The OKX websocket session: the only OKX code that touches a socket.

Per connection: ``index-tickers`` and ``opt-summary`` of every instrument family, one
channel a request, each acknowledged before the next (OKX's error event does not say
which argument it refuses, so only one request is ever waiting on an answer: the
shared ``Subscriptions`` with batches of one, answered by channel in ``ask_subscribe``);
then a ``tickers`` subscription for each option the family summaries list
(``FollowedTickers``, okx/tickers.py), in batches
paced under OKX's 3 requests/s (new listings are picked up as they appear in the
summaries, so no instrument refresh is needed; an option is unsubscribed once a
summary of its family is stamped at or after its expiry); the text ``ping`` every
``heartbeat_s`` (OKX drops a connection silent for 30 s). A connection with no frame
for 2.5 heartbeats is dead.

A refused family channel (say, a currency without OKX options) is counted, logged
and left out; the other families stream on the same connection, and it is asked for
again only on a connection ``retry_refused_s`` later. Connecting, reading and
reconnecting (capped, jittered backoff; a cooldown after 60014) are
``WebsocketSession``'s; each connection subscribes every channel exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection

from streamer.errors import ChannelRefused, VenueRefused
from streamer.sources.base import QuoteSink
from streamer.sources.decoded import Decoded
from streamer.sources.listing import DEFAULT_MAX_INSTRUMENTS, INSTRUMENT_CAP
from streamer.sources.okx import instruments
from streamer.sources.okx.protocol import PING, PONG, VENUE, Ack, Listed, OkxDecoder
from streamer.sources.okx.tickers import FollowedTickers
from streamer.sources.pending import REQUEST_TIMEOUT_S
from streamer.sources.subscriptions import Subscriptions
from streamer.sources.ws_session import WebsocketSession

log = logging.getLogger(__name__)

SILENCE_FACTOR = 2.5


class OkxSession(WebsocketSession):
    """Stream OKX option quotes into a QuoteSink, reconnecting forever."""

    def __init__(self, url: str, currencies: Sequence[str], sink: QuoteSink, *,
                 heartbeat_s: float = 20.0, subscribe_batch: int = 200,
                 requests_per_s: float = 3.0, retry_refused_s: float = 600.0,
                 max_instruments: int = DEFAULT_MAX_INSTRUMENTS,
                 on_raw: Callable[[int, bytes], None] | None = None,
                 clock_ns: Callable[[], int] = time.time_ns,
                 rng: random.Random | None = None) -> None:
        super().__init__(VENUE, url, sink, OkxDecoder(), silence_s=SILENCE_FACTOR * heartbeat_s,
                         subscribe_batch=max(1, subscribe_batch), requests_per_s=requests_per_s,
                         logger=log, on_raw=on_raw, clock_ns=clock_ns, rng=rng)
        self.families = [instruments.instrument_family(c) for c in currencies]
        self.heartbeat_s = heartbeat_s
        self.retry_refused_s = retry_refused_s
        self._refused: dict[str, float] = {}  # family channel -> when refused (loop time)
        self._asking: str | None = None  # the family channel waiting on its answer
        self._refusal = ""  # what OKX said when it last refused a family channel
        self._family_args = {instruments.arg_key(arg): arg for family in self.families
                             for arg in instruments.family_args(family)}
        # One family channel a request: OKX's error event does not say which it refuses.
        self.subscriptions = Subscriptions(1)
        self.tickers = FollowedTickers(max_instruments)
        self._wake = asyncio.Event()
        self.pongs = 0

    def reset(self) -> None:
        self.tickers.new_connection()
        self.subscriptions.forget_refused()  # ``_refused`` says when to ask again
        self._decoder = OkxDecoder()  # books and summaries of a lost connection are stale

    async def subscribe(self, ws: ClientConnection) -> None:
        now = asyncio.get_running_loop().time()
        asked = [key for key in self._family_args
                 if now - self._refused.get(key, -self.retry_refused_s) >= self.retry_refused_s]
        self.subscriptions.want(asked)
        refused = await self.subscribe_queued(ws, self._family_request, unconfirmed=_refused)
        if asked and len(refused) == len(asked):  # OKX refuses us, not a channel: back off
            for key in refused:
                del self._refused[key]
            raise VenueRefused(f"every channel refused: {', '.join(refused)}")

    def _family_request(self, keys: list[str], _request_id: int) -> bytes:
        return instruments.subscribe_request([self._family_args[key] for key in keys])

    async def ask_subscribe(self, ws: ClientConnection, batch: list[str],
                            request: Callable[[list[str], int], bytes]) -> Any:
        """Subscribe one channel, the only request waiting: an error event is its answer.

        Returns the ``ChannelRefused`` if refused (left out: counted, logged, and not
        asked again for ``retry_refused_s``), else None.
        """
        (key,) = batch
        answered = self.requests.expect(key)
        self._asking = key
        try:
            await ws.send(request(batch, 0).decode())
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await answered
        except ChannelRefused as exc:
            return exc
        finally:
            self._asking = None
        self._refused.pop(key, None)
        return None

    def left_out(self, names: Sequence[str]) -> None:
        now = asyncio.get_running_loop().time()
        for key in names:
            self._refused[key] = now
        self.refused(names, self._refusal)

    def on_frame(self, decoded: Decoded) -> bytes | None:
        if isinstance(decoded.result, Listed):
            self._follow(decoded.result)
        elif decoded.result == PONG:
            self.pongs += 1
        elif isinstance(decoded.result, Ack) and decoded.result.event == "subscribe":
            self.requests.answer(decoded.result.key)
        if decoded.error_code is not None:
            self._error(decoded)
        if decoded.platform_state is not None:
            log.warning("%s notice: %s", VENUE, decoded.platform_state)
        return None

    def _error(self, decoded: Decoded) -> None:
        """An error event answers the one family channel waiting, else a tickers batch."""
        detail = f"error {decoded.error_code}: {decoded.error_message}"
        if self._asking is not None:
            self._refusal = detail
            self.requests.refuse(self._asking, ChannelRefused(detail))
        else:  # tickers are not waited on: which of the batch is unknown; it streams on
            self.sink.on_reject(VENUE, "subscribe_rejected")
            log.error("%s: a tickers subscription was refused (%s); the others stream",
                      VENUE, detail)

    def _follow(self, listed: Listed) -> None:
        """Queue what a summary lists (``FollowedTickers``); count what the cap leaves out."""
        followed = self.tickers.follow(listed)
        if followed.first_over_cap:
            log.warning("%s: %s lists more options than the cap of %d "
                        "(venues[].max_instruments): subscribing the nearest expiries only",
                        VENUE, listed.family, self.tickers.max_instruments)
        for _ in followed.over_cap:
            self.sink.on_reject(VENUE, INSTRUMENT_CAP)
        if followed.queued:
            self._wake.set()

    async def _request(self, ws: ClientConnection) -> None:
        """Send the next queued (un)subscribe, ``subscribe_batch`` at most (answers not
        awaited)."""
        request = self.tickers.take(self.subscribe_batch)
        if request is None:
            return
        op, batch = request
        await ws.send(instruments.subscribe_request([instruments.ticker_arg(n) for n in batch],
                                                 op).decode())
        log.info("%s: %s %d tickers", VENUE, f"{op}d", len(batch))

    async def maintain(self, ws: ClientConnection) -> None:
        """Ping every heartbeat; (un)subscribe queued instruments, paced, in batches."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.heartbeat_s
        next_request = loop.time()
        while True:
            self._wake.clear()
            now = loop.time()
            if self.tickers.queued and now >= next_request:
                await self._request(ws)
                next_request = loop.time() + self.request_gap_s
            if now >= next_ping:
                await ws.send(PING)
                next_ping = now + self.heartbeat_s
            wake_at = min(next_ping, next_request) if self.tickers.queued else next_ping
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(wake_at):
                    await self._wake.wait()


def _refused(batch: list[str], answer: Any) -> list[str]:
    """The channel ``ask_subscribe`` says was refused, left out of the subscription."""
    return batch if isinstance(answer, ChannelRefused) else []
