"""The send loop every Kafka sink runs: connect, send a round, and on failure back off
and reconnect, until the broker refuses the config.

A sink says when there is work (``wait_for_work``) and what one round sends (with
``send``); the ``Sender`` owns the producer (restarted when the topics were recreated
under it), the ack deadline, the reconnect delays and the once-per-outage warning.
Errors the broker may recover from (``BrokerFailed``) close the producer, wait the next
delay and retry; ``BrokerRefused`` stops the sink for good (``failure``).

The delays are ``streamer.tasks.backoff_delays`` (jittered, so sinks and processes that
lost the same broker do not come back in step); tests inject their own, and their sleep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

from streamer.config import KafkaConfig
from streamer.errors import BrokerError
from streamer.kafka.acks import AckDeadline, Clock, OnError
from streamer.kafka.errors import CLIENT_ERRORS, BrokerRefused, as_broker_error, error_reason
from streamer.kafka.producer import Producer, ProducerSlot, Record, send_batch
from streamer.tasks import backoff_delays

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 5.0

#: A fresh sequence of reconnect delays (one per outage: a success starts it over).
Backoff = Callable[[], Iterator[float]]
Sleep = Callable[[float], Awaitable[None]]


def kafka_backoff() -> Iterator[float]:
    """A sink's reconnect delays: 0.2 s doubling up to 5 s, each ±20 % at random."""
    return backoff_delays(BACKOFF_INITIAL_S, BACKOFF_MAX_S)


class Sender:
    """One sink's producer, ack deadline and send loop (see the module docstring).

    ``what`` names the records in the ack warning, ``while_down`` says what the sink does
    while the broker is away, ``stopped`` what it does once refused; ``on_error`` is told
    the reason of every counted error, ``on_failure`` the refusal that stopped it.
    ``backoff``, ``sleep`` and ``producer`` are there for tests (and ``clock``).
    """

    def __init__(self, config: KafkaConfig, bootstrap: str, *, what: str, while_down: str,
                 stopped: str, on_error: OnError,
                 on_failure: Callable[[BrokerError], None] | None = None,
                 clock: Clock = time.monotonic, backoff: Backoff = kafka_backoff,
                 sleep: Sleep = asyncio.sleep, producer: ProducerSlot | None = None) -> None:
        self.bootstrap = bootstrap
        self.producer = producer or ProducerSlot(config, bootstrap, clock)
        self.acks = AckDeadline(config.ack_deadline_ms, what, bootstrap, on_error, clock)
        self._while_down, self._stopped = while_down, stopped
        self._on_error, self._on_failure = on_error, on_failure
        self._backoff, self._sleep = backoff, sleep
        self._failing = False
        self.failure: BrokerError | None = None

    async def send(self, producer: Producer, topic: str, records: Sequence[Record],
                   header: tuple[str, bytes]) -> list[BrokerError | None]:
        """One batch to ``topic`` under the ack deadline; per record, None or its failure."""
        return await send_batch(producer, topic, records, header, self.acks)

    async def run(self, wait_for_work: Callable[[], Awaitable[None]],
                  send_round: Callable[[Producer], Awaitable[None]],
                  after_round: Callable[[], None] | None = None) -> None:
        """Send rounds until cancelled, or until the broker refuses (then return)."""
        delays = self._backoff()
        while True:
            await wait_for_work()
            try:
                await send_round(await self.producer.ready())
                delays = self._backoff()
                if self._failing:
                    log.info("Kafka reachable again at %s", self.bootstrap)
                    self._failing = False
            except BrokerRefused as exc:
                self._stop(exc)
                return
            except (BrokerError, *CLIENT_ERRORS) as exc:
                self._report(as_broker_error(exc))
                await self.producer.close()
                await self._sleep(next(delays))
            finally:
                if after_round is not None:
                    after_round()

    def _report(self, exc: BrokerError) -> None:
        reason = error_reason(exc)
        self._on_error(reason)
        if not self._failing:  # once per outage, not per round
            log.warning("Kafka at %s unreachable (%s: %s); %s and retrying",
                        self.bootstrap, reason, exc, self._while_down)
            self._failing = True

    def _stop(self, exc: BrokerRefused) -> None:
        self.failure = exc
        self._on_error(error_reason(exc))
        log.error("%s; %s", exc, self._stopped)
        if self._on_failure is not None:
            self._on_failure(exc)


class SendsWithSender:
    """What a sink running a ``Sender`` (its ``_kafka``) shows of it."""

    _kafka: Sender

    @property
    def overdue(self) -> bool:
        """True while a send has waited longer than ``kafka.ack_deadline_ms``."""
        return self._kafka.acks.overdue

    @property
    def failure(self) -> BrokerError | None:
        """What stopped sending for good (a topic or broker refusing the config)."""
        return self._kafka.failure
