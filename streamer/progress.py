"""The one-line-per-second progress summary of ``streamer run``."""

from __future__ import annotations

from collections import deque

import numpy as np

from streamer.types import SurfaceUpdate


class Progress:
    """Accumulates what happened since the last line and renders it."""

    def __init__(self, window: int = 4096) -> None:
        self._latencies_s: deque[float] = deque(maxlen=window)
        self._latest: dict[str, SurfaceUpdate] = {}
        self.ticks = 0
        self.published = 0
        self.rejected = 0
        self._ticks_at_last_line = 0

    def on_tick(self) -> None:
        """Count one accepted quote."""
        self.ticks += 1

    def on_reject(self) -> None:
        """Count one dropped message or quote."""
        self.rejected += 1

    def on_delivered(self, update: SurfaceUpdate, latency_s: float) -> None:
        """Record a delivered surface and its tick→publish latency."""
        self._latest[update.key] = update
        self._latencies_s.append(latency_s)
        self.published += 1

    def line(self, elapsed_s: float) -> str:
        """Render the summary since the previous call; ``elapsed_s`` is the wall time since."""
        ticks_per_s = (self.ticks - self._ticks_at_last_line) / max(elapsed_s, 1e-9)
        self._ticks_at_last_line = self.ticks
        slices = [s for u in self._latest.values() for s in u.slices]
        fitted = sum(s.status in ("warm", "cold") for s in slices)
        rmses = [s.rmse_vol for s in slices if np.isfinite(s.rmse_vol)]
        worst = f"{max(rmses) * 100:.2f}vp" if rmses else "-"
        if self._latencies_s:
            p50, p99 = np.percentile(np.fromiter(self._latencies_s, float), [50, 99]) * 1e3
            latency = f"p50 {p50:.1f}ms p99 {p99:.1f}ms"
        else:
            latency = "p50 - p99 -"
        names = ",".join(sorted(self._latest)) or "-"
        return (f"underlyings {names} | slices {fitted}/{len(slices)} | worst rmse {worst} | "
                f"tick→publish {latency} | {ticks_per_s:,.0f} ticks/s | "
                f"published {self.published} | rejected {self.rejected}")
