"""Subscribe to ``vol.surface.v1``: the latest surface per key first, then every live update.

::

    async with SurfaceSubscriber("broker:9092", keys=["deribit:BTC"]) as surfaces:
        async for surface in surfaces:
            quote(surface.vol(strikes, expiry))

On entry the subscriber waits for the topic to exist (it never creates it), assigns
itself every partition (no consumer group: each subscriber sees every key) and reads
the compacted topic from the beginning up to the end offsets it found at start,
keeping the latest surface per requested key. It then yields those, in the order of
``keys`` (keys with no surface yet are skipped), and follows the topic live. Live
updates are conflated per fetch: when the subscriber falls behind, only the newest
surface of each key in a fetched batch is yielded, which is what a quoting loop wants.

Messages that do not decode are counted in ``rejected`` and skipped; a tombstone
(null value) removes the key from ``latest``. Kafka failures surface as
:class:`~streamer.errors.BrokerError`. Partitions added after start are not followed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

import msgspec

from streamer.client.surface import Surface
from streamer.errors import BrokerError
from streamer.kafka.errors import broker_errors
from streamer.kafka.reader import (
    Consumer,
    Ends,
    Record,
    behind,
    fetch,
    from_beginning,
    partition_ids,
    topic_exists,
)
from streamer.sinks.codec import Format
from streamer.types import SCHEMA_NAME

log = logging.getLogger(__name__)

TOPIC_POLL_S = 0.5


class SurfaceSubscriber:
    """Async iterator of :class:`Surface` for the requested keys (see the module docstring).

    Parameters
    ----------
    bootstrap_servers : str
        Comma-separated ``host:port`` list.
    keys : iterable of str, optional
        ``<venue>:<underlying>`` keys to follow; ``None`` follows every key.
    topic : str
        The surface topic.
    value_format : {"json", "msgpack"}
        The publisher's ``kafka.value_format``.
    topic_timeout_s : float or None
        How long to wait for the topic to exist at start (``None``: forever).
    **kafka_kwargs
        Passed to ``aiokafka.AIOKafkaConsumer`` (TLS/SASL settings, ``client_id``, ...).
        A ``group_id`` is allowed but unused for assignment: every partition is read.
    """

    def __init__(self, bootstrap_servers: str, keys: Iterable[str] | None = None,
                 topic: str = SCHEMA_NAME, *, value_format: Format = "json",
                 topic_timeout_s: float | None = 30.0, **kafka_kwargs: Any) -> None:
        self.topic = topic
        self.keys: tuple[str, ...] | None = None if keys is None else tuple(keys)
        self._wanted = None if self.keys is None else {k.encode() for k in self.keys}
        self._format: Format = value_format
        self._topic_timeout_s = topic_timeout_s
        options: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest"}
        options.update(kafka_kwargs)
        self._options = {"bootstrap_servers": bootstrap_servers, **options}
        self._consumer: Consumer | None = None
        self._ends: Ends = {}
        self._caught_up = False
        self._ready: deque[Surface] = deque()
        self.latest: dict[str, Surface] = {}
        self.rejected = 0

    async def start(self) -> None:
        """Connect, wait for the topic, assign every partition and seek to the beginning."""
        if self._consumer is not None:
            raise RuntimeError("SurfaceSubscriber is already started")
        consumer = self._consumer = Consumer(**self._options)
        try:
            with broker_errors(lambda exc: f"cannot subscribe to {self.topic}: {exc!r}"):
                await consumer.start()
                partitions = await self._partitions(consumer)
                self._ends = await from_beginning(consumer, self.topic, partitions)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close the consumer (idempotent)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Surface:
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("SurfaceSubscriber is not started: use `async with`")
        with broker_errors(lambda exc: f"consuming {self.topic} failed: {exc!r}"):
            if not self._caught_up:
                await self._catch_up(consumer)
            while not self._ready:
                self._ready.extend(self._fold(await fetch(consumer)).values())
        return self._ready.popleft()

    async def _partitions(self, consumer: Consumer) -> set[int]:
        """Partition ids of the topic, once it exists (a metadata request for every
        topic never auto-creates one; asking for this topic alone might)."""
        loop = asyncio.get_running_loop()
        deadline = None if self._topic_timeout_s is None else loop.time() + self._topic_timeout_s
        while not await topic_exists(consumer, self.topic):
            if deadline is not None and loop.time() > deadline:
                raise BrokerError(f"topic {self.topic} does not exist")
            await asyncio.sleep(TOPIC_POLL_S)
        return await partition_ids(consumer, self.topic)

    async def _catch_up(self, consumer: Consumer) -> None:
        """Read up to the start-time end offsets; queue the latest surface per key."""
        while await behind(consumer, self._ends):
            self._fold(await fetch(consumer))
        order = self.keys if self.keys is not None else sorted(self.latest)
        self._ready.extend(self.latest[k] for k in order if k in self.latest)
        self._caught_up = True

    def _fold(self, records: list[Record]) -> dict[str, Surface]:
        """Decode the wanted records; the newest surface per key, in arrival order."""
        newest: dict[str, Surface] = {}
        for record in records:
            if record.key is None or (self._wanted is not None and record.key not in self._wanted):
                continue
            key = record.key.decode(errors="replace")
            newest.pop(key, None)
            if record.value is None:
                self.latest.pop(key, None)
                continue
            try:
                surface = Surface.decode(record.value, self._format)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.rejected += 1
                log.warning("dropped undecodable surface %s@%d/%d: %s", key,
                            record.partition, record.offset, exc)
                continue
            newest[key] = self.latest[key] = surface
        return newest
