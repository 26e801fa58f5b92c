"""/ui, /ui/events and /surface/{key} on the metrics endpoint's server, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator

import msgspec
import pytest

from streamer.sinks.codec import decode_surface, encode_surface
from streamer.telemetry.metrics import Health, Metrics, serve_http
from streamer.types import SurfaceUpdate
from streamer.ui.hub import SurfaceHub
from streamer.ui.routes import ui_route
from tests.client.factory import make_slice, make_surface
from tests.ui.loopback import get, next_event, request_head


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


class Running:
    def __init__(self, hub: SurfaceHub, port: int) -> None:
        self.hub = hub
        self.port = port


@pytest.fixture
async def server() -> AsyncIterator[Running]:
    hub = SurfaceHub(health=lambda: {"ticks_per_s": 12.0, "rejects": {"crossed": 2}})
    # A long health period: these tests see health events only where they ask for them.
    http = await serve_http(Metrics(), Health(), "127.0.0.1", 0,
                            extra=ui_route(hub, health_period_s=3600))
    yield Running(hub, http.port)
    hub.close()
    await http.close()


def surface(seq: int, underlying: str = "BTC", **over: object) -> SurfaceUpdate:
    return make_surface(seq=seq, underlying=underlying, **over)


async def test_ui_is_one_html_page_with_no_external_resources(server: Running) -> None:
    response = await get(server.port, "/ui")
    assert response.status == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    html = response.body.decode()
    assert html.startswith("<!doctype html>")
    # No URL leaves the page (the SVG namespace is an identifier, never fetched).
    urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", html))
    assert urls <= {"http://www.w3.org/2000/svg"}
    # Nothing loaded from elsewhere: every src/href is an inline data: URI.
    assert all(v.startswith("data:") for v in re.findall(r"(?:src|href)=\"([^\"]*)\"", html))


async def test_surface_by_key_is_the_latest_published_json(server: Running) -> None:
    server.hub.publish(surface(1))
    server.hub.publish(surface(2))
    response = await get(server.port, "/surface/deribit:BTC")
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert decode_surface(response.body).seq == 2
    assert response.body == encode_surface(surface(2))


@pytest.mark.parametrize(("path", "reason"), [
    ("/surface/deribit:ETH", "no surface published for deribit:ETH (known: deribit:BTC)"),
    ("/surface/BTC", "'BTC' is not a <venue>:<underlying> key"),
])
async def test_unknown_surface_is_a_404_with_a_reason(server: Running, path: str,
                                                      reason: str) -> None:
    server.hub.publish(surface(1))
    response = await get(server.port, path)
    assert response.status == 404
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.body) == {"error": "not found", "reason": reason}


async def test_metrics_routes_and_404s_still_answer_beside_the_ui(server: Running) -> None:
    assert (await get(server.port, "/healthz")).status == 200
    assert (await get(server.port, "/metrics")).status == 200
    assert (await get(server.port, "/nope")).status == 404


async def test_events_stream_starts_with_health_then_the_latest_surface_of_each_key(
        server: Running) -> None:
    server.hub.publish(surface(3, "ETH"))
    server.hub.publish(surface(5, "BTC"))
    reader, writer, status, headers = await request_head(server.port, "/ui/events")
    try:
        assert status == 200
        assert headers["content-type"] == "text/event-stream; charset=utf-8"
        assert headers["cache-control"] == "no-cache"
        assert "content-length" not in headers
        health = await next_event(reader)
        assert health.event == "health"
        assert json.loads(health.data)["rejects"] == {"crossed": 2}
        seen = []
        for _ in range(2):
            event = await next_event(reader)
            assert event.event == "surface"
            update = decode_surface(event.data.encode())
            assert event.id == f"{update.key}@{update.seq}"
            curves = await next_event(reader)
            assert curves.event == "curves"
            assert json.loads(curves.data)["seq"] == update.seq
            seen.append((update.key, update.seq))
        assert seen == [("deribit:BTC", 5), ("deribit:ETH", 3)]
        server.hub.publish(surface(6, "BTC"))
        live = await next_event(reader)
        assert (live.event, live.id) == ("surface", "deribit:BTC@6")
    finally:
        await close(writer)


async def test_every_event_is_one_data_line_of_json_and_a_blank_line(server: Running) -> None:
    nan_slice = make_slice(1_733_644_800_000, {"a": 0.01, "b": 0.1, "rho": -0.3, "m": 0.0,
                                               "sigma": 0.1}, forward=100_000.0,
                           rmse_vol=float("nan"))
    server.hub.publish(surface(1, slices=[nan_slice]))
    reader, writer, _, _ = await request_head(server.port, "/ui/events")
    try:
        for _ in range(3):
            event = await next_event(reader)
            assert [f.split(":", 1)[0] for f in event.fields] in (
                ["event", "data"], ["event", "id", "data"])
            json.loads(event.data)  # strict JSON: a NaN would not parse in a browser either
    finally:
        await close(writer)


async def test_a_slow_reader_gets_the_newest_surface_of_each_key_not_every_one(
        server: Running) -> None:
    reader, writer, _, _ = await request_head(server.port, "/ui/events")
    assert (await next_event(reader)).event == "health"
    # Surfaces of about 30 KB each: a reader that does not read fills the socket
    # buffers within a few hundred of them; past that its keys conflate.
    wide = [make_slice(1_733_644_800_000 + i * 86_400_000,
                       {"a": 0.01, "b": 0.1, "rho": -0.3, "m": 0.0, "sigma": 0.1},
                       forward=100_000.0) for i in range(60)]
    published = 2000
    for seq in range(1, published + 1):
        server.hub.publish(surface(seq, slices=wide))
        server.hub.publish(surface(seq, "ETH", slices=wide[:1]))
        for _ in range(3):
            await asyncio.sleep(0)
    (client,) = server.hub.clients
    assert client.conflated > 0
    seqs: dict[str, list[int]] = {"deribit:BTC": [], "deribit:ETH": []}
    while seqs["deribit:BTC"][-1:] != [published] or seqs["deribit:ETH"][-1:] != [published]:
        event = await asyncio.wait_for(next_event(reader), 30)
        if event.event == "surface":
            update = msgspec.json.decode(event.data)
            seqs[f"{update['venue']}:{update['underlying']}"].append(update["seq"])
    await close(writer)
    for received in seqs.values():
        assert received == sorted(set(received))  # never an older one, never twice
        assert len(received) < published
    assert client.conflated == 2 * published - sum(len(v) for v in seqs.values())


async def test_closing_the_hub_ends_every_stream(server: Running) -> None:
    reader, writer, _, _ = await request_head(server.port, "/ui/events")
    assert (await next_event(reader)).event == "health"
    server.hub.close()
    assert await asyncio.wait_for(reader.read(), 10) == b""
    await close(writer)


async def test_a_reader_that_goes_away_is_forgotten(server: Running) -> None:
    reader, writer, _, _ = await request_head(server.port, "/ui/events")
    assert (await next_event(reader)).event == "health"
    assert len(server.hub.clients) == 1
    await close(writer)
    for seq in range(1, 200):
        server.hub.publish(surface(seq))
        await asyncio.sleep(0.01)
        if not server.hub.clients:
            break
    assert server.hub.clients == set()


async def test_the_hub_writes_a_reader_that_keeps_up_without_waking_its_task(
        server: Running) -> None:
    """Twenty browsers cost twenty socket writes per surface, not twenty task wake-ups."""
    reader, writer, _, _ = await request_head(server.port, "/ui/events")
    try:
        assert (await next_event(reader)).event == "health"
        (client,) = server.hub.clients
        woken: list[bool] = []
        wake = client.wake.set
        client.wake.set = lambda: (woken.append(True), wake())[-1]  # type: ignore[method-assign]
        for seq in range(1, 6):
            server.hub.publish(surface(seq))
            event = await asyncio.wait_for(next_event(reader), 10)
            assert (event.event, event.id) == ("surface", f"deribit:BTC@{seq}")
            assert (await next_event(reader)).event == "curves"
        assert woken == []
    finally:
        await close(writer)
