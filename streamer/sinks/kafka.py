"""Publish surfaces to Kafka with aiokafka: keyed, one key on one partition, in order.

Two modes. Live (``ordered=False``, ``streamer run``): ``publish`` records the update
as the latest pending one for its key (an older pending update of that key is
conflated: counted, not sent), so the engine never waits for the broker. Ordered
(``ordered=True``, ``streamer replay``): every update is queued in order and the
producer of the updates awaits ``drain`` (back-pressure), so a replay delivers every
surface it computes.

A sender task sends what is pending, waits for the acknowledgements and reports each
delivery. Sends are per key: a success advances that key's ``seq`` whatever its
neighbours did; a failure puts only that key's unsent updates back. A send not
acknowledged within ``kafka.ack_deadline_ms`` (a frozen broker) is reported as an
``ack_timeout`` error. A topic whose partition count or cleanup policy is not the
configured one stops publishing (``failure``): a key must stay on one partition.
When the broker is unreachable the sender reconnects with capped backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from streamer.config import KafkaConfig
from streamer.errors import BrokerError
from streamer.kafka_client import (
    BrokerRefused,
    TopicMismatch,
    TopicWatch,
    close_producer,
    start_producer,
)
from streamer.sinks.acks import ACK_POLL_S, AckDeadline, Clock
from streamer.sinks.base import OnDelivered, OnError
from streamer.sinks.codec import SCHEMA_HEADER, encode_surface
from streamer.tasks import cancel_and_wait
from streamer.types import SurfaceUpdate

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 5.0
#: Ordered mode: updates queued before ``drain`` makes the producer wait.
MAX_QUEUED = 1024
#: Send errors no retry can cure: the surface is dropped and counted, its key goes on.
UNSENDABLE = (MessageSizeTooLargeError,)



class KafkaSink:
    """The Kafka surface publisher (see the module docstring)."""

    def __init__(self, config: KafkaConfig, *, bootstrap_servers: str | None = None,
                 on_delivered: OnDelivered | None = None, on_error: OnError | None = None,
                 on_send_seconds: Any = None, ordered: bool = False,
                 on_failure: Callable[[BrokerError], None] | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.config = config
        self.bootstrap = bootstrap_servers or config.bootstrap_servers
        self.ordered = ordered
        self._on_delivered = on_delivered
        self._on_error = on_error
        self._on_send_seconds = on_send_seconds
        self._on_failure = on_failure
        self._clock = clock
        self._latest: dict[str, SurfaceUpdate] = {}  # live mode
        self._queue: deque[SurfaceUpdate] = deque()  # ordered mode
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Event()  # set whenever the sender finishes a round
        self._producer: AIOKafkaProducer | None = None
        self._sender: asyncio.Task[None] | None = None
        self._failing = False
        self._seq: dict[str, int] = {}
        self._in_flight: list[str] = []  # the keys of the batch awaiting its acks
        self._acks = AckDeadline(config.ack_deadline_ms, "surfaces", self.bootstrap,
                                 self._count_error, clock)
        self._topics = TopicWatch(config, self.bootstrap, clock)
        self._gave_up = False
        self.failure: BrokerError | None = None
        self.conflated = 0
        self.delivered = 0
        self.lost = 0
        self.errors = 0

    @property
    def pending(self) -> int:
        """Updates not yet acknowledged: queued or in flight (live: at most one per key)."""
        if self.ordered:
            return len(self._queue) + len(self._in_flight)
        return len(self._latest.keys() | set(self._in_flight))

    @property
    def in_flight(self) -> int:
        """Updates sent and awaiting their acknowledgement."""
        return len(self._in_flight)

    @property
    def overdue(self) -> bool:
        """True while a send has waited longer than ``kafka.ack_deadline_ms``."""
        return self._acks.overdue

    async def start(self) -> None:
        """Start the sender task; connecting happens there, with retries."""
        self._sender = asyncio.create_task(self._send_loop(), name="kafka-sender")

    def resume(self, latest: dict[str, SurfaceUpdate]) -> None:
        """Continue each key's ``seq`` after the latest already on the topic."""
        for key, update in latest.items():
            self._seq[key] = max(self._seq.get(key, 0), update.seq)

    def publish(self, update: SurfaceUpdate) -> None:
        """Hand an update over; never blocks, never raises (see the module docstring)."""
        if self.failure is not None:
            return
        if self.ordered:
            self._queue.append(update)
        else:
            if self._latest.pop(update.key, None) is not None:
                self.conflated += 1
            self._latest[update.key] = update
        self._wakeup.set()

    async def drain(self, limit: int = MAX_QUEUED) -> None:
        """Wait until fewer than ``limit`` updates are unacknowledged (back-pressure).

        Raises ``BrokerError`` when publishing stopped (``failure``) or nothing was
        acknowledged for ``kafka.flush_timeout_ms``: a replay must not wait forever.
        """
        stalled_since = self._clock()
        while self.pending >= max(limit, 1):
            self._raise_if_stopped(stalled_since)
            self._progress.clear()
            delivered = self.delivered
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._progress.wait(), ACK_POLL_S)
            if self.delivered != delivered:
                stalled_since = self._clock()
        self._raise_if_stopped(None)

    def _raise_if_stopped(self, stalled_since: float | None) -> None:
        if self.failure is not None:
            raise self.failure
        if self._sender is None or self._sender.done():
            raise BrokerError("the Kafka sender is not running")
        timeout_s = self.config.flush_timeout_ms / 1000
        if stalled_since is not None and self._clock() - stalled_since > timeout_s:
            self._gave_up = True
            raise BrokerError(f"Kafka at {self.bootstrap} acknowledged nothing for "
                              f"{timeout_s:g} s (kafka.flush_timeout_ms); giving up")

    async def stop(self) -> None:
        """Flush pending updates (bounded by ``kafka.flush_timeout_ms``), then close."""
        if not self._gave_up:
            with contextlib.suppress(BrokerError):
                await self.drain(limit=1)
        if self.pending and self.failure is None:
            log.warning("stopping with %d surfaces unsent (Kafka at %s unreachable)",
                        self.pending, self.bootstrap)
        if self._sender is not None:
            await cancel_and_wait(self._sender)
        await self._close_producer()

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        await close_producer(producer)

    async def _send_loop(self) -> None:
        delay = BACKOFF_INITIAL_S
        while True:
            if not (self._latest or self._queue):
                self._wakeup.clear()
                await self._wakeup.wait()
            try:
                if self._producer is None or await self._topics.recreated():
                    await self._close_producer()  # its partitions are of the old topics
                    self._producer = await start_producer(self.config, self.bootstrap)
                    self._topics.checked()
                await self._check_partitions(self._producer)
                await self._send_pending(self._producer)
                delay = BACKOFF_INITIAL_S
                if self._failing:
                    log.info("Kafka reachable again at %s", self.bootstrap)
                    self._failing = False
            except BrokerRefused as exc:
                self._stop_publishing(exc)
                return
            except (KafkaError, OSError) as exc:
                self._report_failure(exc)
                await self._close_producer()
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
            finally:
                self._progress.set()

    async def _check_partitions(self, producer: AIOKafkaProducer) -> None:
        """The producer's view of the topic: a changed partition count moves keys."""
        count = len(await producer.partitions_for(self.config.surface_topic))
        if count != self.config.topic_partitions:
            raise TopicMismatch(
                f"topic {self.config.surface_topic} at {self.bootstrap} now has {count} "
                f"partitions, the config says {self.config.topic_partitions} "
                "(kafka.topic_partitions)")

    def _take_batch(self) -> list[SurfaceUpdate]:
        if self.ordered:
            batch = list(self._queue)
            self._queue.clear()
            return batch
        batch, self._latest = list(self._latest.values()), {}
        return batch

    async def _send_pending(self, producer: AIOKafkaProducer) -> None:
        batch = self._take_batch()
        # seq is stamped here, per key, on what is actually sent: consumers see it
        # strictly increasing without gaps, conflated surfaces never take a number.
        next_seq = dict(self._seq)
        stamped = []
        for update in batch:
            next_seq[update.key] = next_seq.get(update.key, 0) + 1
            stamped.append(msgspec.structs.replace(update, seq=next_seq[update.key]))
        self._in_flight = [u.key for u in batch]
        started = time.perf_counter()
        try:
            results = await self._send_all(producer, stamped)
        except BaseException:  # cancelled (stop) or broken: nothing of it is known sent
            self._requeue(batch)
            raise
        finally:
            self._in_flight = []
        if self._on_send_seconds is not None:
            self._on_send_seconds(time.perf_counter() - started)
        self._settle(batch, stamped, results)

    async def _send_all(self, producer: AIOKafkaProducer, stamped: list[SurfaceUpdate]
                        ) -> list[BaseException | None]:
        """Send every update; per update, None when acknowledged or what failed it."""
        futures: dict[int, asyncio.Future[Any]] = {}
        results: list[BaseException | None] = [None] * len(stamped)
        for i, update in enumerate(stamped):
            try:
                futures[i] = await producer.send(
                    self.config.surface_topic, key=update.key.encode(),
                    value=encode_surface(update, self.config.value_format),
                    headers=[SCHEMA_HEADER])
            except UNSENDABLE as exc:
                results[i] = exc  # this one never will be; the others go on
            except (KafkaError, OSError) as exc:
                results[i:] = [exc] * (len(stamped) - i)  # this one and every later one
                break
        acks = asyncio.gather(*futures.values(), return_exceptions=True)
        # Retrieved even when the sender is cancelled at stop: no "never retrieved" noise.
        acks.add_done_callback(lambda f: f.cancelled() or f.exception())
        await self._acks.wait(acks, len(futures))
        for i, ack in zip(futures, acks.result(), strict=True):
            results[i] = ack if isinstance(ack, BaseException) else None
        return results

    def _count_error(self, reason: str) -> None:
        self.errors += 1
        if self._on_error is not None:
            self._on_error(reason)

    def _settle(self, batch: list[SurfaceUpdate], stamped: list[SurfaceUpdate],
                results: list[BaseException | None]) -> None:
        """Per key: successes advance its seq; unsent updates after its last success retry."""
        last_ok = {u.key: i for i, (u, r) in enumerate(zip(stamped, results, strict=True))
                   if r is None}
        ack_ns = time.time_ns()
        retry: list[SurfaceUpdate] = []
        for i, (original, update, result) in enumerate(zip(batch, stamped, results,
                                                           strict=True)):
            if result is None:
                self._seq[update.key] = max(self._seq.get(update.key, 0), update.seq)
                self.delivered += 1
                if self._on_delivered is not None:
                    self._on_delivered(update, ack_ns)
            elif isinstance(result, UNSENDABLE):
                self._drop_unsendable(update, result)
            elif i < last_ok.get(update.key, -1):
                self.lost += 1  # a later surface of its key is already on the topic
            else:
                retry.append(original)
        self._requeue(retry)
        first = next((r for r in results
                      if r is not None and not isinstance(r, UNSENDABLE)), None)
        if first is not None:
            raise first

    def _requeue(self, updates: list[SurfaceUpdate]) -> None:
        """Unsent updates back in front, in order (live: unless a newer one arrived)."""
        if self.ordered:
            self._queue.extendleft(reversed(updates))
        else:
            for update in updates:
                self._latest.setdefault(update.key, update)

    def _drop_unsendable(self, update: SurfaceUpdate, exc: BaseException) -> None:
        self.lost += 1
        self._count_error(type(exc).__name__)
        log.error("surface %s seq %d dropped: %s", update.key, update.seq, exc)

    def _stop_publishing(self, exc: BrokerRefused) -> None:
        self.failure = exc
        self._count_error(type(exc).__name__)
        log.error("%s; stopped publishing", exc)
        if self._on_failure is not None:
            self._on_failure(exc)

    def _report_failure(self, exc: BaseException) -> None:
        reason = type(exc).__name__
        self._count_error(reason)
        if not self._failing:  # once per burst, not per message
            what = "queueing every surface" if self.ordered else \
                "keeping the latest surface per key"
            log.warning("Kafka at %s unreachable (%s: %s); %s and retrying",
                        self.bootstrap, reason, exc, what)
            self._failing = True
