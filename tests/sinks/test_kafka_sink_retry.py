"""KafkaSink's per-key settlement when part of a batch fails with an error a retry can
cure: the keys that were acknowledged advance their seq, the failed key is sent again
with the same seq, and nothing lands twice. A fake producer (pure logic: the broker
side of this is in tests/delivery/test_sink_truth.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from streamer.config import KafkaConfig
from streamer.kafka.errors import BrokerFailed
from streamer.sinks.codec import decode_surface
from streamer.sinks.kafka import KafkaSink
from tests.sinks.surfaces import make_surface


class FlakyProducer:
    """Acknowledges every send but those of ``failing`` keys, which time out once each."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.written: list[tuple[str, int]] = []  # (key, seq) that reached the topic

    async def send(self, topic: str, *, key: bytes, value: bytes, headers: Any) -> Any:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if key.decode() in self.failing:
            self.failing.discard(key.decode())
            ack.set_exception(KafkaTimeoutError())
        else:
            self.written.append((key.decode(), decode_surface(value).seq))
            ack.set_result(None)
        return ack


async def test_a_retried_key_keeps_its_seq_and_its_neighbours_advance() -> None:
    sink = KafkaSink(KafkaConfig(bootstrap_servers="127.0.0.1:9"))
    producer = FlakyProducer(failing={"deribit:ETH"})
    sink.publish(make_surface(underlying="BTC"))
    sink.publish(make_surface(underlying="ETH"))
    with pytest.raises(BrokerFailed) as raised:  # the sender backs off, then sends again
        await sink._send_pending(producer)
    assert isinstance(raised.value.__cause__, KafkaTimeoutError)  # aiokafka's, mapped
    assert producer.written == [("deribit:BTC", 1)]
    assert sink.pending == 1  # ETH waits for the retry
    sink.publish(make_surface(underlying="BTC", spot=101.0))
    await sink._send_pending(producer)
    assert sorted(producer.written) == [("deribit:BTC", 1), ("deribit:BTC", 2),
                                        ("deribit:ETH", 1)]
    assert (sink.delivered, sink.lost, sink.pending) == (3, 0, 0)
