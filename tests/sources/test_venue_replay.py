"""OKX, Bybit and Binance sessions against the replay server speaking each venue's protocol.

Real websockets on loopback, the real session classes, tick files of real golden
messages and messages built in the venues' real shape (``venue_ticks.py``). Each
fault the server injects is met the way the session's spec says: drops reconnect
and resubscribe each channel once, garbage is counted, refused subscribes back off,
a stalled server or a stop of heartbeats is given up within the session's silence
window. Rate limits, refused channels, listings and expiries, and Binance's server
pings: test_venue_replay_faults.py. Waits poll for an outcome with a deadline; times
asserted come from the server's connection log.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from streamer.devtools.exchange import Faults, ReplayServer
from streamer.devtools.exchange.bybit import BybitReplay
from streamer.devtools.exchange.okx import OkxReplay
from streamer.errors import VenueError
from streamer.sources.bybit import protocol as bybit_protocol
from streamer.sources.okx.session import OkxSession
from streamer.tasks import RECONNECT_INITIAL_S
from tests.sources.deribit_replay import comparable
from tests.sources.venue_replay import (
    HEARTBEAT_S,
    VENUES,
    expected_quotes,
    replaying,
    silence_reasons,
)
from tests.sources.venue_support import RecordingSink, stop_session, wait_until
from tests.sources.venue_ticks import BYBIT_BTC, okx_file

pytestmark = pytest.mark.integration

DROP_EVERY_S = 1.5
DROPS = 4  # about 6.5 s
STALL_AFTER_S = 0.5
STOP_HEARTBEATS_AFTER_S = 0.5


@pytest.mark.parametrize("venue", VENUES)
async def test_session_gets_every_quote_of_what_it_subscribed_and_nothing_else(
        venue: str, tmp_path: Path) -> None:
    async with replaying(venue, tmp_path) as (server, session, sink, file):
        expected = expected_quotes(venue, file)
        await wait_until(lambda: server.finished.is_set() and len(sink.quotes) >= len(expected)
                         and session.pongs >= 2, "the whole file streamed, pings answered")
        assert server.stats.subscriptions == Counter(dict.fromkeys(file.keys, 1))
        assert comparable(sink.quotes) == comparable(expected)  # same quotes, same order
        # The file's trades and books were never sent; every reply was understood.
        assert sink.rejects == Counter()
        assert (session.connections, sink.reconnects, sink.connected) == (1, 0, [True])
        assert server.stats.pings_answered >= session.pongs
    assert len(expected) >= 20
    if venue == "bybit":  # one instrument-list page per base coin
        assert server.stats.http_requests == len(file.currencies)


@pytest.mark.parametrize("venue", VENUES)
async def test_drops_every_1_5s_reconnect_each_time_resubscribe_once_and_keep_quotes_flowing(
        venue: str, tmp_path: Path) -> None:
    faults = Faults(drop_every_s=DROP_EVERY_S)
    async with replaying(venue, tmp_path, faults, loop=True) as (server, session, sink, file):
        # Read while streaming after the latest reconnect: no await between the
        # condition and the reads, so no drop slips in between.
        await wait_until(lambda: server.stats.drops >= DROPS
                         and sink.connected.count(True) == server.stats.drops + 1
                         and sink.quotes_per_connection[server.stats.drops + 1] > 0,
                         f"{DROPS} drops, each followed by a reconnect", timeout_s=15)
        drops, reconnects = server.stats.drops, sink.reconnects
        connections = list(server.stats.per_connection)
        assert reconnects == drops
        assert session.connections == server.stats.connections == drops + 1
    assert [c.closed_by for c in connections[:drops]] == ["drop"] * drops
    for i, connection in enumerate(connections[:drops]):
        # Exactly once per channel per connection, however many reconnects came before.
        assert connection.requested == Counter(dict.fromkeys(file.keys, 1)), i
        assert connection.subscriptions == Counter(dict.fromkeys(file.keys, 1)), i
    assert set(connections[drops].requested.values()) == {1}
    assert all(c.messages_sent > 0 for c in connections)
    assert all(sink.quotes_per_connection[i] > 0 for i in range(1, drops + 2)), (
        sink.quotes_per_connection)
    assert sink.rejects == Counter()


@pytest.mark.parametrize("venue", VENUES)
async def test_garbage_frames_are_counted_as_malformed_and_the_feed_goes_on(
        venue: str, tmp_path: Path) -> None:
    async with replaying(venue, tmp_path, Faults(garbage_rate=0.3, seed=3)) as (
            server, session, sink, file):
        await wait_until(lambda: server.finished.is_set()
                         and sink.rejects["malformed"] == server.stats.garbage_sent > 0,
                         "every garbage frame counted")
        assert sink.rejects == Counter(malformed=server.stats.garbage_sent)
        assert "quote" in sink.events[sink.events.index("malformed"):]  # the feed went on
        assert (session.connections, sink.reconnects, sink.connected) == (1, 0, [True])
    subscribed_rows = [raw for _, raw in file.rows if server.venue.key_of(raw) in file.keys]
    assert server.stats.messages_sent == len(subscribed_rows)
    assert server.stats.garbage_sent < len(subscribed_rows)


@pytest.mark.parametrize("venue", VENUES)
async def test_refused_subscribe_is_counted_and_retried_after_a_growing_backoff(
        venue: str, tmp_path: Path) -> None:
    async with replaying(venue, tmp_path, Faults(reject_subscribe=True)) as (
            server, _session, sink, _file):
        def refused() -> int:  # Bybit's answer names each topic: it counts topics
            if venue != "bybit":
                return server.stats.subscribes_rejected
            return sum(c.requested.total() for c in server.stats.per_connection)

        await wait_until(lambda: server.stats.subscribes_rejected >= 3
                         and sink.rejects["subscribe_rejected"] == refused(),
                         "three refused subscriptions, each counted by the session")
        opened = [c.opened_at for c in server.stats.per_connection]
        assert True not in sink.connected
        assert sink.quotes == []
        assert server.stats.subscriptions == Counter()
    gaps = [later - earlier for earlier, later in itertools.pairwise(opened)]
    # The session's backoff: RECONNECT_INITIAL_S doubling, ±20 % jitter; a crash loop
    # would be faster.
    assert all(gap >= 0.8 * RECONNECT_INITIAL_S * 2**i for i, gap in enumerate(gaps)), gaps
    assert len(opened) <= 4


@pytest.mark.parametrize("venue", VENUES)
async def test_stalled_server_is_given_up_for_its_silence_and_reconnected(
        venue: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    faults = Faults(stall_after_s=STALL_AFTER_S)
    async with replaying(venue, tmp_path, faults, loop=True) as (server, session, sink, _):
        await wait_until(lambda: sink.connected.count(True) >= 2 and any(
            sink.quotes_per_connection[i] > 0 for i in range(2, session.connections + 1)),
            "streaming again after a stall")
        first = server.stats.per_connection[0]
    assert first.closed_by == "client"  # the session gave up, not the server
    assert first.closed_at is not None
    assert first.closed_at > first.opened_at + STALL_AFTER_S  # after the stall, not before
    # Given up for the silence, on the window the session uses (how soon after the
    # stall real time let it act is the scheduler's, not asserted).
    assert _first_loss(caplog, venue) in silence_reasons(session)
    assert first.messages_sent > 0
    assert server.stats.drops == server.stats.idle_closes == 0
    assert session.connections >= 2
    assert sink.reconnects >= 1


async def test_binance_pings_unanswered_while_data_flows_are_a_dead_connection(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    faults = Faults(stop_heartbeats_after_s=STOP_HEARTBEATS_AFTER_S)
    async with replaying("binance", tmp_path, faults, loop=True) as (server, _, sink, _file):
        await wait_until(lambda: server.stats.connections >= 2, "a reconnect")
        first = server.stats.per_connection[0]
    assert first.closed_by == "client"
    assert first.closed_at is not None
    assert first.closed_at - first.opened_at > STOP_HEARTBEATS_AFTER_S  # not before the stop
    # Given up on the first ping left unanswered, one heartbeat after sending it: the
    # session's own decision, whatever the scheduler made of the times.
    assert first.pings_unanswered == 1
    assert _first_loss(caplog, "binance") == f"no pong within {HEARTBEAT_S:.1f}s"
    assert first.messages_sent > 0  # data kept coming: the pongs were what was missing
    assert sink.reconnects >= 1


@pytest.mark.parametrize("venue", ["okx", "bybit"])
async def test_okx_and_bybit_pings_go_unanswered_after_the_heartbeat_stop(
        venue: str, tmp_path: Path) -> None:
    faults = Faults(stop_heartbeats_after_s=STOP_HEARTBEATS_AFTER_S)
    async with replaying(venue, tmp_path, faults, loop=True) as (server, session, sink, _):
        connections = server.stats.per_connection
        await wait_until(lambda: bool(connections) and connections[0].pings_unanswered >= 3,
                         "three pings unanswered after the stop")
        first = server.stats.per_connection[0]
        # Pings every 0.3 s: at most 2 of them before the stop (load can only make it
        # fewer), every pong the session got one the server sent, and none since.
        assert session.pongs == first.pings_answered <= 2
        quotes = len(sink.quotes)
        await wait_until(lambda: len(sink.quotes) > quotes, "quotes still flowing")


async def test_okx_closes_a_connection_it_sent_nothing_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OkxReplay, "idle_close_s", 0.3)  # OKX's is 30 s
    async with ReplayServer(okx_file(tmp_path / "okx.ndjson").path, venue="okx") as server:
        async with connect(server.url) as ws:
            await asyncio.wait_for(ws.wait_closed(), timeout=5)
        connection = server.stats.per_connection[0]
    assert (connection.closed_by, server.stats.idle_closes) == ("idle", 1)
    assert connection.closed_at is not None
    assert connection.closed_at - connection.opened_at >= 0.3


def _first_loss(caplog: pytest.LogCaptureFixture, venue: str) -> str:
    """Why the session says its first connection was lost (its ``VenueDisconnected``)."""
    prefix = f"{venue}: connection lost (VenueDisconnected: "
    lost = [m for r in caplog.records if (m := r.getMessage()).startswith(prefix)]
    assert lost, [r.getMessage() for r in caplog.records]
    return lost[0].removeprefix(prefix).removesuffix(")")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body


async def test_bybit_session_follows_the_instrument_list_over_pages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BybitReplay, "max_page", 2)  # Bybit's is 1000
    async with replaying("bybit", tmp_path) as (server, _, sink, file):
        await wait_until(lambda: {q.instrument for q in sink.quotes} >= set(BYBIT_BTC),
                         "quotes of every BTC option, the one on page 2 too")
        assert server.stats.subscriptions == Counter(dict.fromkeys(file.keys, 1))
        assert server.stats.http_requests == 4  # BTC's three options on two pages, SOL, ETH
        wrong = await asyncio.to_thread(
            _get, f"{server.http_url}{bybit_protocol.INSTRUMENTS_PATH}?category=linear")
    with pytest.raises(VenueError, match="refused"):
        bybit_protocol.parse_instruments(wrong)


async def test_serve_replay_command_speaks_okx_to_the_okx_session(tmp_path: Path) -> None:
    file = okx_file(tmp_path / "okx.ndjson")
    task: asyncio.Task[None] | None = None
    sink = RecordingSink("okx")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamer.cli", "serve-replay", str(file.path), "--venue", "okx",
        "--port", "0", "--loop", stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
        assert " as okx on ws://127.0.0.1:" in line, line
        url = line.split(" on ", 1)[1].split()[0]
        session = OkxSession(url, ["BTC"], sink, heartbeat_s=HEARTBEAT_S)
        task = asyncio.create_task(session.run())
        await wait_until(lambda: any(q.bid_price > 0 for q in sink.quotes),
                         "quotes with a book, through the command's server")
        assert sink.rejects == Counter()
    finally:
        if task is not None:
            await stop_session(task)  # mid-stream, with the server still sending
        process.terminate()
        await process.wait()
