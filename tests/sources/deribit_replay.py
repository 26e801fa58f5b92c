"""Shared parts of the DeribitSession tests: a recording sink, polling, a running pair.

The pair is the replay server playing one real 30-second Deribit capture and a
session streaming from it, both on loopback over real websockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import msgspec

from streamer.devtools.exchange import Faults, ReplayServer
from streamer.sources.deribit.protocol import volatility_index_channel
from streamer.sources.deribit.session import RATE_LIMITED_DELAY_S, DeribitSession
from streamer.types import Quote, VenueVolIndex
from tests.sources import venue_support
from tests.sources.golden import Row
from tests.sources.venue_support import stop_session

SPEED = 50.0  # the 30 s capture plays in about 0.6 s
NO_FAULTS = Faults()


class RecordingSink:
    """A QuoteSink that keeps everything it is told."""

    def __init__(self) -> None:
        self.quotes: list[Quote] = []
        self.rejects: Counter[str] = Counter()
        self.reconnects = 0
        self.connected: list[bool] = []
        self.vol_indices: list[VenueVolIndex] = []
        self.quotes_per_connection: Counter[int] = Counter()  # by count of "up" so far

    def on_quote(self, quote: Quote) -> None:
        self.quotes.append(quote)
        self.quotes_per_connection[self.connected.count(True)] += 1

    def on_reject(self, venue: str, reason: str) -> None:
        assert venue == "deribit"
        self.rejects[reason] += 1

    def on_reconnect(self, venue: str) -> None:
        self.reconnects += 1

    def on_connected(self, venue: str, connected: bool) -> None:
        self.connected.append(connected)

    def on_vol_index(self, index: VenueVolIndex) -> None:
        self.vol_indices.append(index)


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """``venue_support.wait_until`` with the longer deadline the Deribit scenarios need."""
    await venue_support.wait_until(condition, what, timeout_s)


def comparable(quotes: list[Quote]) -> list[bytes]:
    """Quotes without their receive time, NaN-safe (JSON null)."""
    return [msgspec.json.encode(msgspec.structs.replace(q, received_ts_ns=0)) for q in quotes]


def ticker_channels(capture: list[Row]) -> set[str]:
    """The ``raw`` ticker channel of every instrument in the capture."""
    return {f"ticker.{row.data['instrument_name']}.raw" for row in capture}


CURRENCIES = ("BTC", "ETH")


def all_channels(capture: list[Row]) -> set[str]:
    """What a session subscribes to: the tickers, ``platform_state`` and DVOL per currency."""
    return ticker_channels(capture) | {"platform_state", *map(volatility_index_channel, CURRENCIES)}


@contextlib.asynccontextmanager
async def running(path: Path, faults: Faults = NO_FAULTS, *, loop: bool = False,
                  speed: float = SPEED, heartbeat_s: int = 10, subscribe_batch: int = 250,
                  refresh_s: float = 600.0, max_instruments: int = 5_000,
                  backoff: Callable[[], Iterator[float]] | None = None,
                  rate_limited_delay_s: float = RATE_LIMITED_DELAY_S,
                  make_sink: Callable[[ReplayServer], RecordingSink] = lambda _: RecordingSink(),
                  ) -> AsyncIterator[tuple[ReplayServer, DeribitSession, RecordingSink]]:
    """A replay server and a session streaming from it; both stopped on exit."""
    server = ReplayServer(path, speed=speed, loop=loop, faults=faults)
    await server.start()
    sink = make_sink(server)
    session = DeribitSession(server.url, list(CURRENCIES), sink, heartbeat_s=heartbeat_s,
                             subscribe_batch=subscribe_batch, interval="raw",
                             requests_per_s=1000.0, refresh_instruments_s=refresh_s,
                             max_instruments=max_instruments,
                             rng=random.Random(0), backoff=backoff,
                             rate_limited_delay_s=rate_limited_delay_s)
    task = asyncio.create_task(session.run())
    try:
        yield server, session, sink
        assert not task.done(), "the session must keep running"
    finally:
        await stop_session(task)
        await server.stop()
