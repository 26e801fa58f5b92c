"""Topics are created when absent and checked when present (real broker)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamer.config import KafkaConfig
from streamer.kafka.admin import ensure_topics


def _config(bootstrap: str, stem: str) -> KafkaConfig:
    return msgspec.structs.replace(
        KafkaConfig(), bootstrap_servers=bootstrap, surface_topic=f"{stem}.surface",
        ticks_topic=f"{stem}.ticks", topic_partitions=4)


async def test_absent_topics_are_created_and_then_pass_the_check(
        kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> None:
    config = _config(kafka_bootstrap, unique_topic("fresh"))
    assert await ensure_topics(config, kafka_bootstrap) == []  # created
    assert await ensure_topics(config, kafka_bootstrap) == []  # present and as configured


async def test_a_mismatched_existing_topic_is_reported(
        kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> None:
    config = _config(kafka_bootstrap, unique_topic("odd"))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:  # someone made the surface topic by hand: 2 partitions, not compacted
        await admin.create_topics([NewTopic(config.surface_topic, 2, 1,
                                            topic_configs={"cleanup.policy": "delete"})])
    finally:
        await admin.close()
    problems = await ensure_topics(config, kafka_bootstrap)
    assert any("has 2 partitions" in p and config.surface_topic in p for p in problems)
    assert any("not compact" in p for p in problems)
    assert not any(config.ticks_topic in p for p in problems)  # created as configured
