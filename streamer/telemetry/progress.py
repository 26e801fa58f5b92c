"""Progress: the one-line-per-second summary of ``streamer run``, and the bar of long
commands (``replay``, ``plot``).

Both go to stderr: stdout carries only data (``--sink stdout`` surfaces, one JSON line
each). The bar draws only on a terminal: piped or redirected, it stays silent.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

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

    def on_reject(self, n: int = 1) -> None:
        """Count ``n`` dropped messages or quotes."""
        self.rejected += n

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


class ProgressBar:
    """A bar redrawn in place on a terminal (at most every ``every_s``); nothing when piped."""

    WIDTH = 30

    def __init__(self, label: str, stream: TextIO | None = None, *, enabled: bool | None = None,
                 every_s: float = 0.2, clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = _is_terminal(self.stream) if enabled is None else enabled
        self.every_s, self.clock = every_s, clock
        self._last_draw: float | None = None
        self._drawn = False

    def update(self, fraction: float, detail: str = "") -> None:
        """Show ``fraction`` (0 to 1) done, with a short ``detail``."""
        if not self.enabled:
            return
        now = self.clock()
        if self._last_draw is not None and now - self._last_draw < self.every_s:
            return
        self._last_draw = now
        filled = round(max(0.0, min(1.0, fraction)) * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {fraction:4.0%} {detail}\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the bar's line (if one was drawn)."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
