"""``streamer view``: the live page of any deployment, from its surface topic alone.

The topic is read with :class:`streamer.client.SurfaceSubscriber` (latest surface per
key first, then live, conflated per fetch) and served by the same HTTP server, page
and event stream as ``streamer run``. Its health event says what a reader of the topic
can know: surfaces/s, the publisher's own receive→publish latency, undecodable
messages, and each key's age on the exchange clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from streamer.client.subscriber import SurfaceSubscriber
from streamer.config import AppConfig
from streamer.kafka.options import consumer_options
from streamer.telemetry.metrics import Health, HttpServerHandle, Metrics, serve_http
from streamer.types import SurfaceUpdate
from streamer.ui.hub import SurfaceHub
from streamer.ui.routes import ui_route

log = logging.getLogger(__name__)


class TopicHealth:
    """The health event of a topic reader; surfaces/s over the time since the last call."""

    def __init__(self, source: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.received = 0
        self.rejected = 0
        self._clock = clock
        self._last = (clock(), 0)

    def __call__(self) -> dict[str, Any]:
        now = self._clock()
        then, count = self._last
        self._last = (now, self.received)
        rate = (self.received - count) / (now - then) if now > then else 0.0
        return {"surfaces_per_s": round(rate, 1), "published": self.received,
                "rejects": {"undecodable": self.rejected} if self.rejected else {},
                "source": self.source}


class TopicView:
    """The page over a surface topic: ``start`` (returns the port), ``run``, ``close``."""

    def __init__(self, config: AppConfig, bootstrap: str, keys: Sequence[str] | None) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.keys = list(keys) if keys else None
        topic = config.kafka.surface_topic
        self.stats = TopicHealth(f"topic {topic} at {bootstrap}")
        self.hub = SurfaceHub(health=self.stats)
        self._http: HttpServerHandle | None = None

    async def start(self) -> int:
        """Listen on ``metrics.host:metrics.port``; the port (0 in config = any free one)."""
        metrics = self.config.metrics
        self._http = await serve_http(Metrics(), Health(), metrics.host, metrics.port,
                                      extra=ui_route(self.hub))
        log.info("live view on http://%s:%d/ui (from %s)", metrics.host, self._http.port,
                 self.stats.source)
        return self._http.port

    async def run(self, duration_s: float | None = None) -> None:
        """Follow the topic until cancelled (or for ``duration_s``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._follow(), duration_s)

    async def _follow(self) -> None:
        kafka = self.config.kafka
        options = consumer_options(kafka, self.bootstrap)
        bootstrap = options.pop("bootstrap_servers")
        async with SurfaceSubscriber(bootstrap, self.keys, kafka.surface_topic,
                                     value_format=kafka.value_format, topic_timeout_s=None,
                                     **options) as surfaces:
            async for surface in surfaces:
                self.stats.received += 1
                self.stats.rejected = surfaces.rejected
                self.hub.publish(surface.update, publisher_latency_s(surface.update))

    async def close(self) -> None:
        """End the event streams and stop listening."""
        self.hub.close()
        if self._http is not None:
            await self._http.close()


def publisher_latency_s(update: SurfaceUpdate) -> float | None:
    """Newest tick's receive time to the hand-over to the producer, as published."""
    if update.published_ts_ns <= 0 or update.received_ts_ns <= 0:
        return None
    return (update.published_ts_ns - update.received_ts_ns) / 1e9


async def view(config: AppConfig, bootstrap: str, keys: Sequence[str] | None,
               duration_s: float | None = None) -> int:
    """``streamer view``: serve until a signal (or ``duration_s``); the exit code."""
    page = TopicView(config, bootstrap, keys)
    await page.start()
    try:
        await page.run(duration_s)
    finally:
        await page.close()
    return 0
