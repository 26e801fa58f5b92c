"""Publish surfaces to Kafka with aiokafka: keyed, latest-per-key, never blocking the engine.

``publish`` only records the update as the latest pending one for its key (an
older pending update of that key is conflated: counted, not sent). A sender task
sends everything pending as one batch, waits for the acknowledgements and reports
each delivery. When the broker is unreachable, pending stays bounded (one update
per key), failures are counted by reason and logged once per burst, and the
sender reconnects with capped backoff and then publishes the latest surfaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streamer.config import KafkaConfig
from streamer.kafka_client import start_producer
from streamer.sinks.base import OnDelivered, OnError
from streamer.sinks.codec import SCHEMA_HEADER, encode_surface
from streamer.tasks import cancel_and_wait
from streamer.types import SurfaceUpdate

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 5.0
FLUSH_TIMEOUT_S = 10.0


class KafkaSink:
    """The Kafka surface publisher (see the module docstring)."""

    def __init__(self, config: KafkaConfig, *, bootstrap_servers: str | None = None,
                 on_delivered: OnDelivered | None = None, on_error: OnError | None = None,
                 on_send_seconds: Any = None) -> None:
        self.config = config
        self.bootstrap = bootstrap_servers or config.bootstrap_servers
        self._on_delivered = on_delivered
        self._on_error = on_error
        self._on_send_seconds = on_send_seconds
        self._pending: dict[str, SurfaceUpdate] = {}
        self._wakeup = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._sender: asyncio.Task[None] | None = None
        self._failing = False
        self._seq: dict[str, int] = {}
        self.conflated = 0
        self.delivered = 0
        self.errors = 0

    @property
    def pending(self) -> int:
        """Updates waiting to be sent (at most one per key)."""
        return len(self._pending)

    async def start(self) -> None:
        """Start the sender task; connecting happens there, with retries."""
        self._sender = asyncio.create_task(self._send_loop(), name="kafka-sender")

    def resume(self, latest: dict[str, SurfaceUpdate]) -> None:
        """Continue each key's ``seq`` after the latest already on the topic."""
        for key, update in latest.items():
            self._seq[key] = max(self._seq.get(key, 0), update.seq)

    def publish(self, update: SurfaceUpdate) -> None:
        """Latest-per-key hand-over; never blocks, never raises."""
        if self._pending.pop(update.key, None) is not None:
            self.conflated += 1
        self._pending[update.key] = update
        self._wakeup.set()

    async def stop(self) -> None:
        """Flush pending updates (bounded wait), then close the producer."""
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while self._pending and time.monotonic() < deadline and self._sender is not None \
                and not self._sender.done():
            self._wakeup.set()
            await asyncio.sleep(0.02)
        if self._pending:
            log.warning("stopping with %d surfaces unsent (broker unreachable)", len(self._pending))
        if self._sender is not None:
            await cancel_and_wait(self._sender)
        await self._close_producer()

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _send_loop(self) -> None:
        delay = BACKOFF_INITIAL_S
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            try:
                if self._producer is None:
                    self._producer = await start_producer(self.config, self.bootstrap)
                await self._send_pending(self._producer)
                delay = BACKOFF_INITIAL_S
                if self._failing:
                    log.info("Kafka reachable again at %s", self.bootstrap)
                    self._failing = False
            except (KafkaError, OSError) as exc:
                self._report_failure(exc)
                await self._close_producer()
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)

    async def _send_pending(self, producer: AIOKafkaProducer) -> None:
        batch, self._pending = self._pending, {}
        # seq is stamped here, per key, on what is actually sent: consumers see it
        # strictly increasing without gaps, conflated surfaces never take a number.
        stamped = {key: msgspec.structs.replace(update, seq=self._seq.get(key, 0) + 1)
                   for key, update in batch.items()}
        started = time.perf_counter()
        try:
            futures = [await producer.send(
                self.config.surface_topic, key=key.encode(),
                value=encode_surface(update, self.config.value_format),
                headers=[SCHEMA_HEADER]) for key, update in stamped.items()]
            await asyncio.gather(*futures)
        except BaseException:
            for key, update in batch.items():  # keep unless a newer one arrived meanwhile
                self._pending.setdefault(key, update)
            raise
        ack_ns = time.time_ns()
        if self._on_send_seconds is not None:
            self._on_send_seconds(time.perf_counter() - started)
        for key, update in stamped.items():
            self._seq[key] = update.seq
            self.delivered += 1
            if self._on_delivered is not None:
                self._on_delivered(update, ack_ns)

    def _report_failure(self, exc: BaseException) -> None:
        self.errors += 1
        reason = type(exc).__name__
        if self._on_error is not None:
            self._on_error(reason)
        if not self._failing:  # once per burst, not per message
            log.warning("Kafka at %s unreachable (%s: %s); keeping the latest surface per key "
                        "and retrying", self.bootstrap, reason, exc)
            self._failing = True
