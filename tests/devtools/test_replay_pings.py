"""The replay server's count of the client's pings: answered, or held back once the
``stop_heartbeats_after_s`` fault holds (what the loopback tests assert on, instead of
how long the session took to give up). No socket: the venue protocol's ``answer``."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from streamer.devtools.exchange import Faults
from streamer.devtools.exchange.bybit import BybitReplay
from streamer.devtools.exchange.okx import OkxReplay
from streamer.devtools.exchange.stats import ConnectionStats
from streamer.devtools.exchange.venue import Client, VenueProtocol

PINGS = {"okx": (OkxReplay, "ping"),
         "bybit": (BybitReplay, json.dumps({"op": "ping", "req_id": "1"}))}


def _client(stop_after_s: float, opened_s_ago: float) -> Client:
    stats = ConnectionStats()
    stats.opened_at -= opened_s_ago
    return Client(cast(Any, None), Faults(stop_heartbeats_after_s=stop_after_s), stats=stats)


@pytest.mark.parametrize("venue", sorted(PINGS))
def test_a_ping_is_answered_and_counted_before_the_stop_and_held_back_after(venue: str) -> None:
    replay_class, ping = PINGS[venue]
    protocol: VenueProtocol = replay_class(cast(Any, None))  # a ping asks nothing of it
    before, after = _client(60.0, opened_s_ago=0.0), _client(0.5, opened_s_ago=1.0)
    assert protocol.answer(before, ping) != []
    assert protocol.answer(after, ping) == []
    assert protocol.answer(after, ping) == []
    assert (before.stats.pings_answered, before.stats.pings_unanswered) == (1, 0)
    assert (after.stats.pings_answered, after.stats.pings_unanswered) == (0, 2)
