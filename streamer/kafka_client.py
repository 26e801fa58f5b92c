"""Kafka client settings shared by every producer, consumer and admin client.

Connection and security options come from ``KafkaConfig`` (secrets only from the
environment); ``ensure_topics`` creates the surface and ticks topics when absent;
``start_producer`` refuses topics that differ from the config (``TopicMismatch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import BrokerResponseError, TopicAlreadyExistsError

from streamer.config import KafkaConfig
from streamer.errors import BrokerError

log = logging.getLogger(__name__)

GROUP_FETCH_WAIT_MS = 20


class BrokerRefused(BrokerError):
    """The broker or its topics cannot serve this config: retrying will not help."""

    retryable = False


class TopicMismatch(BrokerRefused):
    """An existing topic's partitions or cleanup policy differ from the config: a key
    would move to another partition (or the latest surface would not be kept)."""


_warned_no_idempotence: set[str] = set()


def producer_options(config: KafkaConfig, bootstrap: str) -> dict[str, Any]:
    """aiokafka producer keyword arguments from the config; secrets only from the env."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap, "client_id": config.client_id,
        "acks": "all" if config.acks == "all" else int(config.acks),
        "enable_idempotence": config.idempotence, "linger_ms": config.linger_ms,
        "compression_type": None if config.compression == "none" else config.compression,
        "request_timeout_ms": config.request_timeout_ms,
        "retry_backoff_ms": config.retry_backoff_ms,
        "security_protocol": config.security_protocol,
    }
    if config.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=config.ssl_cafile)
    if config.sasl_mechanism is not None:
        options["sasl_mechanism"] = config.sasl_mechanism
        options["sasl_plain_username"] = os.environ.get(config.sasl_username_env, "")
        options["sasl_plain_password"] = os.environ.get(config.sasl_password_env, "")
    return options


def consumer_options(config: KafkaConfig, bootstrap: str) -> dict[str, Any]:
    """aiokafka consumer keyword arguments: connection and security as the producer's."""
    producer = producer_options(config, bootstrap)
    keys = ("bootstrap_servers", "client_id", "request_timeout_ms", "retry_backoff_ms",
            "security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username",
            "sasl_plain_password")
    return {k: producer[k] for k in keys if k in producer}


def group_options(config: KafkaConfig, bootstrap: str, group_id: str) -> dict[str, Any]:
    """A consumer group member's options: a dead member's partitions move once its
    session times out and the survivors have rejoined, within the configured times."""
    return {**consumer_options(config, bootstrap), "group_id": group_id,
            "auto_offset_reset": "earliest", "enable_auto_commit": True,
            # Ticks are wanted as they come: the broker's default wait for more data
            # (500 ms a fetch) would be the split pipeline's latency floor.
            "fetch_max_wait_ms": GROUP_FETCH_WAIT_MS,
            "session_timeout_ms": config.session_timeout_ms,
            "heartbeat_interval_ms": config.heartbeat_interval_ms,
            "rebalance_timeout_ms": config.rebalance_timeout_ms}


def unreachable(bootstrap: str, exc: BaseException) -> BrokerError:
    """One line for a broker we could not reach, naming the setting that points at it."""
    detail = str(exc) or type(exc).__name__
    return BrokerError(f"cannot reach Kafka at {bootstrap} ({detail}); check "
                       "kafka.bootstrap_servers (STREAMER_KAFKA__BOOTSTRAP_SERVERS)")


async def ensure_topics(config: KafkaConfig, bootstrap: str) -> list[str]:
    """Create the surface and dynamics (compacted) and ticks topics when absent (unless
    ``kafka.create_topics`` is off); check them when present.

    Returns the mismatches found on existing topics (each also logged as a warning):
    a partition count other than configured, or a surface topic that is not compacted.
    Raises aiokafka's errors (or OSError) when the broker cannot be reached: the sinks
    retry those; a command that cannot go on without it says so with ``unreachable``.
    """
    return (await _ensure(config, bootstrap))[1]


async def _ensure(config: KafkaConfig, bootstrap: str) -> tuple[list[str], list[str]]:
    """``ensure_topics``: (the topics that were missing, the mismatches)."""
    admin = AIOKafkaAdminClient(**consumer_options(config, bootstrap))
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
        of them is stale: start a new one). Raises ``TopicMismatch``."""
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


async def start_producer(config: KafkaConfig, bootstrap: str) -> AIOKafkaProducer:
    """A started producer (topics ensured first when configured); raises if unreachable.

    Raises ``TopicMismatch`` when an existing topic differs from the config.
    """
    # Checked whether or not we create them: one key, one partition, always.
    mismatches = await ensure_topics(config, bootstrap)
    if mismatches:
        raise TopicMismatch("; ".join(mismatches))
    options = producer_options(config, bootstrap)
    try:
        return await _started(options)
    except BrokerResponseError as exc:
        # InitProducerId refused (Tansu: UnknownError): the broker has no idempotent producer.
        if not options["enable_idempotence"]:
            raise
        reason = f"{bootstrap} refused an idempotent producer (InitProducerId: " \
                 f"{type(exc).__name__})"
        if config.enable_idempotence:
            raise BrokerRefused(f"{reason}: set kafka.enable_idempotence: false (or null) "
                                "for this broker") from exc
        if bootstrap not in _warned_no_idempotence:
            _warned_no_idempotence.add(bootstrap)
            log.warning("%s; continuing without it (set kafka.enable_idempotence: false "
                        "to skip the attempt)", reason)
        return await _started({**options, "enable_idempotence": False})


#: Closing a producer waits at most this long: a frozen broker answers nothing, and a
#: shutdown (Ctrl-C) must not wait for aiokafka's request timeout.
CLOSE_TIMEOUT_S = 2.0


async def close_producer(producer: AIOKafkaProducer | None) -> None:
    """Stop a producer whatever state it and its broker are in, within CLOSE_TIMEOUT_S
    (what is unsent by then has been counted by the sink already)."""
    if producer is None:
        return
    try:
        await asyncio.wait_for(producer.stop(), CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning("Kafka did not answer the producer's close within %.0f s; closed anyway",
                    CLOSE_TIMEOUT_S)
        # Its connections are closed by hand: their pending requests fail, their sockets go.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.client.close(), CLOSE_TIMEOUT_S)
    except Exception as exc:
        log.debug("closing the producer: %s", exc)


async def _started(options: dict[str, Any]) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(**options)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer
