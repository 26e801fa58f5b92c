"""The calibrators' consumer group runs on the configured timeouts.

A dead member's partitions move once its session times out and the survivors rejoin
(``benchmarks/bench_split_takeover.py`` measures it end to end); before, the settings
never reached aiokafka, and the group ran on its defaults (10 s session, 3 s heartbeat,
a 300 s rebalance timeout). aiokafka keeps what it is given on the consumer, unstarted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import InvalidSessionTimeoutError

from streamer.config import KafkaConfig
from streamer.errors import BrokerError
from streamer.kafka import group
from streamer.kafka.options import group_options
from streamer.sources.ticks_topic import KAFKA_MIN_SESSION_TIMEOUT_MS, TicksConsumer


async def test_the_group_member_gets_the_configured_session_heartbeat_and_rebalance() -> None:
    config = KafkaConfig(session_timeout_ms=4321, heartbeat_interval_ms=321,
                         rebalance_timeout_ms=5432)
    consumer = AIOKafkaConsumer(**group_options(config, "127.0.0.1:9", "group"))
    try:
        assert consumer._session_timeout_ms == 4321
        assert consumer._heartbeat_interval_ms == 321
        assert consumer._rebalance_timeout_ms == 5432
        assert consumer._group_id == "group"
        assert consumer._fetch_max_wait_ms < 100  # ticks as they come, not per 500 ms
    finally:
        await consumer.stop()


class _SessionFloorBroker:
    """Stands in for aiokafka's consumer against a broker whose
    ``group.min.session.timeout.ms`` is ``floor_ms``: the join fails with Kafka's
    INVALID_SESSION_TIMEOUT (surfaced by ``getmany``) below it; at or above it the
    member is in and the test cancels it."""

    joined: list[int]

    def __init__(self, floor_ms: int) -> None:
        self.floor_ms = floor_ms
        self.joined = []

    def consumer(self, **options: Any) -> Any:
        broker = self

        class Member:
            def subscribe(self, topics: list[str], listener: Any) -> None:
                pass

            async def start(self) -> None:
                broker.joined.append(options["session_timeout_ms"])

            async def getmany(self, **_: Any) -> dict[Any, Any]:
                if options["session_timeout_ms"] < broker.floor_ms:
                    raise InvalidSessionTimeoutError()
                raise asyncio.CancelledError  # joined: the member would now consume

            async def stop(self) -> None:
                pass

        return Member()


class _Sink:
    def __init__(self) -> None:
        self.connected: list[bool] = []

    def on_quote(self, quote: Any) -> None: ...
    def on_reject(self, venue: str, reason: str) -> None: ...
    def on_vol_index(self, index: Any) -> None: ...
    def on_reconnect(self, venue: str) -> None: ...

    def on_connected(self, venue: str, connected: bool) -> None:
        self.connected.append(connected)


@pytest.mark.parametrize("floor_ms", [6_000, 5_000])
async def test_a_broker_refusing_the_short_session_is_joined_with_kafkas_floor(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, floor_ms: int) -> None:
    broker = _SessionFloorBroker(floor_ms)
    monkeypatch.setattr(group, "AIOKafkaConsumer", broker.consumer)
    member = TicksConsumer(KafkaConfig(session_timeout_ms=4_000), "127.0.0.1:9", _Sink())
    with pytest.raises(asyncio.CancelledError):
        await member.run()
    assert broker.joined == [4_000, KAFKA_MIN_SESSION_TIMEOUT_MS]
    assert "kafka.session_timeout_ms=4000" in caplog.text


async def test_a_broker_refusing_kafkas_floor_too_stops_the_member_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    broker = _SessionFloorBroker(30_000)
    monkeypatch.setattr(group, "AIOKafkaConsumer", broker.consumer)
    sink = _Sink()
    member = TicksConsumer(KafkaConfig(session_timeout_ms=4_000), "127.0.0.1:9", sink)
    with pytest.raises(BrokerError, match=r"kafka\.session_timeout_ms"):
        await member.run()
    assert broker.joined == [4_000, KAFKA_MIN_SESSION_TIMEOUT_MS]
    assert sink.connected[-1] is False


def test_the_default_session_is_under_kafkas_floor_so_a_takeover_fits_in_8_s() -> None:
    # Tansu holds a join for half the session (bench_split_takeover.py: 6 s session ->
    # 9 s takeover, 4 s -> 6.1 s); a stock Kafka broker gets the fallback above.
    assert KafkaConfig().session_timeout_ms < KAFKA_MIN_SESSION_TIMEOUT_MS
