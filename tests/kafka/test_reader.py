"""Reading a topic to its end, without a broker: a fake consumer over in-memory
partitions. The reader assigns every partition from its beginning (explicit offsets),
fetches until each reached the end it had at the start, and tells the records appended
since from the others."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from streamer.kafka.reader import before_end, behind, from_beginning, partition_ids, to_end

TOPIC = "vol.surface.v1"


def record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TOPIC, partition, offset, 0, 0, b"k", f"{partition}/{offset}".encode(),
                          None, 1, 1, [])


class FakeConsumer:
    """Partitions as lists of records, one record a fetch per partition; compacted away
    below ``first``."""

    def __init__(self, logs: dict[int, int], first: int = 0) -> None:
        self.logs = {p: [record(p, first + i) for i in range(n)] for p, n in logs.items()}
        self.first = first
        self.at: dict[TopicPartition, int] = {}
        self.assigned: list[TopicPartition] = []

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.logs)

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = tps

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.first + len(self.logs[tp.partition]) for tp in tps}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.first for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.at[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.at[tp]

    async def getmany(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        out = {}
        for tp in self.assigned:
            log = self.logs[tp.partition]
            if (i := self.at[tp] - self.first) < len(log):
                out[tp] = [log[i]]
                self.at[tp] += 1
        return out

    def append(self, partition: int) -> None:
        log = self.logs[partition]
        log.append(record(partition, self.first + len(log)))


async def test_every_partition_is_read_from_its_beginning_to_its_end_at_start() -> None:
    consumer = FakeConsumer({0: 3, 1: 1, 2: 0}, first=5)  # compacted: offsets from 5
    ends = await from_beginning(consumer, TOPIC)  # type: ignore[arg-type]
    assert [tp.partition for tp in consumer.assigned] == [0, 1, 2]
    assert ends == {TopicPartition(TOPIC, 0): 8, TopicPartition(TOPIC, 1): 6,
                    TopicPartition(TOPIC, 2): 5}
    seen = [r.value async for batch in to_end(consumer, ends) for r in batch]  # type: ignore[arg-type]
    assert sorted(seen) == [b"0/5", b"0/6", b"0/7", b"1/5"]
    assert not await behind(consumer, ends)  # type: ignore[arg-type]


async def test_records_appended_after_the_start_are_told_apart() -> None:
    consumer = FakeConsumer({0: 1, 1: 2})
    ends = await from_beginning(consumer, TOPIC)  # type: ignore[arg-type]
    consumer.append(0)  # lands while we read: the second fetch brings it along
    seen = [r async for batch in to_end(consumer, ends) for r in batch]  # type: ignore[arg-type]
    assert [(r.partition, r.offset, before_end(r, ends)) for r in seen] == [
        (0, 0, True), (1, 0, True), (0, 1, False), (1, 1, True)]


async def test_an_empty_topic_is_at_its_end_at_once() -> None:
    consumer = FakeConsumer({0: 0, 1: 0})
    ends = await from_beginning(consumer, TOPIC)  # type: ignore[arg-type]
    assert [batch async for batch in to_end(consumer, ends)] == []  # type: ignore[arg-type]


async def test_partition_ids_come_from_the_consumer_metadata() -> None:
    assert await partition_ids(FakeConsumer({0: 0, 1: 0, 2: 0}), TOPIC) == {0, 1, 2}  # type: ignore[arg-type]
