"""``streamer view``: the page from the surface topic alone, on the real embedded broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest

from streamer.cli import main
from streamer.config import AppConfig
from streamer.sinks.codec import decode_surface
from streamer.ui.view import TopicView
from tests.client.test_subscriber import create_topic, producer
from tests.ui.loopback import Response, get, next_event, request_head

pytestmark = pytest.mark.integration

Topic = Callable[[str], str]
WAIT_S = 30.0


@contextlib.asynccontextmanager
async def running_view(bootstrap: str, topic: str,
                       keys: list[str] | None = None) -> AsyncIterator[int]:
    base = AppConfig()
    config = msgspec.structs.replace(
        base, kafka=msgspec.structs.replace(base.kafka, surface_topic=topic),
        metrics=msgspec.structs.replace(base.metrics, port=0))
    view = TopicView(config, bootstrap, keys)
    port = await view.start()
    task = asyncio.create_task(view.run())
    try:
        yield port
    finally:
        task.cancel()
        await asyncio.wait({task})
        await view.close()
    if not task.cancelled():
        task.result()  # the follower must not have failed


async def surface_when(port: int, key: str, seq: int) -> Response:
    """Poll /surface/{key} until it serves ``seq``."""
    async def poll() -> Response:
        while True:
            response = await get(port, f"/surface/{key}")
            if response.status == 200 and decode_surface(response.body).seq == seq:
                return response
            await asyncio.sleep(0.1)
    return await asyncio.wait_for(poll(), WAIT_S)


async def test_view_serves_the_topics_latest_surfaces_then_live_ones(
        kafka_bootstrap: str, unique_topic: Topic) -> None:
    topic = unique_topic("view")
    await create_topic(kafka_bootstrap, topic)
    async with producer(kafka_bootstrap) as send:
        await send(topic, "BTC", 1)
        await send(topic, "BTC", 2)
        await send(topic, "ETH", 1)
        async with running_view(kafka_bootstrap, topic) as port:
            await surface_when(port, "deribit:BTC", 2)
            await surface_when(port, "deribit:ETH", 1)
            missing = await get(port, "/surface/deribit:SOL")
            assert missing.status == 404
            assert "known: deribit:BTC, deribit:ETH" in json.loads(missing.body)["reason"]
            assert (await get(port, "/ui")).headers["content-type"].startswith("text/html")

            reader, writer, status, _ = await request_head(port, "/ui/events")
            assert status == 200
            health = json.loads((await next_event(reader)).data)
            assert health["source"] == f"topic {topic} at {kafka_bootstrap}"
            assert health["keys"] == ["deribit:BTC", "deribit:ETH"]
            ids: list[str] = []
            while len(ids) < 2:
                event = await asyncio.wait_for(next_event(reader), WAIT_S)
                if event.event == "surface" and event.id:
                    ids.append(event.id)
            assert ids == ["deribit:BTC@2", "deribit:ETH@1"]
            await send(topic, "BTC", 3)
            live = await asyncio.wait_for(next_event(reader), WAIT_S)
            while live.event != "surface":
                live = await asyncio.wait_for(next_event(reader), WAIT_S)
            assert live.id == "deribit:BTC@3"
            writer.close()


async def test_view_shows_only_the_keys_asked_for(kafka_bootstrap: str,
                                                  unique_topic: Topic) -> None:
    topic = unique_topic("view")
    await create_topic(kafka_bootstrap, topic)
    async with producer(kafka_bootstrap) as send:
        await send(topic, "BTC", 1)
        await send(topic, "ETH", 4)
        async with running_view(kafka_bootstrap, topic, ["deribit:ETH"]) as port:
            await surface_when(port, "deribit:ETH", 4)
            assert (await get(port, "/surface/deribit:BTC")).status == 404


def test_view_refuses_a_key_without_its_venue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["view", "--bootstrap", "127.0.0.1:1", "--keys", "deribit:BTC,ETH"]) == 2
    assert "--keys wants VENUE:UNDERLYING, got ['ETH']" in capsys.readouterr().err
