"""``streamer calibrate``'s source: a consumer group over the ticks topic.

Kafka assigns the topic's partitions (and so the underlyings keyed into them) to
the group's members and moves them when a member joins or leaves; this process
calibrates whatever it is assigned. Offsets are committed automatically, so a
member taking over a partition continues where the previous owner stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from streamer.config import KafkaConfig
from streamer.kafka_client import group_options, unreachable
from streamer.sources.base import QuoteSink
from streamer.types import Quote

log = logging.getLogger(__name__)

VENUE = "kafka"
_decoder = msgspec.msgpack.Decoder(Quote)


class _LogAssignments(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: TicksConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            log.info("revoked partitions %s", sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.owner.assigned = sorted(tp.partition for tp in assigned)
        log.info("assigned partitions %s", self.owner.assigned)
        self.owner.ready.clear()
        try:
            if self.owner.on_assigned is not None:
                await self.owner.on_assigned()
        finally:
            self.owner.ready.set()


class TicksConsumer:
    """Feeds quotes from the ticks topic into a QuoteSink (the engines)."""

    def __init__(self, config: KafkaConfig, bootstrap_servers: str, sink: QuoteSink, *,
                 group_id: str = "streamer-calibrate",
                 on_assigned: Callable[[], Awaitable[None]] | None = None) -> None:
        self.config = config
        self.bootstrap = bootstrap_servers
        self.sink = sink
        self.group_id = group_id
        self.on_assigned = on_assigned
        self.assigned: list[int] = []
        # Cleared while a new assignment warm-starts: quotes of a taken-over underlying
        # must not be calibrated (and published) before its state is read back.
        self.ready = asyncio.Event()
        self.ready.set()

    async def run(self) -> None:
        """Consume until cancelled; reconnecting is aiokafka's once started. A broker
        that cannot be reached at start raises ``BrokerError`` naming it."""
        consumer = AIOKafkaConsumer(**group_options(self.config, self.bootstrap, self.group_id))
        consumer.subscribe([self.config.ticks_topic], listener=_LogAssignments(self))
        try:
            await _start(consumer, self.bootstrap)
            self.sink.on_connected(VENUE, True)
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                await self.ready.wait()
                for records in batch.values():
                    for record in records:
                        self._feed(record.value)
        finally:
            self.sink.on_connected(VENUE, False)
            await asyncio.shield(consumer.stop())

    def _feed(self, value: bytes | None) -> None:
        try:
            quote = _decoder.decode(value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.sink.on_reject(VENUE, "malformed")
            return
        self.sink.on_quote(quote)


async def _start(consumer: AIOKafkaConsumer, bootstrap: str) -> None:
    try:
        await consumer.start()
    except (KafkaError, OSError) as exc:
        raise unreachable(bootstrap, exc) from exc
