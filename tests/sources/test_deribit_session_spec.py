"""The Deribit adapter's spec, item by item, against the replay server on loopback.

Instrument refresh (new listings subscribed, expired ones unsubscribed), platform
maintenance (down but connected, up on unlock), 10028 too_many_requests (a longer
wait), stopped heartbeats (given up after two intervals, then reconnected), refused
and unconfirmed subscriptions (counted, logged, capped backoff). Times asserted come
from the server's connection log and are lower bounds (waited at least ...), never
upper ones or speeds: how late real time let the code act is the scheduler's.
Repeated drops over a 30 s run are in test_deribit_reconnects.py.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from streamer.devtools.exchange import Faults, ReplayServer
from streamer.errors import RateLimited, VenueError
from streamer.sources.decoded import Decoded
from streamer.sources.deribit import session as session_module
from streamer.sources.deribit.protocol import DeribitDecoder, PlatformLocks, reply_error
from streamer.sources.deribit.schema import PlatformState, PlatformStatus
from streamer.tasks import backoff_delays
from tests.sources.deribit_replay import RecordingSink, all_channels, running, wait_until
from tests.sources.golden import Row, write_capture_tickfile

NEW = "BTC-30APR21-54000-C"  # the capture's busiest instrument
OLD = "ETH-23APR21-2100-P"


def _ticker(instrument: str) -> str:
    return f"ticker.{instrument}.raw"


def _quick_backoff(initial_s: float = 0.05, max_s: float = 0.4) -> Callable[[], Iterator[float]]:
    return partial(backoff_delays, initial_s=initial_s, max_s=max_s, rng=random.Random(0))


def _messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.fixture
def capture(tmp_path: Path) -> tuple[Path, list[Row]]:
    path = tmp_path / "capture.ndjson"
    return path, write_capture_tickfile(path)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=session_module.__name__)
    return caplog


# -- 1. instrument refresh --------------------------------------------------------------

@pytest.mark.integration
async def test_refresh_subscribes_a_new_listing_and_unsubscribes_an_expired_instrument(
        capture: tuple[Path, list[Row]], logs: pytest.LogCaptureFixture) -> None:
    path, rows = capture
    faults = Faults(new_listing=(NEW, 0.3), expiry=(OLD, 0.6))
    async with running(path, faults, loop=True, refresh_s=0.05) as (server, _, sink):
        await wait_until(lambda: server.stats.unsubscriptions[_ticker(OLD)] > 0
                         and any(q.instrument == NEW for q in sink.quotes),
                         "the new listing streaming and the expired one unsubscribed")
        await asyncio.sleep(0.3)  # several more refreshes: nothing is asked for twice
        first = server.stats.per_connection[0]
        quotes = list(sink.quotes)
        assert (server.stats.connections, sink.reconnects, sink.connected) == (1, 0, [True])
    assert first.requested == Counter(dict.fromkeys(all_channels(rows), 1))
    assert first.unsubscriptions == Counter({_ticker(OLD): 1})
    assert sink.rejects == Counter()
    # Listed late: first subscribed by a refresh, so its first quote is not the first one.
    assert next(i for i, q in enumerate(quotes) if q.instrument == NEW) > 0
    assert _messages(logs, "subscribed to 12 channels")  # platform_state, 2 DVOLs, 9 tickers
    assert _messages(logs, "subscribed to 13 channels")  # the new listing added
    assert _messages(logs, f"unsubscribed 1 channel(s) of delisted instruments: {_ticker(OLD)}")


# -- 2. platform_state: maintenance and index locks ---------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("index", [None, "btc_usd"], ids=["maintenance", "btc-index-locked"])
async def test_maintenance_reports_the_venue_down_keeps_the_connection_and_resumes_on_unlock(
        capture: tuple[Path, list[Row]], logs: pytest.LogCaptureFixture,
        index: str | None) -> None:
    path, _ = capture
    # No data for 2.5 s, longer than the 2 s the session allows without a heartbeat:
    # heartbeats keep coming, so the connection stays.
    faults = Faults(maintenance=(0.3, 2.5), maintenance_index=index)
    async with running(path, faults, loop=True, heartbeat_s=1) as (server, _, sink):
        await wait_until(lambda: sink.connected == [True, False], "down during maintenance")
        await wait_until(lambda: sink.connected == [True, False, True], "up after it")
        await wait_until(lambda: sink.quotes_per_connection[2] > 0, "quotes after the unlock")
    assert (server.stats.connections, sink.reconnects) == (1, 0)
    assert server.stats.platform_notices >= 5  # the lock repeated every 0.5 s, then unlocked
    assert len(_messages(logs, "platform locked")) == 1  # logged once, not per notice
    assert len(_messages(logs, "platform unlocked")) == 1
    assert sink.rejects == Counter()


class _LockAwareSink(RecordingSink):
    """Also notes whether the server had the platform locked at each state change."""

    def __init__(self, server: ReplayServer) -> None:
        super().__init__()
        self.server = server
        self.states: list[tuple[bool, bool]] = []

    def on_connected(self, venue: str, connected: bool) -> None:
        super().on_connected(venue, connected)
        self.states.append((connected, self.server.platform_locked))


@pytest.mark.integration
async def test_a_reconnect_during_maintenance_stays_down_until_the_unlock(
        capture: tuple[Path, list[Row]], logs: pytest.LogCaptureFixture) -> None:
    path, _ = capture
    # Drops at 0.6 s and 1.2 s fall inside the maintenance window (0.2 s to 1.7 s): the
    # new connections learn the lock from public/status, not from a notice they missed.
    faults = Faults(maintenance=(0.2, 1.5), drop_every_s=0.6)
    async with running(path, faults, loop=True, backoff=_quick_backoff(),
                       make_sink=_LockAwareSink) as (server, _, sink):
        assert isinstance(sink, _LockAwareSink)
        await wait_until(lambda: sink.connected.count(True) >= 2 and not server.platform_locked,
                         "up again after the maintenance")
    assert sink.states[:2] == [(True, False), (False, True)]
    # Down while locked: the lock, then both drops, so a connection opened in between.
    assert sink.states.count((False, True)) >= 3, sink.states
    assert (True, True) not in sink.states  # never reported up while locked
    assert len(_messages(logs, "platform locked")) == 1  # once, across the reconnects


def test_platform_locks_follow_notifications_and_status_for_our_currencies_only() -> None:
    locks = PlatformLocks(["BTC", "USDC"])
    assert not locks.apply(PlatformState(price_index="eth_usd", locked=True))  # not ours
    assert locks.apply(PlatformState(price_index="btc_usd", locked=True))
    assert not locks.apply(PlatformState(price_index="sol_usdc", locked=True))  # already
    assert not locks.apply(PlatformState(price_index="btc_usd", locked=False))  # sol_usdc
    assert locks.apply(PlatformState(locked=False))  # platform-wide unlock frees all
    assert locks.apply(PlatformState(maintenance=True))
    assert locks.describe() == "platform"
    assert locks.apply(PlatformState(maintenance=False))
    assert locks.reset(PlatformStatus(locked="partial", locked_indices=["btc_usd"]))
    assert locks.apply(PlatformState(price_index="btc_usd", locked=False))
    assert not locks.reset(PlatformStatus(locked="partial", locked_indices=["eth_usd"]))
    assert locks.reset(PlatformStatus(locked="true"))
    assert locks.locked


def test_platform_state_notifications_decode_to_a_lock_state() -> None:
    frame = (b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"platform_state",'
             b'"data":{"price_index":"sol_usdc","locked":true}}}')
    decoded = DeribitDecoder().decode(frame, 0)
    assert decoded.platform == PlatformState(price_index="sol_usdc", locked=True)
    assert decoded.rejects == []
    locks = PlatformLocks(["SOL", "USDC"])
    assert locks.notified(decoded)  # the frame straight in: the lock changed
    assert not locks.notified(Decoded(heartbeat=True))  # no notification: nothing changed


def test_a_reply_error_is_a_rate_limit_for_10028_and_a_refusal_otherwise() -> None:
    assert reply_error(Decoded(response_id=3, result=["x"])) is None
    limited = reply_error(Decoded(response_id=3, error_code=10028,
                                  error_message="too_many_requests"))
    assert isinstance(limited, RateLimited)
    assert str(limited) == "error 10028: too_many_requests"
    refused = reply_error(Decoded(response_id=4, error_code=11050, error_message="bad_request"))
    assert type(refused) is VenueError
    assert refused is not None
    assert not refused.retryable  # the session decides (VenueRefused)


# -- 3. 10028 too_many_requests -------------------------------------------------------------

@pytest.mark.integration
async def test_too_many_requests_closes_the_session_and_the_reconnect_waits_longer(
        capture: tuple[Path, list[Row]], logs: pytest.LogCaptureFixture) -> None:
    path, rows = capture
    # An ordinary reconnect here waits about 0.06 s; after 10028 at least 1 s.
    async with running(path, Faults(rate_limit_subscribes=1), backoff=_quick_backoff(),
                       rate_limited_delay_s=1.0) as (server, _, sink):
        await wait_until(lambda: True in sink.connected and len(sink.quotes) > 0,
                         "streaming after the rate limit", timeout_s=10)
        first, second = server.stats.per_connection[:2]
        assert sink.connected == [False, True]  # the refused connection never came up
    assert first.closed_by == "rate_limit"
    assert first.rate_limited_at is not None
    assert second.opened_at - first.rate_limited_at >= 1.0
    assert second.requested == Counter(dict.fromkeys(all_channels(rows), 1))
    assert (server.stats.connections, sink.reconnects, server.stats.rate_limited) == (2, 1, 1)
    assert sink.rejects == Counter()  # a rate limit is not a refused subscription
    assert _messages(logs, "too_many_requests (10028)")
    assert _messages(logs, "reconnecting in 1.00s")


# -- 5. heartbeats stop -----------------------------------------------------------------------

@pytest.mark.integration
async def test_stopped_heartbeats_are_given_up_after_two_intervals_and_reconnected(
        capture: tuple[Path, list[Row]], logs: pytest.LogCaptureFixture) -> None:
    path, _ = capture
    interval = 1
    # Heartbeats stop 1.5 s into each connection while data keeps flowing (loop).
    async with running(path, Faults(stop_heartbeats_after_s=1.5), loop=True,
                       heartbeat_s=interval, backoff=_quick_backoff()) as (server, _, sink):
        await wait_until(lambda: server.stats.connections >= 2, "a reconnect", timeout_s=10)
        first = server.stats.per_connection[0]
    assert first.last_heartbeat_at is not None
    assert first.heartbeats_sent >= 1
    assert first.closed_at is not None
    # Two intervals after the last heartbeat at the earliest (the server stamps it
    # before sending), and for that reason: the window the session used, which it logs.
    # How soon after it real time let the session act is the scheduler's, not asserted.
    assert first.closed_at - first.last_heartbeat_at >= 2 * interval
    assert first.closed_by == "client"  # the session gave up, not the server
    assert server.stats.heartbeat_closes == server.stats.drops == 0
    assert first.messages_sent > 0
    assert sink.reconnects >= 1
    assert _messages(logs, "connection lost (VenueDisconnected: no heartbeat for 2.0s)")


# -- 6. refused and unconfirmed subscriptions ------------------------------------------------

@pytest.mark.integration
async def test_refused_subscription_is_logged_counted_and_retried_with_growing_capped_backoff(
        capture: tuple[Path, list[Row]], logs: pytest.LogCaptureFixture) -> None:
    path, _ = capture
    # Delays 0.1, 0.2, 0.4, 0.8, 0.8 s (±20 % jitter) between attempts.
    backoff = _quick_backoff(initial_s=0.1, max_s=0.8)
    async with running(path, Faults(reject_subscribe=True), backoff=backoff) as (
            server, _, sink):
        await wait_until(lambda: server.stats.connections >= 6, "six attempts")
        opened = [c.opened_at for c in server.stats.per_connection[:6]]
        rejected = sink.rejects["subscribe_rejected"]
    # The waits the session chose (its log line before each sleep), not the gaps the
    # server saw: those add handshakes and scheduling, which load stretches at random.
    waits = [float(m) for m in re.findall(r"reconnecting in ([\d.]+)s",
                                          "\n".join(_messages(logs, "reconnecting in")))][:5]
    gaps = [later - earlier for earlier, later in itertools.pairwise(opened)]
    assert all(gap >= wait for gap, wait in zip(gaps, waits, strict=True)), (gaps, waits)
    assert waits[0] < waits[1] < waits[2] < waits[3], waits
    assert max(waits) <= 0.8 * 1.2, waits  # capped
    assert rejected >= 5 * 13  # every channel of each refused request (13 here)
    assert True not in sink.connected
    assert server.stats.subscriptions == Counter()
    refused = _messages(logs, "subscription of 13 channel(s) refused (error 11050: bad_request)")
    assert len(refused) >= 5


@pytest.mark.integration
async def test_a_channel_left_out_of_the_reply_is_asked_once_more_then_counted_rejected(
        capture: tuple[Path, list[Row]], logs: pytest.LogCaptureFixture) -> None:
    path, rows = capture
    refused = _ticker(OLD)
    decoder = DeribitDecoder()
    expected = [q for row in rows for q in decoder.decode(row.raw, 0).quotes
                if q.instrument != OLD]
    async with running(path, Faults(refuse_channels=frozenset({refused})),
                       refresh_s=0.05) as (server, _, sink):
        await wait_until(lambda: server.finished.is_set() and len(sink.quotes) >= len(expected),
                         "every quote of the confirmed channels")
        await asyncio.sleep(0.2)  # a few refreshes: the refused channel is left alone
        first = server.stats.per_connection[0]
        assert (server.stats.connections, sink.reconnects, sink.connected) == (1, 0, [True])
    assert first.requested == Counter({**dict.fromkeys(all_channels(rows), 1), refused: 2})
    assert sink.rejects == Counter(subscribe_rejected=1)
    assert len(sink.quotes) == len(expected)
    assert _messages(logs, f"1 channel(s) not confirmed twice, left out on this connection: "
                           f"{refused}")
