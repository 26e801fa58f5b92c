"""OKX, Bybit and Binance sessions against the replay server: rate limits, refused
channels, listings and expiries, Binance's server pings.

The same loopback pair as test_venue_replay.py (``venue_replay.replaying``). Rate
limits back off by the cooldown, not the plain backoff; a refused channel leaves the
others streaming on the same connection; a listing is picked up mid-run and an
expired option not asked again; Binance's server pings are answered, and its replay
closes a connection that stops answering them. Waits poll for an outcome with a
deadline; times asserted come from the server's connection log.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import time
from collections import Counter
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from streamer.devtools.exchange import Faults, ReplayServer
from streamer.sources.ws_session import RATE_LIMIT_COOLDOWN_S
from tests.sources.deribit_replay import comparable
from tests.sources.venue_replay import VENUES, expected_quotes, replaying
from tests.sources.venue_support import wait_until
from tests.sources.venue_ticks import BINANCE_BTC, BYBIT_BTC, binance_file

pytestmark = pytest.mark.integration

RATE_LIMITED = {"okx": "error 60014: Requests too frequent.", "bybit": "too many requests",
                "binance": "error -1003: Too many requests"}  # what each session logs


@pytest.mark.parametrize("venue", VENUES)
async def test_rate_limited_subscribes_are_counted_logged_and_retried_after_a_growing_backoff(
        venue: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The first two subscribes get the venue's rate-limit answer, then the server
    # closes the connection (as Deribit does after 10028).
    async with replaying(venue, tmp_path, Faults(rate_limit_subscribes=2)) as (
            server, session, sink, file):
        await wait_until(lambda: len(sink.quotes) > 0 and server.stats.connections == 3
                         and set(server.stats.per_connection[2].requested) == file.keys,
                         "everything subscribed and streaming on the third connection")
        first, second, third = server.stats.per_connection
        assert sink.connected == [False, False, True]  # never reported up while refused
    assert [first.closed_by, second.closed_by] == ["rate_limit", "rate_limit"]
    assert first.rate_limited_at is not None
    assert second.rate_limited_at is not None
    # The cooldown, not the 0.1 s backoff: one window, then twice that.
    assert second.opened_at - first.rate_limited_at >= RATE_LIMIT_COOLDOWN_S
    assert third.opened_at - second.rate_limited_at >= 2 * RATE_LIMIT_COOLDOWN_S
    assert third.requested == Counter(dict.fromkeys(file.keys, 1))
    assert (server.stats.rate_limited, sink.reconnects, session.connections) == (2, 2, 3)
    assert sink.rejects == Counter(rate_limited=2)  # ticks_rejected{reason=...}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len([m for m in errors if RATE_LIMITED[venue] in m]) == 2, errors
    assert all("rate limited" in m for m in errors if RATE_LIMITED[venue] in m), errors


async def test_rate_limits_after_streaming_grow_the_cooldown_connection_after_connection(
        tmp_path: Path) -> None:
    # OKX subscribes its tickers once it streams (in maintain): every third subscribe,
    # each connection's tickers batch after its two family channels, is rate-limited.
    async with replaying("okx", tmp_path, Faults(rate_limit_every=3), loop=True) as (
            server, _session, sink, _file):
        # 7 s of cooldowns (1 + 2 + 4) and three connections' streaming: the deadline
        # leaves room for a loaded 2-core machine (20 s once ran out there)
        await wait_until(lambda: server.stats.connections >= 4, "four connections",
                         timeout_s=60)
        connections = server.stats.per_connection[:4]
        assert sink.connected.count(True) >= 3  # each streamed before it was limited
    limited = connections[:3]
    assert [c.closed_by for c in limited] == ["rate_limit"] * 3
    gaps = [later.opened_at - earlier.rate_limited_at
            for earlier, later in itertools.pairwise(connections)
            if earlier.rate_limited_at is not None]
    # Streaming first does not start the cooldowns over: 1 s, then 2 s, then 4 s.
    assert [gap >= RATE_LIMIT_COOLDOWN_S * 2**i for i, gap in enumerate(gaps)] == [True] * 3
    assert sink.rejects["rate_limited"] >= 3


@pytest.mark.parametrize(("venue", "refused", "counted"), [
    pytest.param("okx", "tickers:BTC-USD-231215-39000-C", 1, id="okx-ticker"),
    pytest.param("okx", "index-tickers:BTC-USD", 1, id="okx-index"),
    pytest.param("bybit", "tickers.BTC-28APR23-28000-P", 1, id="bybit"),
    # Binance acknowledges any stream name ({"result": null}): nothing to count.
    pytest.param("binance", "xrpusdt@optionMarkPrice", 0, id="binance"),
])
async def test_a_refused_channel_is_counted_once_and_every_other_channel_keeps_streaming(
        venue: str, refused: str, counted: int, tmp_path: Path) -> None:
    faults = Faults(refuse_channels=frozenset({refused}))
    async with replaying(venue, tmp_path, faults) as (server, session, sink, file):
        expected = expected_quotes(venue, file, file.keys - {refused})
        await wait_until(server.finished.is_set, "the file played")
        assert (session.connections, sink.reconnects, sink.connected) == (1, 0, [True])
        await wait_until(lambda: len(sink.quotes) >= len(expected),
                         "every quote of the channels confirmed")
        first = server.stats.per_connection[0]
    assert first.requested == Counter(dict.fromkeys(file.keys, 1))  # not asked again
    assert refused not in first.subscriptions
    assert comparable(sink.quotes) == comparable(expected)
    assert sink.rejects == Counter(subscribe_rejected=counted)


# (listed mid-run, expiring) per venue: options the venue's file has data of
STAGED = {"okx": ("BTC-USD-231215-39000-C", "BTC-USD-240126-27000-P"),
          "bybit": (BYBIT_BTC[0], BYBIT_BTC[2]), "binance": (BINANCE_BTC[2], BINANCE_BTC[1])}
TICKER_KEY = {"okx": "tickers:{}", "bybit": "tickers.{}"}  # Binance streams whole chains
# The expiry comes first: the server checks both when it sends, and one connection keeps
# the order it sends in, so every quote of the expired option must arrive before the first
# of the listing (no wall-clock window to miss under load).
EXPIRES_AT_S, LISTED_AT_S = 0.6, 0.9
DROP_AFTER_S = 1.6  # one reconnect after both


@pytest.mark.parametrize("venue", VENUES)
async def test_a_listing_mid_run_streams_on_the_same_connection_and_an_expiry_is_not_asked_again(
        venue: str, tmp_path: Path) -> None:
    # OKX finds the listing in its next opt-summary, Bybit in its next instrument
    # refresh (REST), Binance in its chain's mark-price arrays (no refresh needed).
    new, old = STAGED[venue]
    faults = Faults(new_listing=(new, LISTED_AT_S), expiry=(old, EXPIRES_AT_S),
                    drop_every_s=DROP_AFTER_S)
    async with replaying(venue, tmp_path, faults, loop=True, refresh_s=0.1) as (
            server, _, sink, file):
        def priced(name: str, connection: int) -> list[float]:
            return [at for q, (c, at) in zip(sink.quotes, sink.arrivals, strict=True)
                    if q.instrument == name and c == connection and q.bid_price > 0]

        await wait_until(lambda: priced(new, 2) != [], "the listing streaming after a reconnect")
        started = server.timeline.started_at
        first, second = server.stats.per_connection[:2]
        listed, expired = priced(new, 1), priced(old, 1)
        assert sink.rejects == Counter()  # never asked for before it was listed
    assert started is not None
    assert first.closed_by == "drop"
    assert listed, "picked up on the connection it was listed on"
    assert min(listed) >= started + LISTED_AT_S
    assert expired
    assert max(expired) < min(listed), (max(expired) - started, min(listed) - started)  # silent
    if venue in TICKER_KEY:
        new_key, old_key = TICKER_KEY[venue].format(new), TICKER_KEY[venue].format(old)
        assert (first.requested[new_key], second.requested[new_key]) == (1, 1)
        assert (first.requested[old_key], second.requested[old_key]) == (1, 0)
    else:
        assert first.requested == second.requested == Counter(dict.fromkeys(file.keys, 1))


SERVER_PING_S, PONG_TIMEOUT_S = 0.1, 0.35  # Binance's: 5 and 15 minutes


async def test_binance_session_answers_the_servers_pings_and_keeps_its_connection(
        tmp_path: Path) -> None:
    async with replaying("binance", tmp_path, loop=True, ping_interval_s=SERVER_PING_S,
                         pong_timeout_s=PONG_TIMEOUT_S) as (server, session, sink, _):
        await wait_until(lambda: server.stats.connections == 1
                         and server.stats.per_connection[0].server_pings >= 8,
                         "eight server pings, more than two timeouts' worth")
        connection = server.stats.per_connection[0]
        quotes = len(sink.quotes)
        await wait_until(lambda: len(sink.quotes) > quotes, "quotes still flowing")
        assert connection.server_pongs >= connection.server_pings - 1  # one may be on its way
        assert (connection.closed_by, server.stats.connections, sink.reconnects) == ("", 1, 0)
        assert session.pongs >= 2  # and its own pings answered meanwhile


async def test_binance_replay_closes_a_connection_that_stops_answering_its_pings(
        tmp_path: Path) -> None:
    file = binance_file(tmp_path / "binance.ndjson")
    # max_queue=0: with one message unread, websockets stops reading the socket (flow
    # control), so the server's pings are neither read nor answered.
    async with ReplayServer(file.path, venue="binance", loop=True, ping_interval_s=SERVER_PING_S,
                            pong_timeout_s=PONG_TIMEOUT_S) as server, connect(
            f"{server.url}/market/stream", ping_interval=None, max_queue=0) as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@optionMarkPrice"],
                                  "id": 1}))
        await wait_until(lambda: server.stats.connections == 1 and (
            server.stats.per_connection[0].closed_by == "pong_timeout"),
            "the server giving up on the pongs")
        gave_up_at = time.monotonic()
        connection = server.stats.per_connection[0]
        pings, pongs = connection.server_pings, connection.server_pongs
        with contextlib.suppress(ConnectionClosed):  # reading again: data, pings, the close
            async for _ in ws:
                pass
    assert (ws.close_code, ws.close_reason) == (1008, f"no pong for {PONG_TIMEOUT_S:g}s")
    assert pongs == 0
    assert gave_up_at - connection.opened_at > PONG_TIMEOUT_S  # waited the timeout at least
    # And closed at its first check past the timeout, not later: checking (and pinging)
    # every SERVER_PING_S till then is at most 3 pings; a loaded loop checks less often,
    # so fewer (how many is the scheduler's: no lower bound).
    assert pings <= int(PONG_TIMEOUT_S / SERVER_PING_S), pings
    assert connection.messages_sent > 0  # it was subscribed: only the pongs were missing
