"""The latest value per key, read back from a compacted topic: the surfaces, and the
smile-dynamics memory.

A calibrator starting (or restarting) warm-starts from what it last published, so
its first fit after a restart is ``warm``, not ``cold``, and its dynamics estimates
continue with their observations.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

import msgspec

from streamer.config import KafkaConfig
from streamer.kafka.errors import broker_errors
from streamer.kafka.options import consumer_options
from streamer.kafka.reader import (
    Consumer,
    from_beginning,
    started_consumer,
    to_end,
    topic_exists,
)
from streamer.sinks.codec import decode_dynamics_state, decode_surface
from streamer.types import DynamicsState, SurfaceUpdate

log = logging.getLogger(__name__)
T = TypeVar("T")
READ_BACK_FETCH_WAIT_MS = 10
READ_BACK_POLL_MS = 500


async def latest_surfaces(config: KafkaConfig, bootstrap: str, *, timeout_s: float = 10.0
                          ) -> dict[str, SurfaceUpdate]:
    """Latest decodable surface per ``<venue>:<underlying>``; empty when the topic is absent."""
    return await latest_by_key(config, bootstrap, config.surface_topic,
                               lambda v: decode_surface(v, config.value_format),
                               timeout_s=timeout_s)


async def latest_dynamics_states(config: KafkaConfig, bootstrap: str, *,
                                 timeout_s: float = 10.0) -> dict[str, DynamicsState]:
    """Latest smile-dynamics memory per key; empty when there is no dynamics topic."""
    if config.dynamics_topic is None:
        return {}
    return await latest_by_key(config, bootstrap, config.dynamics_topic,
                               decode_dynamics_state, timeout_s=timeout_s)


async def latest_by_key(config: KafkaConfig, bootstrap: str, topic: str,
                        decode: Callable[[bytes], T], *, timeout_s: float = 10.0
                        ) -> dict[str, T]:
    """Latest decodable value per key of ``topic``, read to its end at the start.

    Raises ``BrokerFailed`` when the broker cannot be reached; the consumer is closed
    whatever failed (also when it failed to start).
    """
    # A read to the end wants every fetch answered at once: the broker's default wait
    # for more data (500 ms a fetch) was most of a takeover's read-back.
    options = {"enable_auto_commit": False, "group_id": None,
               "fetch_max_wait_ms": READ_BACK_FETCH_WAIT_MS,
               **consumer_options(config, bootstrap)}
    with broker_errors():
        async with started_consumer(options) as consumer:
            try:
                return await asyncio.wait_for(_read_to_end(consumer, topic, decode),
                                              timeout_s)
            except TimeoutError:
                log.warning("reading back %s took over %.0fs; starting cold", topic,
                            timeout_s)
                return {}


async def _read_to_end(consumer: Consumer, topic: str, decode: Callable[[bytes], T]
                       ) -> dict[str, T]:
    if not await topic_exists(consumer, topic):
        log.info("no topic %s to warm-start from", topic)
        return {}
    ends = await from_beginning(consumer, topic)
    log.info("reading back %d records from %s", sum(ends.values()), topic)
    latest: dict[str, T] = {}
    async for records in to_end(consumer, ends, READ_BACK_POLL_MS):
        for record in records:
            if record.key is None or record.value is None:
                continue
            try:
                latest[record.key.decode()] = decode(record.value)
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
                log.warning("skipping an undecodable record of %s at offset %d", topic,
                            record.offset)
    return latest
