"""One consumer-group member over one topic: Kafka assigns it partitions and moves them
when a member joins or leaves; offsets are committed automatically, so a member taking
over a partition continues where the previous owner stopped.

The member is told of each assignment (``on_assigned``, awaited before it fetches on)
and each revocation, by partition id. A broker that refuses the group session timeout
raises ``SessionTimeoutRefused`` (the caller may join again with another); any other
failure to start is ``unreachable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import InvalidSessionTimeoutError

from streamer.config import KafkaConfig
from streamer.kafka.errors import CLIENT_ERRORS, SessionTimeoutRefused, broker_errors, unreachable
from streamer.kafka.options import group_options

#: At most this many records a fetch, and a fetch waits at most FETCH_MS for them.
MAX_RECORDS = 5000
FETCH_MS = 200

OnAssigned = Callable[[list[int]], Awaitable[None]]
OnRevoked = Callable[[list[int]], None]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_assigned: OnAssigned, on_revoked: OnRevoked) -> None:
        self._on_assigned, self._on_revoked = on_assigned, on_revoked

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._on_revoked(sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._on_assigned(sorted(tp.partition for tp in assigned))


class GroupMember:
    """A member of ``group_id`` reading ``topic`` (see the module docstring)."""

    def __init__(self, config: KafkaConfig, bootstrap: str, group_id: str, topic: str, *,
                 on_assigned: OnAssigned, on_revoked: OnRevoked) -> None:
        self.bootstrap = bootstrap
        self._consumer = AIOKafkaConsumer(**group_options(config, bootstrap, group_id))
        self._consumer.subscribe([topic], listener=_Listener(on_assigned, on_revoked))

    async def start(self) -> None:
        """Join; raises ``SessionTimeoutRefused`` or ``unreachable``'s ``BrokerError``."""
        try:
            await self._consumer.start()
        except InvalidSessionTimeoutError as exc:
            raise SessionTimeoutRefused(str(exc)) from exc
        except CLIENT_ERRORS as exc:
            raise unreachable(self.bootstrap, exc) from exc

    async def fetch(self) -> list[bytes | None]:
        """The values of the next records (waits at most FETCH_MS for some)."""
        with broker_errors():
            try:
                batch = await self._consumer.getmany(timeout_ms=FETCH_MS,
                                                     max_records=MAX_RECORDS)
            except InvalidSessionTimeoutError as exc:  # surfaced by a (re)join
                raise SessionTimeoutRefused(str(exc)) from exc
        return [record.value for records in batch.values() for record in records]

    async def stop(self) -> None:
        """Leave the group (shielded: a cancelled caller still leaves cleanly)."""
        await asyncio.shield(self._consumer.stop())
