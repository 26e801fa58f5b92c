"""The OKX websocket session: the only OKX code that touches a socket.

Per connection: ``index-tickers`` and ``opt-summary`` of every instrument family, one
channel a request, each acknowledged before the next (OKX's error event does not say
which argument it refuses, so only one request is ever waiting on an answer); then a
``tickers`` subscription for each option the family summaries list, in batches
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
import itertools
import logging
import random
import time
from collections.abc import Callable, Sequence

from websockets.asyncio.client import ClientConnection

from streamer.errors import ChannelRefused, VenueRefused
from streamer.sources.base import QuoteSink
from streamer.sources.decoded import Decoded, InstrumentInfo
from streamer.sources.listing import DEFAULT_MAX_INSTRUMENTS, INSTRUMENT_CAP, nearest_first
from streamer.sources.okx import instruments
from streamer.sources.okx.protocol import PING, PONG, VENUE, Ack, Listed, OkxDecoder
from streamer.sources.okx.schema import Arg
from streamer.sources.pending import REQUEST_TIMEOUT_S
from streamer.sources.ws_session import WebsocketSession

log = logging.getLogger(__name__)

SILENCE_FACTOR = 2.5
NEVER_MS = 2**63 - 1


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
        self._tickers: dict[str, set[str]] = {}  # family -> options subscribed or queued
        self._pending: dict[str, None] = {}  # to subscribe, in arrival order
        self._gone: dict[str, None] = {}  # to unsubscribe
        self._expiry_ms: dict[str, int] = {}  # option -> its expiry, once listed
        self.max_instruments = max_instruments  # per family (currency)
        self._left_out: set[str] = set()  # listed, over the cap: counted once each
        self._exchange_ms = 0  # the latest summary stamp: OKX's clock, never ours
        self._next_expiry_ms = NEVER_MS  # the soonest expiry among ``_tickers``
        self._wake = asyncio.Event()
        self.pongs = 0

    def reset(self) -> None:
        self._tickers, self._pending, self._gone = {}, {}, {}
        self._next_expiry_ms = NEVER_MS
        self._decoder = OkxDecoder()  # books and summaries of a lost connection are stale

    async def subscribe(self, ws: ClientConnection) -> None:
        now = asyncio.get_running_loop().time()
        asked = [(arg, key) for family in self.families for arg in instruments.family_args(family)
                 if now - self._refused.get(key := instruments.arg_key(arg), -self.retry_refused_s)
                 >= self.retry_refused_s]
        refused = [key for arg, key in asked if not await self._subscribe_alone(ws, arg, key)]
        if asked and len(refused) == len(asked):  # OKX refuses us, not a channel: back off
            for key in refused:
                del self._refused[key]
            raise VenueRefused(f"every channel refused: {', '.join(refused)}")

    async def _subscribe_alone(self, ws: ClientConnection, arg: Arg, key: str) -> bool:
        """Subscribe one channel, the only request waiting: an error event is its answer.

        False if refused (counted, logged, and not asked again for ``retry_refused_s``).
        """
        answered = self.requests.expect(key)
        self._asking = key
        try:
            await ws.send(instruments.subscribe_request([arg]).decode())
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await answered
            self._refused.pop(key, None)
            confirmed = True
        except ChannelRefused as exc:
            self._refused[key] = asyncio.get_running_loop().time()
            self.refused([key], str(exc))
            confirmed = False
        finally:
            self._asking = None
        await asyncio.sleep(self.request_gap_s)
        return confirmed

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
            self.requests.refuse(self._asking, ChannelRefused(detail))
        else:  # tickers are not waited on: which of the batch is unknown; it streams on
            self.sink.on_reject(VENUE, "subscribe_rejected")
            log.error("%s: a tickers subscription was refused (%s); the others stream",
                      VENUE, detail)

    def _follow(self, listed: Listed) -> None:
        """Queue the options a summary lists that have no ``tickers`` subscription yet, and,
        once the exchange's clock passes an expiry, the options expired to go."""
        self._exchange_ms = now_ms = max(self._exchange_ms, listed.ts_ms)
        known = self._tickers.setdefault(listed.family, set())
        new = self._within_cap(listed.family, known, [
            n for n in listed.instruments if n not in known and self._expiry(n) > now_ms])
        if new:
            known.update(new)
            self._pending.update(dict.fromkeys(new))
            self._next_expiry_ms = min(self._next_expiry_ms, *map(self._expiry, new))
        gone = self._drop_expired(now_ms) if now_ms >= self._next_expiry_ms else []
        if new or gone:
            self._wake.set()

    def _within_cap(self, family: str, known: set[str], new: list[str]) -> list[str]:
        """The new options a family has room for under ``max_instruments``, in the order
        every venue's cap keeps them (``nearest_first``); each one left out is counted once
        as ``instrument_cap``."""
        room = max(self.max_instruments - len(known), 0)
        if len(new) <= room:
            self._left_out.difference_update(new)
            return new
        new = nearest_first(new, _info)
        kept, over = new[:room], [n for n in new[room:] if n not in self._left_out]
        self._left_out.difference_update(kept)
        if over and not self._left_out:
            log.warning("%s: %s lists more options than the cap of %d "
                        "(venues[].max_instruments): subscribing the nearest expiries only",
                        VENUE, family, self.max_instruments)
        self._left_out.update(over)
        for _ in over:
            self.sink.on_reject(VENUE, INSTRUMENT_CAP)
        return kept

    def _drop_expired(self, now_ms: int) -> list[str]:
        """Queue every option expired at ``now_ms`` to be unsubscribed (once per expiry)."""
        gone: list[str] = []
        for known in self._tickers.values():
            expired = {name for name in known if self._expiry(name) <= now_ms}
            known -= expired
            gone += expired
        for name in gone:
            if name in self._pending:  # queued, never sent: nothing to undo
                del self._pending[name]
            else:
                self._gone[name] = None
            del self._expiry_ms[name]
        self._next_expiry_ms = min((self._expiry(name) for known in self._tickers.values()
                                    for name in known), default=NEVER_MS)
        return gone

    def _expiry(self, name: str) -> int:
        """An option's expiry (ms), parsed once; never for a name that does not parse."""
        expiry = self._expiry_ms.get(name)
        if expiry is None:
            inst = instruments.parse_instrument_name(name)
            expiry = self._expiry_ms[name] = inst.info.expiry_ts_ms if inst else NEVER_MS
        return expiry

    async def _request(self, ws: ClientConnection, queue: dict[str, None], op: str) -> None:
        """Send ``op`` for the first ``subscribe_batch`` of ``queue`` (answers not awaited)."""
        batch = list(itertools.islice(queue, self.subscribe_batch))
        for name in batch:
            del queue[name]
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
            if (self._pending or self._gone) and now >= next_request:
                if self._gone:
                    await self._request(ws, self._gone, "unsubscribe")
                else:
                    await self._request(ws, self._pending, "subscribe")
                next_request = loop.time() + self.request_gap_s
            if now >= next_ping:
                await ws.send(PING)
                next_ping = now + self.heartbeat_s
            queued = self._pending or self._gone
            wake_at = min(next_ping, next_request) if queued else next_ping
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(wake_at):
                    await self._wake.wait()


def _info(name: str) -> InstrumentInfo | None:
    inst = instruments.parse_instrument_name(name)
    return None if inst is None else inst.info
