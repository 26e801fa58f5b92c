"""An OKX, Bybit or Binance session streaming from the replay server, both on loopback.

The pair is the real session class of the venue and the replay server speaking that
venue's protocol from a small tick file (``venue_ticks.py``), over real websockets
(and, for Bybit, real HTTP for the instrument list).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path

from streamer.devtools.exchange import VENUES as VENUES_SERVED
from streamer.devtools.exchange import Faults, ReplayServer
from streamer.sources.binance.session import BinanceSession
from streamer.sources.bybit.session import BybitSession
from streamer.sources.okx.session import OkxSession
from streamer.sources.registry import make_decoder
from streamer.types import Quote
from tests.sources.venue_support import RecordingSink, stop_session
from tests.sources.venue_ticks import VENUE_FILES, VenueFile

VENUES = sorted(VENUE_FILES)
HEARTBEAT_S = 0.3
BINANCE_SILENCE_S = 1.0
NO_FAULTS = Faults()

Session = OkxSession | BybitSession | BinanceSession


def silence_reasons(session: Session) -> set[str]:
    """Why the venue's session may give up on a silent server, as it says it (its
    ``VenueDisconnected``): the window it used, not how long real time took.

    OKX and Bybit: no frame for 2.5 heartbeats. Binance: a ping unanswered for one
    heartbeat, or no frame for its silence window, whichever comes first.
    """
    silent = f"no {session.sign_of_life} for {session.silence_s:.1f}s"
    if isinstance(session, BinanceSession):
        return {silent, f"no pong within {session.heartbeat_s:.1f}s"}
    return {silent}


def make_session(venue: str, server: ReplayServer, file: VenueFile, sink: RecordingSink,
                 heartbeat_s: float, refresh_s: float = 600.0) -> Session:
    """The venue's session, pointed at the replay server, paced only by the server.

    ``refresh_s``: Bybit's instrument refresh (OKX follows its summaries and Binance
    streams whole chains: neither has one).
    """
    rng = random.Random(0)
    if venue == "okx":
        return OkxSession(f"{server.url}/ws/v5/public", file.currencies, sink,
                          heartbeat_s=heartbeat_s, subscribe_batch=20, requests_per_s=1000.0,
                          rng=rng)
    if venue == "bybit":
        return BybitSession(f"{server.url}/v5/public/option", file.currencies, sink,
                            rest_url=server.http_url, heartbeat_s=heartbeat_s,
                            subscribe_batch=2, requests_per_s=1000.0,
                            refresh_instruments_s=refresh_s, rng=rng)
    return BinanceSession(f"{server.url}/market/stream", file.currencies, sink,
                          heartbeat_s=heartbeat_s, silence_s=BINANCE_SILENCE_S,
                          subscribe_batch=1, requests_per_s=1000.0, rng=rng)


def expected_quotes(venue: str, file: VenueFile, keys: Collection[str] | None = None,
                    ) -> list[Quote]:
    """What one connection decodes from the file's messages on ``keys`` (default: every
    key the session subscribes), in order."""
    decoder, key_of = make_decoder(venue), VENUES_SERVED[venue].key_of
    sent = file.keys if keys is None else keys
    return [q for received_ns, raw in file.rows if key_of(raw) in sent
            for q in decoder.decode(raw, received_ns).quotes]


@contextlib.asynccontextmanager
async def replaying(venue: str, tmp_path: Path, faults: Faults = NO_FAULTS, *,
                    loop: bool = False, heartbeat_s: float = HEARTBEAT_S,
                    refresh_s: float = 600.0, ping_interval_s: float | None = None,
                    pong_timeout_s: float | None = None,
                    file_of: Callable[[Path], VenueFile] | None = None,
                    ) -> AsyncIterator[tuple[ReplayServer, Session, RecordingSink, VenueFile]]:
    """The venue's tick file served at recorded speed, and a session streaming from it.

    ``ping_interval_s``, ``pong_timeout_s``: the server's own websocket pings (Binance's,
    every 5 minutes live). ``file_of``: writes the tick file (default: the venue's).
    """
    file = (file_of or VENUE_FILES[venue])(tmp_path / f"{venue}.ndjson")
    server = ReplayServer(file.path, venue=venue, loop=loop, faults=faults,
                          ping_interval_s=ping_interval_s, pong_timeout_s=pong_timeout_s)
    await server.start()
    sink = RecordingSink(venue)
    session = make_session(venue, server, file, sink, heartbeat_s, refresh_s)
    sink.connection_no = lambda: session.connections
    task = asyncio.create_task(session.run())
    try:
        yield server, session, sink, file
        assert not task.done(), task.exception() if task.done() else "the session must run"
    finally:
        await stop_session(task)  # mid-stream: must stop within seconds, socket closed
        await server.stop()
