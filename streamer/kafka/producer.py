"""A sink's producer: started with the topics ensured, restarted when the topics were
recreated under it, closed within a bound whatever the broker does; and one batch sent
with every record's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any, TypeAlias

from aiokafka import AIOKafkaProducer
from aiokafka.errors import BrokerResponseError

from streamer.config import KafkaConfig
from streamer.errors import BrokerError
from streamer.kafka.acks import AckDeadline, Clock
from streamer.kafka.admin import TopicWatch, ensure_topics
from streamer.kafka.errors import (
    CLIENT_ERRORS,
    BrokerRefused,
    TopicMismatch,
    Unsendable,
    as_broker_error,
    broker_errors,
)
from streamer.kafka.options import producer_options

log = logging.getLogger(__name__)

#: Closing a producer waits at most this long: a frozen broker answers nothing, and a
#: shutdown (Ctrl-C) must not wait for aiokafka's request timeout.
CLOSE_TIMEOUT_S = 2.0

#: One record: its key and its encoded value.
Record = tuple[bytes, bytes]
#: The producer a sink sends with (aiokafka's, named here so sinks need not import it).
Producer: TypeAlias = AIOKafkaProducer

_warned_no_idempotence: set[str] = set()


async def start_producer(config: KafkaConfig, bootstrap: str) -> AIOKafkaProducer:
    """A started producer (topics ensured first when configured).

    Raises ``TopicMismatch`` when an existing topic differs from the config,
    ``BrokerRefused`` when the broker refuses a producer the config insists on, and
    ``BrokerFailed`` when it cannot be reached.
    """
    # Checked whether or not we create them: one key, one partition, always.
    mismatches = await ensure_topics(config, bootstrap)
    if mismatches:
        raise TopicMismatch("; ".join(mismatches))
    options = producer_options(config, bootstrap)
    with broker_errors():
        try:
            return await _started(options)
        except BrokerResponseError as exc:
            # InitProducerId refused (Tansu: UnknownError): no idempotent producer there.
            if not options["enable_idempotence"]:
                raise
            reason = f"{bootstrap} refused an idempotent producer (InitProducerId: " \
                     f"{type(exc).__name__})"
            if config.enable_idempotence:
                raise BrokerRefused(f"{reason}: set kafka.enable_idempotence: false (or "
                                    "null) for this broker") from exc
            if bootstrap not in _warned_no_idempotence:
                _warned_no_idempotence.add(bootstrap)
                log.warning("%s; continuing without it (set kafka.enable_idempotence: false "
                            "to skip the attempt)", reason)
            return await _started({**options, "enable_idempotence": False})


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


class ProducerSlot:
    """The one producer of a sink, started when first wanted and started afresh when the
    ``TopicWatch`` finds the topics recreated (the old one's partitions are of the old
    topics)."""

    def __init__(self, config: KafkaConfig, bootstrap: str,
                 clock: Clock = time.monotonic) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self._topics = TopicWatch(config, bootstrap, clock)
        self._producer: AIOKafkaProducer | None = None

    async def ready(self) -> AIOKafkaProducer:
        """The producer to send with now (raises as ``start_producer``)."""
        if self._producer is None or await self._topics.recreated():
            await self.close()
            self._producer = await start_producer(self.config, self.bootstrap)
            self._topics.checked()
        return self._producer

    async def close(self) -> None:
        """Close the producer, if any; the next ``ready`` starts another."""
        producer, self._producer = self._producer, None
        await close_producer(producer)


async def partition_count(producer: AIOKafkaProducer, topic: str) -> int:
    """How many partitions the producer sees ``topic`` with."""
    with broker_errors():
        return len(await producer.partitions_for(topic))


async def send_batch(producer: AIOKafkaProducer, topic: str, records: Sequence[Record],
                     header: tuple[str, bytes], acks: AckDeadline
                     ) -> list[BrokerError | None]:
    """Send ``records`` in order and wait for their acknowledgements (watched by ``acks``).

    Per record: None when acknowledged, else what failed it, as ours (``Unsendable``
    for a record no retry can send; the records after any other send failure are not
    sent and fail with it).
    """
    futures: dict[int, asyncio.Future[Any]] = {}
    results: list[BrokerError | None] = [None] * len(records)
    for i, (key, value) in enumerate(records):
        try:
            futures[i] = await producer.send(topic, key=key, value=value, headers=[header])
        except CLIENT_ERRORS as exc:
            failed = as_broker_error(exc)
            if isinstance(failed, Unsendable):
                results[i] = failed  # this one never will be; the others go on
                continue
            results[i:] = [failed] * (len(records) - i)  # this one and every later one
            break
    gathered = asyncio.gather(*futures.values(), return_exceptions=True)
    # Retrieved even when the sender is cancelled at stop: no "never retrieved" noise.
    gathered.add_done_callback(lambda f: f.cancelled() or f.exception())
    await acks.wait(gathered, len(futures))
    for i, ack in zip(futures, gathered.result(), strict=True):
        results[i] = as_broker_error(ack) if isinstance(ack, BaseException) else None
    return results
