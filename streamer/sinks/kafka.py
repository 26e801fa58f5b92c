"""Publish surfaces to Kafka: keyed, one key on one partition, in order.

Two modes. Live (``ordered=False``, ``streamer run``): ``publish`` records the update
as the latest pending one for its key (an older pending update of that key is
conflated: counted, not sent), so the engine never waits for the broker. Ordered
(``ordered=True``, ``streamer replay``): every update is queued in order and the
producer of the updates awaits ``drain`` (back-pressure), so a replay delivers every
surface it computes.

A sender task (``streamer.kafka.sender``) sends what is pending, waits for the
acknowledgements and reports each delivery. The sink owns the published ``seq``
(``TopicSeq``). Sends are per key: a success advances that key's ``seq`` whatever its
neighbours did; a failure puts only that key's unsent updates back. A send not
acknowledged within ``kafka.ack_deadline_ms`` (a frozen broker) is reported as an
``ack_timeout`` error. A topic whose partition count or cleanup policy is not the
configured one stops publishing (``failure``): a key must stay on one partition.
When the broker is unreachable the sender reconnects with capped, jittered backoff.
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

from streamer.config import KafkaConfig
from streamer.errors import BrokerError
from streamer.kafka.acks import ACK_POLL_S, Clock
from streamer.kafka.errors import TopicMismatch, Unsendable
from streamer.kafka.producer import Producer, partition_count
from streamer.kafka.sender import Backoff, Sender, SendsWithSender, Sleep, kafka_backoff
from streamer.sinks.base import OnDelivered, OnError
from streamer.sinks.codec import SCHEMA_HEADER, encode_surface
from streamer.tasks import cancel_and_wait
from streamer.types import SurfaceUpdate

log = logging.getLogger(__name__)

#: Ordered mode: updates queued before ``drain`` makes the producer wait.
MAX_QUEUED = 1024


class TopicSeq:
    """The one owner of the published ``seq``: +1 per surface of a key on the topic.

    The engine numbers every surface it computes, but the topic does not get every one:
    live, a newer surface of a key replaces the pending one (conflation), and a surface
    the broker will never take is dropped. So the number consumers see is given here,
    on what is sent, and advanced only by what was acknowledged: gapless and strictly
    increasing per key. A calibrator starting warm, or taking a key over from another
    member in split mode, continues it from the latest surface on the topic (``resume``).
    """

    def __init__(self) -> None:
        self._acked: dict[str, int] = {}

    def resume(self, latest: dict[str, SurfaceUpdate]) -> None:
        """Continue each key after the latest surface already on the topic."""
        for key, update in latest.items():
            self.acknowledged(key, update.seq)

    def stamped(self, batch: list[SurfaceUpdate]) -> list[SurfaceUpdate]:
        """``batch`` numbered in order after each key's last acknowledged surface."""
        following = dict(self._acked)
        stamped = []
        for update in batch:
            following[update.key] = following.get(update.key, 0) + 1
            stamped.append(msgspec.structs.replace(update, seq=following[update.key]))
        return stamped

    def acknowledged(self, key: str, seq: int) -> None:
        """Surface ``seq`` of ``key`` is on the topic."""
        self._acked[key] = max(self._acked.get(key, 0), seq)


class KafkaSink(SendsWithSender):
    """The Kafka surface publisher (see the module docstring)."""

    def __init__(self, config: KafkaConfig, *, bootstrap_servers: str | None = None,
                 on_delivered: OnDelivered | None = None, on_error: OnError | None = None,
                 on_send_seconds: Any = None, ordered: bool = False,
                 on_failure: Callable[[BrokerError], None] | None = None,
                 clock: Clock = time.monotonic, backoff: Backoff = kafka_backoff,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.config = config
        self.bootstrap = bootstrap_servers or config.bootstrap_servers
        self.ordered = ordered
        self._on_delivered = on_delivered
        self._on_error = on_error
        self._on_send_seconds = on_send_seconds
        self._clock = clock
        self._latest: dict[str, SurfaceUpdate] = {}  # live mode
        self._queue: deque[SurfaceUpdate] = deque()  # ordered mode
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Event()  # set whenever the sender finishes a round
        self._send_task: asyncio.Task[None] | None = None
        self._seq = TopicSeq()
        self._in_flight: list[str] = []  # the keys of the batch awaiting its acks
        while_down = "queueing every surface" if ordered else \
            "keeping the latest surface per key"
        self._kafka = Sender(config, self.bootstrap, what="surfaces", while_down=while_down,
                             stopped="stopped publishing", on_error=self._count_error,
                             on_failure=on_failure, clock=clock, backoff=backoff, sleep=sleep)
        self._gave_up = False
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

    async def start(self) -> None:
        """Start the sender task; connecting happens there, with retries."""
        self._send_task = asyncio.create_task(
            self._kafka.run(self._wait_for_work, self._send_round, self._progress.set),
            name="kafka-sender")

    def resume(self, latest: dict[str, SurfaceUpdate]) -> None:
        """Continue each key's ``seq`` after the latest already on the topic."""
        self._seq.resume(latest)

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
        if self._send_task is None or self._send_task.done():
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
        if self._send_task is not None:
            await cancel_and_wait(self._send_task)
        await self._kafka.producer.close()

    async def _wait_for_work(self) -> None:
        if not (self._latest or self._queue):
            self._wakeup.clear()
            await self._wakeup.wait()

    async def _send_round(self, producer: Producer) -> None:
        await self._check_partitions(producer)
        await self._send_pending(producer)

    async def _check_partitions(self, producer: Producer) -> None:
        """The producer's view of the topic: a changed partition count moves keys."""
        count = await partition_count(producer, self.config.surface_topic)
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

    async def _send_pending(self, producer: Producer) -> None:
        batch = self._take_batch()
        # Numbered on what is actually sent: conflated surfaces never take a number.
        stamped = self._seq.stamped(batch)
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

    async def _send_all(self, producer: Producer, stamped: list[SurfaceUpdate]
                        ) -> list[BrokerError | None]:
        """Send every update; per update, None when acknowledged or what failed it."""
        fmt = self.config.value_format
        return await self._kafka.send(
            producer, self.config.surface_topic,
            [(u.key.encode(), encode_surface(u, fmt)) for u in stamped], SCHEMA_HEADER)

    def _count_error(self, reason: str) -> None:
        self.errors += 1
        if self._on_error is not None:
            self._on_error(reason)

    def _settle(self, batch: list[SurfaceUpdate], stamped: list[SurfaceUpdate],
                results: list[BrokerError | None]) -> None:
        """Per key: successes advance its seq; unsent updates after its last success retry."""
        last_ok = {u.key: i for i, (u, r) in enumerate(zip(stamped, results, strict=True))
                   if r is None}
        ack_ns = time.time_ns()
        retry: list[SurfaceUpdate] = []
        for i, (original, update, result) in enumerate(zip(batch, stamped, results,
                                                           strict=True)):
            if result is None:
                self._seq.acknowledged(update.key, update.seq)
                self.delivered += 1
                if self._on_delivered is not None:
                    self._on_delivered(update, ack_ns)
            elif isinstance(result, Unsendable):
                self._drop_unsendable(update, result)
            elif i < last_ok.get(update.key, -1):
                self.lost += 1  # a later surface of its key is already on the topic
            else:
                retry.append(original)
        self._requeue(retry)
        first = next((r for r in results
                      if r is not None and not isinstance(r, Unsendable)), None)
        if first is not None:
            raise first

    def _requeue(self, updates: list[SurfaceUpdate]) -> None:
        """Unsent updates back in front, in order (live: unless a newer one arrived)."""
        if self.ordered:
            self._queue.extendleft(reversed(updates))
        else:
            for update in updates:
                self._latest.setdefault(update.key, update)

    def _drop_unsendable(self, update: SurfaceUpdate, exc: Unsendable) -> None:
        self.lost += 1
        self._count_error(exc.reason)
        log.error("surface %s seq %d dropped: %s", update.key, update.seq, exc)
