"""SurfaceSubscriber against the real embedded Tansu broker: latest per key first, then live."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamer.client import Surface, SurfaceSubscriber
from streamer.devtools.embedded_broker import free_port
from streamer.errors import BrokerError
from streamer.sinks.codec import SCHEMA_HEADER, encode_surface
from tests.client.factory import make_surface

pytestmark = pytest.mark.integration

Topic = Callable[[str], str]
STEP_S = 20.0


async def create_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1,
                                            topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def producer(bootstrap: str) -> AsyncIterator[Callable[..., object]]:
    """``send(topic, underlying, seq, value=None)``: one surface (or raw bytes), acknowledged."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await p.start()

    async def send(topic: str, underlying: str, seq: int, value: bytes | None = None) -> None:
        update = make_surface(underlying=underlying, seq=seq, spot=100_000.0 + seq)
        await p.send_and_wait(topic, key=update.key.encode(),
                              value=encode_surface(update) if value is None else value,
                              headers=[SCHEMA_HEADER])
    try:
        yield send
    finally:
        await p.stop()


async def next_surface(subscriber: SurfaceSubscriber) -> Surface:
    return await asyncio.wait_for(anext(subscriber), STEP_S)


async def test_latest_per_key_comes_first_then_a_live_update(kafka_bootstrap: str,
                                                             unique_topic: Topic) -> None:
    topic = unique_topic("surface")
    await create_topic(kafka_bootstrap, topic)
    async with producer(kafka_bootstrap) as send:
        for underlying, seq in [("BTC", 1), ("ETH", 1), ("BTC", 2), ("SOL", 1), ("ETH", 2)]:
            await send(topic, underlying, seq)
        await send(topic, "BTC", 99, b"{not json")  # dropped, counted
        await send(topic, "BTC", 3)
        async with SurfaceSubscriber(kafka_bootstrap, keys=["deribit:ETH", "deribit:BTC"],
                                     topic=topic) as subscriber:
            first, second = await next_surface(subscriber), await next_surface(subscriber)
            assert [(s.key, s.seq) for s in (first, second)] == [("deribit:ETH", 2),
                                                                 ("deribit:BTC", 3)]
            assert subscriber.rejected == 1
            await send(topic, "SOL", 2)  # not requested
            await send(topic, "BTC", 4)
            live = await next_surface(subscriber)
            assert (live.key, live.seq, live.spot) == ("deribit:BTC", 4, 100_004.0)
            assert float(live.vol(100_000.0, 0.1)) > 0
            assert set(subscriber.latest) == {"deribit:ETH", "deribit:BTC"}


async def test_without_keys_every_key_is_followed_in_key_order(kafka_bootstrap: str,
                                                               unique_topic: Topic) -> None:
    topic = unique_topic("surface")
    await create_topic(kafka_bootstrap, topic)
    async with producer(kafka_bootstrap) as send:
        for underlying, seq in [("SOL", 1), ("BTC", 1), ("ETH", 5), ("BTC", 2)]:
            await send(topic, underlying, seq)
        async with SurfaceSubscriber(kafka_bootstrap, topic=topic) as subscriber:
            got = [await next_surface(subscriber) for _ in range(3)]
    assert [(s.key, s.seq) for s in got] == [("deribit:BTC", 2), ("deribit:ETH", 5),
                                            ("deribit:SOL", 1)]


async def test_an_empty_topic_goes_straight_to_live_updates(kafka_bootstrap: str,
                                                            unique_topic: Topic) -> None:
    topic = unique_topic("surface")
    await create_topic(kafka_bootstrap, topic, partitions=1)
    async with SurfaceSubscriber(kafka_bootstrap, keys=["deribit:BTC"], topic=topic) as sub, \
            producer(kafka_bootstrap) as send:
        pending = asyncio.ensure_future(next_surface(sub))
        await asyncio.sleep(0.3)
        assert not pending.done()
        await send(topic, "BTC", 1)
        assert (await pending).seq == 1


async def test_a_lagging_subscriber_is_conflated_to_newer_surfaces(kafka_bootstrap: str,
                                                                   unique_topic: Topic) -> None:
    topic = unique_topic("surface")
    await create_topic(kafka_bootstrap, topic)
    async with SurfaceSubscriber(kafka_bootstrap, keys=["deribit:BTC"], topic=topic) as sub, \
            producer(kafka_bootstrap) as send:
        pending = asyncio.ensure_future(next_surface(sub))
        await send(topic, "BTC", 1)
        seqs = [(await pending).seq]
        for seq in range(2, 12):
            await send(topic, "BTC", seq)
        while seqs[-1] != 11:
            seqs.append((await next_surface(sub)).seq)
    assert seqs == sorted(set(seqs))  # strictly increasing, possibly with gaps


async def test_a_missing_topic_is_a_broker_error_and_is_not_created(kafka_bootstrap: str,
                                                                    unique_topic: Topic) -> None:
    topic = unique_topic("absent")
    with pytest.raises(BrokerError, match="does not exist"):
        async with SurfaceSubscriber(kafka_bootstrap, keys=["deribit:BTC"], topic=topic,
                                     topic_timeout_s=0.3):
            pass
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert topic not in await admin.list_topics()
    finally:
        await admin.close()


async def test_an_unreachable_broker_is_a_broker_error() -> None:
    subscriber = SurfaceSubscriber(f"127.0.0.1:{free_port()}", keys=["deribit:BTC"],
                                   request_timeout_ms=1000)
    with pytest.raises(BrokerError, match=r"vol\.surface\.v1"):
        await subscriber.start()


async def test_iterating_before_start_is_a_usage_error() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await anext(SurfaceSubscriber("127.0.0.1:1", keys=["deribit:BTC"]))
