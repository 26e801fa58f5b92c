"""Streams of small records to Kafka: quotes to the ticks topic, greeks to the greeks topic,
each key's smile-dynamics memory to the dynamics topic.

``streamer ingest`` sends msgpack-encoded ``Quote`` structs keyed
``<venue>:<underlying>``, so one underlying's quotes stay in one partition, in order,
and a ``streamer calibrate`` consumer group spreads underlyings across processes. The
greeks topic carries one JSON ``InstrumentGreeks`` per option, keyed by instrument.
While the broker is unreachable the newest ``max_buffered`` records wait (older ones
are dropped and counted: consumers only need the latest) and sending resumes on recovery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec

from streamer.config import KafkaConfig
from streamer.errors import BrokerError
from streamer.kafka.acks import Clock
from streamer.kafka.producer import Producer
from streamer.kafka.sender import Backoff, Sender, SendsWithSender, Sleep, kafka_backoff
from streamer.sinks.base import OnError
from streamer.tasks import cancel_and_wait
from streamer.types import DynamicsState, InstrumentGreeks, Quote

log = logging.getLogger(__name__)

TICKS_SCHEMA_HEADER = ("schema", b"vol.ticks.v1")
GREEKS_SCHEMA_HEADER = ("schema", b"vol.greeks.v1")
DYNAMICS_SCHEMA_HEADER = ("schema", b"vol.dynamics.v1")
SEND_PERIOD_S = 0.02
_msgpack = msgspec.msgpack.Encoder()
_json = msgspec.json.Encoder()

T = TypeVar("T")


def encode_quote(quote: Quote) -> bytes:
    """The ticks-topic value of one quote."""
    return _msgpack.encode(quote)


class KafkaRecordSink(SendsWithSender, Generic[T]):
    """Buffers records and sends them in batches to one topic."""

    def __init__(self, config: KafkaConfig, bootstrap_servers: str, *, topic: str,
                 key_of: Callable[[T], str], encode: Callable[[T], bytes],
                 header: tuple[str, bytes], on_error: OnError | None = None,
                 on_sent: Callable[[int], None] | None = None,
                 on_failure: Callable[[BrokerError], None] | None = None,
                 max_buffered: int = 200_000, clock: Clock = time.monotonic,
                 backoff: Backoff = kafka_backoff, sleep: Sleep = asyncio.sleep) -> None:
        self.config = config
        self.bootstrap = bootstrap_servers
        self.topic, self._key_of, self._encode, self._header = topic, key_of, encode, header
        self._on_error = on_error
        self._on_sent = on_sent
        self._kafka = Sender(config, bootstrap_servers, what=f"records for {topic}",
                             while_down=f"buffering {topic} records",
                             stopped=f"stopped sending to {topic}", on_error=self._count_error,
                             on_failure=on_failure, clock=clock, backoff=backoff, sleep=sleep)
        self._buffer: deque[T] = deque(maxlen=max_buffered)
        self._send_task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self.sent = 0
        self.dropped = 0
        self.errors = 0

    @property
    def pending(self) -> int:
        """Records waiting for the broker (buffered or sent and not yet acknowledged)."""
        return len(self._buffer) + self._in_flight

    def add(self, record: T) -> None:
        """Queue a record; never blocks (the oldest is dropped when the buffer is full)."""
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(record)

    async def start(self) -> None:
        """Start the sender; connecting happens there, with retries."""
        self._send_task = asyncio.create_task(
            self._kafka.run(self._wait_for_work, self._send_buffered), name=f"sender-{self.topic}")

    async def stop(self) -> None:
        """Send what is buffered (within ``kafka.flush_timeout_ms``), then close."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.flush_timeout_ms / 1000
        while self.pending and self._send_task is not None and not self._send_task.done() \
                and loop.time() < deadline:
            await asyncio.sleep(SEND_PERIOD_S)
        if self._send_task is not None:
            await cancel_and_wait(self._send_task)
        if self.pending:
            log.warning("stopping with %d records for %s unsent", self.pending, self.topic)
        await self._kafka.producer.close()

    async def _wait_for_work(self) -> None:
        """Records are sent every SEND_PERIOD_S, in batches: many quotes, few round trips."""
        await asyncio.sleep(SEND_PERIOD_S)
        while not self._buffer:
            await asyncio.sleep(SEND_PERIOD_S)

    async def _send_buffered(self, producer: Producer) -> None:
        batch = list(self._buffer)
        self._buffer.clear()
        self._in_flight = len(batch)
        try:
            results = await self._kafka.send(
                producer, self.topic, [(self._key_of(r).encode(), self._encode(r)) for r in batch],
                self._header)
            if (failed := next((r for r in results if r is not None), None)) is not None:
                raise failed  # the whole batch again: a ticks consumer takes duplicates
        except BaseException:
            self._buffer.extendleft(reversed(batch))  # keep order; maxlen drops the oldest
            raise
        finally:
            self._in_flight = 0
        self.sent += len(batch)
        if self._on_sent is not None:
            self._on_sent(len(batch))

    def _count_error(self, reason: str) -> None:
        self.errors += 1
        if self._on_error is not None:
            self._on_error(reason)


def ticks_sink(config: KafkaConfig, bootstrap: str, **callbacks: Any) -> KafkaRecordSink[Quote]:
    """Quotes to the ticks topic, keyed ``<venue>:<underlying>`` (msgpack)."""
    return KafkaRecordSink(config, bootstrap, topic=config.ticks_topic,
                           key_of=lambda q: f"{q.venue}:{q.underlying}", encode=encode_quote,
                           header=TICKS_SCHEMA_HEADER, **callbacks)


def greeks_sink(config: KafkaConfig, bootstrap: str, topic: str, **callbacks: Any
                ) -> KafkaRecordSink[InstrumentGreeks]:
    """Per-option greeks to ``topic``, keyed by instrument (JSON, NaN as null)."""
    return KafkaRecordSink(config, bootstrap, topic=topic, key_of=lambda g: g.instrument,
                           encode=_json.encode, header=GREEKS_SCHEMA_HEADER, **callbacks)


def dynamics_sink(config: KafkaConfig, bootstrap: str, topic: str, **callbacks: Any
                  ) -> KafkaRecordSink[DynamicsState]:
    """Smile-dynamics memory to ``topic`` (compacted), keyed ``<venue>:<underlying>``."""
    return KafkaRecordSink(config, bootstrap, topic=topic, key_of=lambda s: s.key,
                           encode=_json.encode, header=DYNAMICS_SCHEMA_HEADER, **callbacks)


def decode_greeks(data: bytes) -> InstrumentGreeks:
    """A greeks-topic value back into ``InstrumentGreeks`` (``null`` → NaN)."""
    fields = msgspec.json.decode(data)
    if not isinstance(fields, dict):
        raise msgspec.ValidationError("a greeks record is a JSON object")
    return msgspec.convert({k: float("nan") if v is None else v for k, v in fields.items()},
                           InstrumentGreeks)
