"""A flapping exchange: every connection drops before its subscription completes.

Real parts: the replay server on loopback dropping every connection every 3 s, a
Deribit session subscribing one channel at a time, slowly, so that no subscription
ever completes, yet each connection streams quotes for what it did subscribe. The
backoff is injected: a first delay of 10 ms and then 60 s, so a backoff that is not
reset after a connection that streamed stalls the session for a minute.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.devtools.exchange import Faults, ReplayServer
from streamer.sources.deribit.session import DeribitSession
from tests.sources.deribit_replay import CURRENCIES, RecordingSink, wait_until
from tests.sources.golden import write_capture_tickfile
from tests.sources.venue_support import stop_session

pytestmark = pytest.mark.integration

CONNECTIONS = 5


async def test_a_connection_that_streamed_quotes_resets_the_backoff_before_subscribing_all(
        tmp_path: Path) -> None:
    path = tmp_path / "capture.ndjson"
    write_capture_tickfile(path)
    fresh: list[int] = []

    def backoff() -> Iterator[float]:
        fresh.append(1)
        yield 0.01
        while True:
            yield 60.0

    server = ReplayServer(path, speed=10.0, loop=True, faults=Faults(drop_every_s=3.0))
    await server.start()
    sink = RecordingSink()
    # 13 channels, one per request at 4 requests/s after 4 other requests: 4.25 s of
    # subscribing, never done within the 3 s a connection lives.
    session = DeribitSession(server.url, list(CURRENCIES), sink, subscribe_batch=1,
                             requests_per_s=4.0, interval="raw", rng=random.Random(0),
                             backoff=backoff)
    task = asyncio.create_task(session.run())
    try:
        await wait_until(lambda: session.connections >= CONNECTIONS
                         and server.stats.per_connection[-1].messages_sent > 0,
                         f"{CONNECTIONS} connections, each streaming", timeout_s=60)
        connections = list(server.stats.per_connection)
    finally:
        await stop_session(task)
        await server.stop()
    assert True not in sink.connected  # no subscription completed ...
    assert all(c.messages_sent > 0 for c in connections[:CONNECTIONS])  # ... yet all streamed
    assert len(sink.quotes) > 0
    # A fresh backoff after each connection that streamed quotes (the first one may drop
    # before its first ticker is subscribed: it took the initial backoff's 10 ms).
    assert len(fresh) >= CONNECTIONS - 1
