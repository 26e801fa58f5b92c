"""The send loop every Kafka sink runs, without a broker: injected delays and sleep, a
fake producer slot. What it must do: back off by the given delays while the broker
fails, start the delays over after a success, count every failure, warn once per
outage, and stop for good (``failure``) when the broker refuses the config."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import pytest

from streamer.config import KafkaConfig
from streamer.kafka.errors import BrokerFailed, BrokerRefused, TopicMismatch
from streamer.kafka.sender import BACKOFF_INITIAL_S, BACKOFF_MAX_S, Sender, kafka_backoff
from streamer.tasks import backoff_delays


class ScriptedSlot:
    """A producer slot whose ``ready`` follows a script: an exception to raise, or a
    producer to hand out."""

    def __init__(self, script: list[BaseException | str]) -> None:
        self.script = script
        self.closed = 0

    async def ready(self) -> Any:
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    async def close(self) -> None:
        self.closed += 1


def make_sender(script: list[BaseException | str]
                ) -> tuple[Sender, list[str], list[float], ScriptedSlot]:
    errors: list[str] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    def backoff() -> Iterator[float]:  # a fresh 1, 2, 4, ... per outage
        return itertools.accumulate(itertools.repeat(2.0), lambda d, f: d * f, initial=1.0)

    slot = ScriptedSlot(script)
    sender = Sender(KafkaConfig(bootstrap_servers="127.0.0.1:9"), "127.0.0.1:9",
                    what="records", while_down="buffering", stopped="stopped",
                    on_error=errors.append, backoff=backoff, sleep=sleep,
                    producer=slot)  # type: ignore[arg-type]
    return sender, errors, slept, slot


def down(reason: str = "KafkaConnectionError") -> BrokerFailed:
    return BrokerFailed("Unable to bootstrap", reason)


async def _no_wait() -> None:
    return None


async def test_failures_back_off_by_the_delays_and_a_success_starts_them_over() -> None:
    script: list[BaseException | str] = [down(), down(), down("KafkaTimeoutError"), "p1",
                                         down(), "p2", BrokerRefused("no")]
    sender, errors, slept, slot = make_sender(script)
    sent: list[str] = []

    async def send_round(producer: Any) -> None:
        sent.append(producer)

    await sender.run(_no_wait, send_round)  # returns once refused
    assert slept == [1.0, 2.0, 4.0, 1.0]  # doubling while down; from 1 again after p1
    assert sent == ["p1", "p2"]
    assert errors == ["KafkaConnectionError", "KafkaConnectionError", "KafkaTimeoutError",
                      "KafkaConnectionError", "BrokerRefused"]
    assert slot.closed == 4  # every failure drops the producer: the next round starts one


async def test_a_failed_round_counts_its_error_and_retries_with_the_next_delay() -> None:
    sender, errors, slept, _ = make_sender(["p", "p", TopicMismatch("3 partitions, not 5")])
    rounds: list[int] = []

    async def send_round(producer: Any) -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise down("NotLeaderForPartitionError")

    await sender.run(_no_wait, send_round)
    assert (rounds, slept) == ([0, 1], [1.0])
    assert errors == ["NotLeaderForPartitionError", "TopicMismatch"]


async def test_a_refusal_stops_the_sender_and_is_its_failure(
        caplog: pytest.LogCaptureFixture) -> None:
    refused = TopicMismatch("topic t has 5 partitions, the config says 3")
    told: list[BaseException] = []
    sender, _, slept, _ = make_sender([refused])
    sender._on_failure = told.append

    async def send_round(producer: Any) -> None:
        raise AssertionError("never sent: refused before")

    await sender.run(_no_wait, send_round)
    assert (sender.failure, told, slept) == (refused, [refused], [])
    assert "the config says 3; stopped" in caplog.text


async def test_an_outage_is_warned_about_once_and_its_end_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="streamer.kafka.sender")
    sender, _, _, _ = make_sender([down(), down(), down(), "p", BrokerRefused("no")])

    async def send_round(producer: Any) -> None:
        return None

    await sender.run(_no_wait, send_round)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) == 1
    assert sum("reachable again" in m for m in messages) == 1


def test_the_kafka_backoff_doubles_to_its_cap_with_jitter() -> None:
    delays = list(itertools.islice(kafka_backoff(), 8))
    nominal = [min(BACKOFF_INITIAL_S * 2**i, BACKOFF_MAX_S) for i in range(8)]
    assert all(0.8 * n <= d <= 1.2 * n for d, n in zip(delays, nominal, strict=True))
    seeded = list(itertools.islice(backoff_delays(0.2, 5.0, rng=random.Random(1)), 8))
    assert seeded != nominal  # spread: sinks that lost one broker do not return in step
