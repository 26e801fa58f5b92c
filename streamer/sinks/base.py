"""The Sink interface every output implements, and an in-memory sink for tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from streamer.types import SurfaceUpdate

OnDelivered = Callable[[SurfaceUpdate, int], None]
OnError = Callable[[str], None]


class Sink(Protocol):
    """Where surface updates go. ``publish`` never blocks and never raises."""

    async def start(self) -> None:
        """Connect; called once before the first publish."""

    def publish(self, update: SurfaceUpdate) -> None:
        """Hand an update over (the sink may conflate to the latest per key)."""

    async def stop(self) -> None:
        """Flush what is pending, then close."""


@runtime_checkable
class BackPressured(Protocol):
    """A sink that buffers: whoever must not lose an update awaits ``drain``."""

    async def drain(self) -> None:
        """Wait until the sink can take more; raise when it never will."""


class MemorySink:
    """Collects updates in a list; delivery is immediate."""

    def __init__(self, on_delivered: OnDelivered | None = None) -> None:
        self.updates: list[SurfaceUpdate] = []
        self._on_delivered = on_delivered
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    def publish(self, update: SurfaceUpdate) -> None:
        self.updates.append(update)
        if self._on_delivered is not None:
            self._on_delivered(update, time.time_ns())

    async def stop(self) -> None:
        self.stopped = True
