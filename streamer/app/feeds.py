"""Where the sources' quotes and events go: the QuoteSinks of the service's sessions.

``EngineFeed`` is the sources' QuoteSink in ``streamer run`` and ``calibrate``: quotes
into the venue's engine; ``TicksFeed`` the one of ``streamer ingest``: quotes to the
ticks topic. Both count ticks, rejects, reconnects and connection state into the
metrics, health and progress line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from streamer.sinks.ticks import KafkaRecordSink
from streamer.telemetry.metrics import Health, Metrics
from streamer.telemetry.progress import Progress
from streamer.types import Quote, VenueVolIndex


class QuoteTarget(Protocol):
    """Where a venue's quotes go (an Engine, or the worker in front of one)."""

    def on_quote(self, quote: Quote) -> None: ...

    def on_vol_index(self, index: VenueVolIndex) -> None: ...


class EngineFeed:
    """The sources' QuoteSink: quotes into the venue's engine, events into metrics."""

    def __init__(self, engine_for: Callable[[str], QuoteTarget], metrics: Metrics, health: Health,
                 progress: Progress) -> None:
        self.engine_for = engine_for
        self.metrics, self.health, self.progress = metrics, health, progress
        self._ticks: dict[str, Any] = {}  # venue -> its counter child (labels() per tick costs)

    def on_quote(self, quote: Quote) -> None:
        self.engine_for(quote.venue).on_quote(quote)
        self._count(quote)

    def _count(self, quote: Quote) -> None:
        ticks = self._ticks.get(quote.venue)
        if ticks is None:
            ticks = self._ticks[quote.venue] = self.metrics.ticks_total.labels(venue=quote.venue)
        ticks.inc()
        self.progress.on_tick()

    def on_vol_index(self, index: VenueVolIndex) -> None:
        self.engine_for(index.venue).on_vol_index(index)

    def on_reject(self, venue: str, reason: str) -> None:
        self.metrics.ticks_rejected_total.labels(venue=venue, reason=reason).inc()
        self.progress.on_reject()

    def on_reconnect(self, venue: str) -> None:
        self.metrics.ws_reconnects_total.labels(venue=venue).inc()

    def on_connected(self, venue: str, connected: bool) -> None:
        self.metrics.venue_connected.labels(venue=venue).set(1 if connected else 0)
        self.health.set_venue(venue, connected)


class TicksFeed(EngineFeed):
    """``streamer ingest``: quotes to the ticks topic instead of an engine."""

    def __init__(self, ticks: KafkaRecordSink[Quote], metrics: Metrics, health: Health,
                 progress: Progress) -> None:
        super().__init__(_no_engine, metrics, health, progress)
        self.ticks = ticks

    def on_quote(self, quote: Quote) -> None:
        self.ticks.add(quote)
        self._count(quote)

    def on_vol_index(self, index: VenueVolIndex) -> None:
        """Not carried by the ticks topic (Quotes only): split-mode surfaces go without it."""


def _no_engine(venue: str) -> QuoteTarget:
    raise AssertionError("ingest mode has no engine")
