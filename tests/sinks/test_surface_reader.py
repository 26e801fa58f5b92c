"""Reading back the surface topic at a warm start, when the broker is not there."""

from __future__ import annotations

import asyncio
import gc

import pytest
from aiokafka.errors import KafkaError

from streamer.config import KafkaConfig
from streamer.devtools.embedded_broker import free_port
from streamer.errors import BrokerError
from streamer.sinks.surface_reader import latest_surfaces


async def test_a_failed_read_back_closes_its_consumer_and_says_what_failed(
        caplog: pytest.LogCaptureFixture) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"  # nobody listens
    with pytest.raises(BrokerError) as raised:  # aiokafka's error, mapped to ours
        await latest_surfaces(KafkaConfig(bootstrap_servers=bootstrap,
                                          request_timeout_ms=2000), bootstrap, timeout_s=5)
    assert isinstance(raised.value.__cause__, KafkaError)
    gc.collect()  # an unclosed consumer logs "Unclosed AIOKafkaConsumer" at ERROR here
    await asyncio.sleep(0)
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]
