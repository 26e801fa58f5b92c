"""The topics: created when absent, checked when present, and watched under a running
producer (``TopicWatch``): one key must stay on one partition, and the surface topic
must stay compacted.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from streamer.config import KafkaConfig
from streamer.kafka.errors import TopicMismatch, broker_errors
from streamer.kafka.options import consumer_options

log = logging.getLogger(__name__)


async def ensure_topics(config: KafkaConfig, bootstrap: str) -> list[str]:
    """Create the surface and dynamics (compacted) and ticks topics when absent (unless
    ``kafka.create_topics`` is off); check them when present.

    Returns the mismatches found on existing topics (each also logged as a warning):
    a partition count other than configured, or a surface topic that is not compacted.
    Raises ``BrokerFailed`` when the broker cannot be reached: the sinks retry that; a
    command that cannot go on without it says so with ``unreachable``.
    """
    return (await _ensure(config, bootstrap))[1]


async def _ensure(config: KafkaConfig, bootstrap: str) -> tuple[list[str], list[str]]:
    """``ensure_topics``: (the topics that were missing, the mismatches)."""
    with broker_errors():
        return await _ensure_with(AIOKafkaAdminClient(**consumer_options(config, bootstrap)),
                                  config)


async def _ensure_with(admin: AIOKafkaAdminClient, config: KafkaConfig
                       ) -> tuple[list[str], list[str]]:
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(config.surface_topic, config.topic_partitions,
                           config.topic_replication_factor,
                           topic_configs={"cleanup.policy": "compact"}),
                  NewTopic(config.ticks_topic, config.topic_partitions,
                           config.topic_replication_factor)]
        if config.dynamics_topic is not None:
            wanted.append(NewTopic(config.dynamics_topic, config.topic_partitions,
                                   config.topic_replication_factor,
                                   topic_configs={"cleanup.policy": "compact"}))
        missing = [t for t in wanted if t.name not in existing]
        if missing and config.create_topics:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            log.info("created topics %s", ", ".join(t.name for t in missing))
        present = [t for t in wanted if t.name in existing]
        mismatches = await _mismatches(admin, config, present) if present else []
    finally:
        await admin.close()
    for problem in mismatches:
        log.warning("%s", problem)
    return [t.name for t in missing], mismatches


class TopicWatch:
    """The topics checked again every ``kafka.topic_check_ms`` under a running producer.

    A broker replaced or wiped at the same address (memory storage, a rebuilt cluster)
    has none of them, and a producer with cached metadata goes on sending to partitions
    nobody keeps (Tansu even acknowledges them). Missing topics are created again as
    configured, so every key keeps its partition; a topic that came back different stops
    publishing (``TopicMismatch``), as at start.
    """

    def __init__(self, config: KafkaConfig, bootstrap: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self._clock = clock
        self._checked_at: float | None = None

    def checked(self) -> None:
        """The topics were just checked (``start_producer`` does)."""
        self._checked_at = self._clock()

    async def recreated(self) -> list[str]:
        """When a check is due: the topics it had to create again (the producer's view
        of them is stale: start a new one). Raises ``TopicMismatch`` (or ``BrokerFailed``)."""
        now = self._clock()
        if self._checked_at is not None and \
                now - self._checked_at < self.config.topic_check_ms / 1000:
            return []
        created, mismatches = await _ensure(self.config, self.bootstrap)
        self._checked_at = now
        if created and not self.config.create_topics:
            mismatches.append(f"topics {', '.join(created)} are gone from Kafka at "
                              f"{self.bootstrap} and kafka.create_topics is off")
        if mismatches:
            raise TopicMismatch("; ".join(mismatches))
        if created:
            log.warning("topics %s were gone from Kafka at %s (a new or wiped broker?): "
                        "created again with kafka.topic_partitions=%d", ", ".join(created),
                        self.bootstrap, self.config.topic_partitions)
        return created


async def _mismatches(admin: AIOKafkaAdminClient, config: KafkaConfig,
                      topics: list[NewTopic]) -> list[str]:
    problems = []
    # The dynamics topic is read whole at start: its partition count does not matter.
    counted = [t.name for t in topics if t.name != config.dynamics_topic]
    described = await admin.describe_topics(counted) if counted else []
    for d in described:
        count = len(d.get("partitions", []))
        if count and count != config.topic_partitions:
            problems.append(f"topic {d['topic']} has {count} partitions, the config says "
                            f"{config.topic_partitions} (kafka.topic_partitions)")
    for compacted in (config.surface_topic, config.dynamics_topic):
        if not any(t.name == compacted for t in topics):
            continue
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, compacted)])
        for error_code, _, _, name, entries in response.resources:
            policy = {e[0]: e[1] for e in entries}.get("cleanup.policy", "delete")
            if error_code == 0 and "compact" not in policy:
                problems.append(f"topic {name} has cleanup.policy={policy}, not compact: "
                                "it will not keep the latest value per key")
    return problems
