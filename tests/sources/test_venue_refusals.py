"""OKX and Bybit on the replay server: refused channels across reconnects, expiries unsubscribed.

The real sessions on loopback (``venue_replay.replaying``). A channel the venue
refuses is asked for once, not again on every reconnect of a drop storm; an option
that expires (OKX: a summary of its family stamped at or after its expiry; Bybit:
gone from the REST list at an instrument refresh) is unsubscribed on the same
connection, once, and nothing else is.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from streamer.devtools.exchange import Faults
from streamer.tickfile import TickFileWriter
from tests.sources.venue_replay import replaying
from tests.sources.venue_support import wait_until
from tests.sources.venue_ticks import BYBIT_BTC, OKX_SUMMARY, START_NS, VenueFile, okx_file

pytestmark = pytest.mark.integration

REFUSED = {"okx": "index-tickers:BTC-USD", "bybit": f"tickers.{BYBIT_BTC[1]}"}
# (expiring, listed mid-run) per venue: options the venue's file has data of
STAGED = {"bybit": (BYBIT_BTC[2], BYBIT_BTC[0])}
TICKER_KEY = {"bybit": "tickers.{}"}
EXPIRES_AT_S, LISTED_AT_S = 0.4, 0.2


@pytest.mark.parametrize("venue", ["okx", "bybit"])
async def test_a_refused_channel_is_not_asked_again_on_each_reconnect_of_a_drop_storm(
        venue: str, tmp_path: Path) -> None:
    refused = REFUSED[venue]
    faults = Faults(refuse_channels=frozenset({refused}), drop_every_s=1.5)
    async with replaying(venue, tmp_path, faults, loop=True) as (server, _, sink, file):
        await wait_until(lambda: server.stats.drops >= 3
                         and sink.connected.count(True) == server.stats.drops + 1,
                         "three drops, streaming again after each", timeout_s=15)
        connections = list(server.stats.per_connection)
        rejects = Counter(sink.rejects)
    assert [c.requested[refused] for c in connections] == [1] + [0] * (len(connections) - 1)
    for connection in connections[1:3]:  # everything else, once on each dropped connection
        assert connection.closed_by == "drop"
        assert connection.requested == Counter(dict.fromkeys(file.keys - {refused}, 1))
    assert rejects == Counter(subscribe_rejected=1)


async def test_a_bybit_option_no_longer_listed_is_unsubscribed_once_on_the_same_connection(
        tmp_path: Path) -> None:
    venue = "bybit"
    old, new = STAGED[venue]
    expiring, listed = TICKER_KEY[venue].format(old), TICKER_KEY[venue].format(new)
    faults = Faults(expiry=(old, EXPIRES_AT_S), new_listing=(new, LISTED_AT_S))
    async with replaying(venue, tmp_path, faults, loop=True, refresh_s=0.1) as (
            server, session, sink, _):
        await wait_until(lambda: server.stats.unsubscriptions[expiring] == 1,
                         "the expired option unsubscribed")
        quotes = len(sink.quotes)
        await wait_until(lambda: len(sink.quotes) > quotes + 5, "the others still streaming")
        first = server.stats.per_connection[0]
        assert (session.connections, sink.reconnects) == (1, 0)
        assert first.unsubscriptions == Counter({expiring: 1})  # only it, only once
        assert first.subscriptions[listed] == 1  # a listing is not mistaken for anything
    assert sink.rejects == Counter()


EXPIRY_0800_MS = 1_701_417_600_000  # 2023-12-01T08:00:00Z: the golden summary's 231201 options


def _okx_file_crossing_an_expiry(path: Path) -> VenueFile:
    """The OKX file, plus at 0.5 s the golden summary stamped just after 08:00 UTC.

    A push lists only options of its family, not necessarily all of them: a missing
    option is not an expired one. The stamp is what expires the nine 231201 options.
    """
    file = okx_file(path)
    late = json.loads(OKX_SUMMARY)
    for item in late["data"]:
        item["ts"] = str(EXPIRY_0800_MS + 500)
    row = (START_NS + 500_000_000, json.dumps(late, separators=(",", ":")).encode())
    rows = sorted([*file.rows, row])
    with TickFileWriter(path) as writer:
        for received_ns, raw in rows:
            writer.write(received_ns, raw)
    return VenueFile(file.path, file.currencies, file.keys, rows)


async def test_okx_options_are_unsubscribed_once_when_a_summary_is_stamped_past_their_expiry(
        tmp_path: Path) -> None:
    names = [item["instId"] for item in json.loads(OKX_SUMMARY)["data"]]
    expiring = {f"tickers:{n}" for n in names if "-231201-" in n}
    assert len(expiring) == 9
    async with replaying("okx", tmp_path, file_of=_okx_file_crossing_an_expiry) as (
            server, session, sink, _):
        await wait_until(lambda: server.stats.per_connection
                         and set(server.stats.per_connection[0].unsubscriptions) == expiring,
                         "the expired options unsubscribed")
        await asyncio.sleep(0.3)  # nothing else goes, nothing goes twice
        first = server.stats.per_connection[0]
        assert (session.connections, sink.reconnects) == (1, 0)
        assert first.unsubscriptions == Counter(dict.fromkeys(expiring, 1))
        assert {first.requested[key] for key in expiring} == {1}, first.requested  # once, before
    assert sink.rejects == Counter(expired=9)  # the late push's expired items
