"""The OKX websocket session: the only OKX code that touches a socket.

Per connection: one ``subscribe`` for ``opt-summary`` and ``index-tickers`` of every
instrument family, acknowledged before the session counts as streaming; then a
``tickers`` subscription for each option the family summaries list, in batches
paced under OKX's 3 requests/s (new listings are picked up as they appear in the
summaries, so no instrument refresh is needed); the text ``ping`` every
``heartbeat_s`` (OKX drops a connection silent for 30 s). A connection with no
frame for 2.5 heartbeats is dead. Connecting, reading and reconnecting (capped,
jittered backoff) are ``WebsocketSession``'s; each connection subscribes every
channel exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable, Sequence

from websockets.asyncio.client import ClientConnection

from streamer.errors import VenueError
from streamer.sources.base import QuoteSink
from streamer.sources.decoded import Decoded
from streamer.sources.okx import protocol
from streamer.sources.okx.protocol import PONG, VENUE, Ack, Listed, OkxDecoder
from streamer.sources.okx.schema import Arg
from streamer.sources.pending import REQUEST_TIMEOUT_S
from streamer.sources.ws_session import WebsocketSession

log = logging.getLogger(__name__)

SILENCE_FACTOR = 2.5


class OkxSession(WebsocketSession):
    """Stream OKX option quotes into a QuoteSink, reconnecting forever."""

    def __init__(self, url: str, currencies: Sequence[str], sink: QuoteSink, *,
                 heartbeat_s: float = 20.0, subscribe_batch: int = 200,
                 requests_per_s: float = 3.0,
                 on_raw: Callable[[int, bytes], None] | None = None,
                 clock_ns: Callable[[], int] = time.time_ns,
                 rng: random.Random | None = None) -> None:
        super().__init__(VENUE, url, sink, OkxDecoder(), silence_s=SILENCE_FACTOR * heartbeat_s,
                         subscribe_batch=max(1, subscribe_batch), requests_per_s=requests_per_s,
                         logger=log, on_raw=on_raw, clock_ns=clock_ns, rng=rng)
        self.families = [protocol.instrument_family(c) for c in currencies]
        self.heartbeat_s = heartbeat_s
        self._tickers: set[str] = set()  # instruments subscribed or queued on this connection
        self._pending: dict[str, None] = {}  # queued, in arrival order
        self._wake = asyncio.Event()
        self.pongs = 0

    def reset(self) -> None:
        self._tickers, self._pending = set(), {}
        self._decoder = OkxDecoder()  # books and summaries of a lost connection are stale

    async def subscribe(self, ws: ClientConnection) -> None:
        args = [a for family in self.families for a in protocol.family_args(family)]
        await self._request(ws, args, wait=True)

    def on_frame(self, decoded: Decoded) -> bytes | None:
        if isinstance(decoded.result, Listed):
            self._want(decoded.result)
        elif decoded.result == PONG:
            self.pongs += 1
        elif isinstance(decoded.result, Ack):
            self.requests.answer(decoded.result.key)
        if decoded.error_code is not None:
            # OKX does not say which argument failed: count it, fail what waits.
            self.sink.on_reject(VENUE, "subscribe_rejected")
            log.error("%s: error %s: %s", VENUE, decoded.error_code, decoded.error_message)
            error = VenueError(f"error {decoded.error_code}: {decoded.error_message}")
            error.retryable = True  # back off and try again on a new connection
            self.requests.fail_all(error)
        if decoded.platform_state is not None:
            log.warning("%s notice: %s", VENUE, decoded.platform_state)
        return None

    def _want(self, listed: Listed) -> None:
        """Queue the options a summary listed that have no ``tickers`` subscription yet."""
        new = [name for name in listed.instruments if name not in self._tickers]
        if new:
            self._tickers.update(new)
            self._pending.update(dict.fromkeys(new))
            self._wake.set()

    async def _request(self, ws: ClientConnection, args: list[Arg], *, wait: bool) -> None:
        """Subscribe ``args`` in one request; with ``wait``, until OKX acknowledged each."""
        futures = [self.requests.expect(protocol.arg_key(arg)) for arg in args] if wait else []
        await ws.send(protocol.subscribe_request(args).decode())
        if futures:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await asyncio.gather(*futures)

    async def maintain(self, ws: ClientConnection) -> None:
        """Ping every heartbeat; subscribe queued instruments, paced, in batches."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.heartbeat_s
        next_request = loop.time()
        while True:
            self._wake.clear()
            now = loop.time()
            if self._pending and now >= next_request:
                batch = list(itertools.islice(self._pending, self.subscribe_batch))
                for name in batch:
                    del self._pending[name]
                await self._request(ws, [protocol.ticker_arg(n) for n in batch], wait=False)
                log.info("%s: subscribed to %d tickers", VENUE, len(self._tickers) - len(
                    self._pending))
                next_request = loop.time() + self.request_gap_s
            if now >= next_ping:
                await ws.send(protocol.PING)
                next_ping = now + self.heartbeat_s
            wake_at = min(next_ping, next_request) if self._pending else next_ping
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(wake_at):
                    await self._wake.wait()
