"""The UI endpoints of a running ``streamer run`` (in process) on the bundled replay."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import msgspec

from streamer.app.service import Service
from streamer.config import load_config
from streamer.sinks.codec import decode_surface
from tests.ui.loopback import get, next_event, request_head

ROOT = Path(__file__).parents[2]
WAIT_S = 60.0


async def test_a_running_service_streams_surfaces_with_their_quotes_and_serves_the_latest(
        ) -> None:
    config = load_config(ROOT / "config.yaml", env={})
    config = msgspec.structs.replace(
        config, sink="stdout", metrics=msgspec.structs.replace(config.metrics, port=0))
    service = Service(config, duration_s=120, progress_stream=io.StringIO())
    run = asyncio.create_task(service.run())
    try:
        while service.http_port is None:
            await asyncio.sleep(0.05)
        port = service.http_port
        reader, writer, status, headers = await request_head(port, "/ui/events")
        assert status == 200
        assert headers["content-type"] == "text/event-stream; charset=utf-8"
        surfaces, curves, health = [], [], []
        while len(surfaces) < 3 or not curves or not health:
            event = await asyncio.wait_for(next_event(reader), WAIT_S)
            if event.event == "surface":
                surfaces.append(decode_surface(event.data.encode()))
            elif event.event == "curves":
                curves.append(json.loads(event.data))
            else:
                health.append(json.loads(event.data))
        assert {s.schema_version for s in surfaces} == {1}
        # Inside the service each smile comes with its chain's bid/ask IVs.
        bars = [(k, bid, ask) for c in curves for s in c["slices"] if s["quotes"]
                for k, bid, ask in zip(s["quotes"]["k"], s["quotes"]["bid_iv"],
                                       s["quotes"]["ask_iv"], strict=True)]
        assert len(bars) > 50
        assert all(bid <= ask for _, bid, ask in bars if bid is not None and ask is not None)
        assert {"ticks_per_s", "rejects", "venues", "broker_ok", "keys"} <= set(health[-1])

        latest = await get(port, "/surface/deribit:BTC")
        assert latest.status == 200
        assert decode_surface(latest.body).key == "deribit:BTC"
        assert (await get(port, "/surface/okx:BTC")).status == 404

        # A reader still connected does not hold the service's shutdown up.
        service.stop()
        assert await asyncio.wait_for(run, WAIT_S) == 0
        await asyncio.wait_for(reader.read(), WAIT_S)  # the stream ended: EOF
        writer.close()
    finally:
        if not run.done():
            service.stop()
            await asyncio.wait({run})
