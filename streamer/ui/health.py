"""The ``health`` event of a running service: ticks/s, rejects by reason, venues, broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from streamer.telemetry.metrics import Health, Metrics
from streamer.telemetry.progress import Progress


class ServiceHealth:
    """Reads the service's own counters; ticks/s is over the time since the last call."""

    def __init__(self, metrics: Metrics, health: Health, progress: Progress,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._health = health
        self._progress = progress
        self._clock = clock
        self._last = (clock(), progress.ticks)

    def __call__(self) -> dict[str, Any]:
        now, ticks = self._clock(), self._progress.ticks
        then, ticks_then = self._last
        self._last = (now, ticks)
        rate = (ticks - ticks_then) / (now - then) if now > then else 0.0
        return {"ticks_per_s": round(rate, 1), "ticks": ticks,
                "published": self._progress.published,
                "rejects": self.rejects(), "venues": dict(sorted(self._health.venues.items())),
                "broker_ok": self._health.broker_ok}

    def rejects(self) -> dict[str, int]:
        """Rejected messages and quotes since start, by reason (all venues)."""
        totals: dict[str, int] = {}
        for family in self._metrics.ticks_rejected_total.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    reason = sample.labels["reason"]
                    totals[reason] = totals.get(reason, 0) + int(sample.value)
        return dict(sorted(totals.items()))
