"""DeribitSession against the replay server on loopback, over real websockets.

The server plays one real 30-second Deribit capture (tests/data) and injects the
faults it knows (drops, stalls, garbage frames, refused subscriptions). Waits poll
for an outcome with a deadline; nothing asserts on elapsed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest

from streamer.devtools.replay_server import Faults, ReplayServer
from streamer.sources.deribit import session as session_module
from streamer.sources.deribit.protocol import DeribitDecoder
from streamer.sources.deribit.session import DeribitSession
from streamer.types import Quote
from tests.sources.golden import Row, write_capture_tickfile

pytestmark = pytest.mark.integration

SPEED = 50.0  # the 30 s capture plays in about 0.6 s
NO_FAULTS = Faults()


class RecordingSink:
    """A QuoteSink that keeps everything it is told."""

    def __init__(self) -> None:
        self.quotes: list[Quote] = []
        self.rejects: Counter[str] = Counter()
        self.reconnects = 0
        self.connected: list[bool] = []
        self.quotes_per_connection: Counter[int] = Counter()

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


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Poll ``condition``; fail with ``what`` if it is still false at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


def _comparable(quotes: list[Quote]) -> list[bytes]:
    """Quotes without their receive time, NaN-safe (JSON null)."""
    return [msgspec.json.encode(msgspec.structs.replace(q, received_ts_ns=0)) for q in quotes]


@pytest.fixture
def capture(tmp_path: Path) -> tuple[Path, list[Row]]:
    path = tmp_path / "capture.ndjson"
    return path, write_capture_tickfile(path)


@contextlib.asynccontextmanager
async def running(path: Path, faults: Faults = NO_FAULTS, *, loop: bool = False,
                  heartbeat_s: int = 10, subscribe_batch: int = 250,
                  refresh_s: float = 600.0) -> AsyncIterator[
                      tuple[ReplayServer, DeribitSession, RecordingSink]]:
    """A replay server and a session streaming from it; both stopped on exit."""
    server = ReplayServer(path, speed=SPEED, loop=loop, faults=faults)
    await server.start()
    sink = RecordingSink()
    session = DeribitSession(server.url, ["BTC", "ETH"], sink, heartbeat_s=heartbeat_s,
                             subscribe_batch=subscribe_batch, interval="raw",
                             requests_per_s=1000.0, refresh_instruments_s=refresh_s,
                             rng=random.Random(0))
    task = asyncio.create_task(session.run())
    try:
        yield server, session, sink
        assert not task.done(), "the session must keep running"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop()


def _channels(capture: list[Row]) -> set[str]:
    return {f"ticker.{row.data['instrument_name']}.raw" for row in capture}


async def test_session_subscribes_every_listed_channel_once_and_streams_every_quote(
        capture: tuple[Path, list[Row]]) -> None:
    path, rows = capture
    decoder = DeribitDecoder()
    expected = [q for row in rows for q in decoder.decode(row.raw, 0).quotes]
    assert len(expected) == 92
    async with running(path) as (server, session, sink):
        await wait_until(lambda: server.finished.is_set() and len(sink.quotes) >= len(expected),
                         "every recorded quote delivered")
        assert server.stats.subscriptions == Counter(dict.fromkeys(_channels(rows), 1))
        assert len(server.stats.subscriptions) == 10
        assert _comparable(sink.quotes) == _comparable(expected)  # same quotes, same order
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
    assert set(counts) == _channels(rows)
    assert set(counts.values()) == {connected}, counts  # once per channel per connection
    assert all(sink.quotes_per_connection[i] > 0 for i in range(1, connected)), (
        sink.quotes_per_connection)


async def test_stalled_feed_is_detected_by_silence_and_reconnected(
        capture: tuple[Path, list[Row]], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path, rows = capture
    # The server also hangs up on a client that stops answering heartbeats (after 2.5
    # intervals); a shorter silence limit makes the session notice the stall first.
    monkeypatch.setattr(session_module, "SILENCE_FACTOR", 1.2)
    caplog.set_level(logging.WARNING, logger=session_module.__name__)
    async with running(path, Faults(stall_after_s=0.3), loop=True, heartbeat_s=1) as (
            server, session, sink):
        await wait_until(lambda: sink.connected.count(True) >= 2, "resubscribed after a stall")
    assert server.stats.drops == 0
    assert session.connections >= 2
    assert sink.reconnects >= 1
    assert any("no message for 1.2s" in r.getMessage() for r in caplog.records), caplog.text
    assert set(server.stats.subscriptions) == _channels(rows)


async def test_garbage_frames_are_counted_as_malformed_and_not_fatal(
        capture: tuple[Path, list[Row]]) -> None:
    path, rows = capture
    decoder = DeribitDecoder()
    expected = set(_comparable([q for row in rows for q in decoder.decode(row.raw, 0).quotes]))
    async with running(path, Faults(garbage_rate=0.3, seed=3)) as (server, session, sink):
        await wait_until(lambda: server.finished.is_set()
                         and len(sink.quotes) + sink.rejects["malformed"] >= len(rows),
                         "every frame decoded or rejected")
        assert server.stats.messages_sent == len(rows)
        assert sink.rejects["malformed"] > 0
        assert len(sink.quotes) + sink.rejects["malformed"] == len(rows)
        assert set(_comparable(sink.quotes)) <= expected
        assert (session.connections, sink.reconnects) == (1, 0)
        assert sink.connected == [True]


async def test_rejected_subscribe_is_reported_and_retried_with_backoff(
        capture: tuple[Path, list[Row]]) -> None:
    path, _ = capture
    async with running(path, Faults(reject_subscribe=True)) as (server, _session, sink):
        await wait_until(lambda: sink.rejects["subscribe_rejected"] >= 2,
                         "two rejected subscriptions")
        assert server.stats.connections >= 2
        assert sink.reconnects >= 1
        assert True not in sink.connected
        assert server.stats.subscriptions == Counter()
        assert sink.quotes == []
