"""DeribitSession against the replay server on loopback, over real websockets.

The server plays one real 30-second Deribit capture (tests/data) and injects the
faults it knows (drops, stalls, garbage frames, refused subscriptions). Waits poll
for an outcome with a deadline; nothing asserts on elapsed time. The Deribit
adapter's spec items (listings, maintenance, rate limits, heartbeats, rejects,
repeated drops) are in test_deribit_session_spec.py and test_deribit_reconnects.py.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from streamer.devtools.exchange import Faults
from streamer.sources.deribit import session as session_module
from streamer.sources.deribit.protocol import DeribitDecoder
from tests.sources.deribit_replay import all_channels, comparable, running, wait_until
from tests.sources.golden import Row, write_capture_tickfile

pytestmark = pytest.mark.integration


@pytest.fixture
def capture(tmp_path: Path) -> tuple[Path, list[Row]]:
    path = tmp_path / "capture.ndjson"
    return path, write_capture_tickfile(path)


async def test_session_subscribes_every_listed_channel_once_and_streams_every_quote(
        capture: tuple[Path, list[Row]]) -> None:
    path, rows = capture
    decoder = DeribitDecoder()
    expected = [q for row in rows for q in decoder.decode(row.raw, 0).quotes]
    assert len(expected) == 92
    async with running(path) as (server, session, sink):
        await wait_until(lambda: server.finished.is_set() and len(sink.quotes) >= len(expected),
                         "every recorded quote delivered")
        assert server.stats.subscriptions == Counter(dict.fromkeys(all_channels(rows), 1))
        assert len(server.stats.subscriptions) == 13  # 10 tickers, platform_state, 2 DVOLs
        assert comparable(sink.quotes) == comparable(expected)  # same quotes, same order
        assert all(q.received_ts_ns > 0 for q in sink.quotes)
        assert sink.connected == [True]
        assert sink.rejects == Counter()
        assert (session.connections, sink.reconnects) == (1, 0)


async def test_heartbeat_test_requests_are_answered_and_keep_the_connection(
        capture: tuple[Path, list[Row]]) -> None:
    path, _ = capture
    async with running(path, heartbeat_s=1) as (server, _, sink):
        # Unanswered, the server would close after 2.5 intervals; the session would
        # also call a feed silent for 2.5 intervals dead once the file has ended.
        await wait_until(lambda: server.stats.test_requests_answered >= 4,
                         "four heartbeats answered")
        await wait_until(server.finished.is_set, "file played")
        assert server.stats.connections == 1
        assert sink.reconnects == 0
        assert sink.connected == [True]


async def test_server_drops_lead_to_reconnect_and_exactly_one_subscribe_per_channel(
        capture: tuple[Path, list[Row]]) -> None:
    path, rows = capture
    # Small batches and a fast instrument refresh: neither may subscribe a channel twice.
    async with running(path, Faults(drop_every_s=1.5), loop=True, subscribe_batch=3,
                       refresh_s=0.05) as (server, session, sink):
        await wait_until(lambda: sink.connected.count(True) >= 3, "three subscribed connections")
        connected = sink.connected.count(True)
        counts = Counter(server.stats.subscriptions)
    assert server.stats.drops >= 2
    assert sink.reconnects >= 2
    assert session.connections == server.stats.connections >= 3
    assert set(counts) == all_channels(rows)
    assert set(counts.values()) == {connected}, counts  # once per channel per connection
    assert all(sink.quotes_per_connection[i] > 0 for i in range(1, connected)), (
        sink.quotes_per_connection)


async def test_stalled_feed_is_detected_by_missing_heartbeats_and_reconnected(
        capture: tuple[Path, list[Row]], caplog: pytest.LogCaptureFixture) -> None:
    path, rows = capture
    # The server hangs up on a client that stops answering heartbeats after 2.5
    # intervals; the session gives up on a connection after 2 without one, so first.
    caplog.set_level(logging.WARNING, logger=session_module.__name__)
    async with running(path, Faults(stall_after_s=0.3), loop=True, heartbeat_s=1) as (
            server, session, sink):
        await wait_until(lambda: sink.connected.count(True) >= 2, "resubscribed after a stall")
    assert server.stats.drops == server.stats.heartbeat_closes == 0
    assert session.connections >= 2
    assert sink.reconnects >= 1
    assert any("no heartbeat for 2.0s" in r.getMessage() for r in caplog.records), caplog.text
    assert set(server.stats.subscriptions) == all_channels(rows)


async def test_garbage_frames_are_counted_as_malformed_and_not_fatal(
        capture: tuple[Path, list[Row]]) -> None:
    path, rows = capture
    decoder = DeribitDecoder()
    expected = set(comparable([q for row in rows for q in decoder.decode(row.raw, 0).quotes]))
    async with running(path, Faults(garbage_rate=0.3, seed=3)) as (server, session, sink):
        await wait_until(lambda: server.finished.is_set()
                         and len(sink.quotes) + sink.rejects["malformed"] >= len(rows),
                         "every frame decoded or rejected")
        assert server.stats.messages_sent == len(rows)
        assert sink.rejects["malformed"] > 0
        assert len(sink.quotes) + sink.rejects["malformed"] == len(rows)
        assert set(comparable(sink.quotes)) <= expected
        assert (session.connections, sink.reconnects) == (1, 0)
        assert sink.connected == [True]


async def test_rejected_subscribe_is_reported_and_retried_with_backoff(
        capture: tuple[Path, list[Row]]) -> None:
    path, _ = capture
    async with running(path, Faults(reject_subscribe=True)) as (server, _session, sink):
        # Each refused request counts every channel it asked for (11 here).
        await wait_until(lambda: sink.rejects["subscribe_rejected"] >= 2 * 11,
                         "two rejected subscriptions")
        assert server.stats.connections >= 2
        assert sink.reconnects >= 1
        assert True not in sink.connected
        assert server.stats.subscriptions == Counter()
        assert sink.quotes == []
