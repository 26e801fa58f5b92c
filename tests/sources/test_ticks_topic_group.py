"""The calibrators' consumer group runs on the configured timeouts.

A dead member's partitions move once its session times out and the survivors rejoin
(``benchmarks/bench_split_takeover.py`` measures it end to end); before, the settings
never reached aiokafka, and the group ran on its defaults (10 s session, 3 s heartbeat,
a 300 s rebalance timeout). aiokafka keeps what it is given on the consumer, unstarted.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from streamer.config import KafkaConfig
from streamer.kafka_client import group_options


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
