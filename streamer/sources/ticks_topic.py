"""``streamer calibrate``'s source: a consumer group over the ticks topic.

Kafka assigns the topic's partitions (and so the underlyings keyed into them) to
the group's members and moves them when a member joins or leaves; this process
calibrates whatever it is assigned. Offsets are committed automatically, so a
member taking over a partition continues where the previous owner stopped.

The session timeout sets how soon a dead member's partitions move. A broker may refuse
it (Kafka's ``group.min.session.timeout.ms`` is 6 s unless lowered): the member then
joins with Kafka's default minimum, says so once, and refuses to start only when that
is refused too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec

from streamer.config import KafkaConfig
from streamer.errors import BrokerError
from streamer.kafka.errors import SessionTimeoutRefused
from streamer.kafka.group import GroupMember
from streamer.sources.base import QuoteSink
from streamer.types import Quote

log = logging.getLogger(__name__)

VENUE = "kafka"
#: Kafka's default ``group.min.session.timeout.ms``: what a stock broker accepts.
KAFKA_MIN_SESSION_TIMEOUT_MS = 6_000
_decoder = msgspec.msgpack.Decoder(Quote)


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
        that cannot be reached at start, or that refuses every session timeout we can
        offer, raises ``BrokerError`` naming it."""
        config = self.config
        while True:
            try:
                await self._consume(config)
            except SessionTimeoutRefused:
                config = self._session_fallback(config)

    def _session_fallback(self, config: KafkaConfig) -> KafkaConfig:
        refused = config.session_timeout_ms
        if refused >= KAFKA_MIN_SESSION_TIMEOUT_MS:
            raise BrokerError(
                f"the broker at {self.bootstrap} refuses a consumer-group session of "
                f"{refused} ms; set kafka.session_timeout_ms (STREAMER_KAFKA__SESSION_TIMEOUT_MS) "
                "within its group.min.session.timeout.ms and group.max.session.timeout.ms")
        log.warning("the broker at %s refuses kafka.session_timeout_ms=%d (below its "
                    "group.min.session.timeout.ms): joining with %d ms, so a dead member's "
                    "partitions move %.0f s later", self.bootstrap, refused,
                    KAFKA_MIN_SESSION_TIMEOUT_MS, (KAFKA_MIN_SESSION_TIMEOUT_MS - refused) / 1e3)
        return msgspec.structs.replace(config, session_timeout_ms=KAFKA_MIN_SESSION_TIMEOUT_MS)

    async def _consume(self, config: KafkaConfig) -> None:
        member = GroupMember(config, self.bootstrap, self.group_id, config.ticks_topic,
                             on_assigned=self._assigned, on_revoked=_log_revoked)
        try:
            await member.start()
            self.sink.on_connected(VENUE, True)
            while True:
                values = await member.fetch()
                await self.ready.wait()
                for value in values:
                    self._feed(value)
        finally:
            self.sink.on_connected(VENUE, False)
            await member.stop()

    async def _assigned(self, partitions: list[int]) -> None:
        self.assigned = partitions
        log.info("assigned partitions %s", self.assigned)
        self.ready.clear()
        try:
            if self.on_assigned is not None:
                await self.on_assigned()
        finally:
            self.ready.set()

    def _feed(self, value: bytes | None) -> None:
        try:
            quote = _decoder.decode(value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.sink.on_reject(VENUE, "malformed")
            return
        self.sink.on_quote(quote)


def _log_revoked(partitions: list[int]) -> None:
    if partitions:
        log.info("revoked partitions %s", partitions)
