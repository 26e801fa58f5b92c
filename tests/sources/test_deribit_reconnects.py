"""The spec's fault test: the server drops the connection again and again, 14 times.

The capture loops at speed 10 (one pass every 3 s), so quotes flow the whole time.
The spec drops every 2 s for about 30 s; what it checks (a reconnect per drop, each
channel subscribed once per connection, quotes after each) does not depend on the
interval, so the drops come every 0.5 s and the session's backoff is injected
(10 ms, not production's 0.1 s): about 7 s of wall-clock time, not 29.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.devtools.exchange import Faults
from tests.sources.deribit_replay import all_channels, running, wait_until
from tests.sources.golden import Row, write_capture_tickfile

pytestmark = pytest.mark.integration

DROP_EVERY_S = 0.5
DROPS = 14  # 7 s of drops


def _quick_backoff() -> Iterator[float]:
    return itertools.repeat(0.01)


@pytest.fixture
def capture(tmp_path: Path) -> tuple[Path, list[Row]]:
    path = tmp_path / "capture.ndjson"
    return path, write_capture_tickfile(path)


async def test_repeated_drops_reconnect_each_time_resubscribe_once_and_keep_quotes_flowing(
        capture: tuple[Path, list[Row]]) -> None:
    """One ``on_reconnect`` per drop.

    Read while the client is streaming after its latest reconnect, the counts are
    equal exactly: the condition and the reads run without an ``await`` between them,
    so no drop can slip in. At shutdown they may differ by one: a drop made by the
    server just before the session is cancelled can be counted by the server while
    the session, cancelled before it read the close frame (or while waiting to
    reconnect), never calls ``on_reconnect`` for it; cancelling itself is not a
    reconnect and is never counted.
    """
    path, rows = capture
    channels = all_channels(rows)
    async with running(path, Faults(drop_every_s=DROP_EVERY_S), loop=True, speed=10.0,
                       backoff=_quick_backoff) as (
            server, session, sink):
        await wait_until(lambda: server.stats.drops >= DROPS
                         and sink.connected.count(True) == server.stats.drops + 1,
                         f"{DROPS} drops, each followed by a reconnect", timeout_s=40)
        drops, reconnects = server.stats.drops, sink.reconnects
        connections = list(server.stats.per_connection)
        assert reconnects == drops
        assert session.connections == server.stats.connections == drops + 1
    assert drops - 1 <= sink.reconnects <= server.stats.drops  # see the docstring
    assert [c.closed_by for c in connections[:drops]] == ["drop"] * drops
    for i, connection in enumerate(connections):
        # Exactly once per channel per connection, however many reconnects came before.
        assert connection.requested == Counter(dict.fromkeys(channels, 1)), i
        assert connection.subscriptions == Counter(dict.fromkeys(channels, 1)), i
    # Quotes after every reconnect, seen by the server and by the sink (the sink keys
    # quotes by the number of times it was told "up": 1 is the first connection).
    assert all(c.messages_sent > 0 for c in connections[:drops])
    assert all(sink.quotes_per_connection[i] > 0 for i in range(1, drops + 1)), (
        sink.quotes_per_connection)
    assert sink.rejects == Counter()
