"""When to cut a batch: every ``interval_ms`` of quote time, or after ``max_quotes`` quotes."""

from __future__ import annotations

from collections.abc import Iterable


class Batcher:
    """Counts quotes since the last cut; times are receive times in ns, passed in."""

    def __init__(self, interval_ms: int, max_quotes: int) -> None:
        self.interval_ns = interval_ms * 1_000_000
        self.max_quotes = max_quotes
        self.pending = 0
        self.started_ns: int | None = None

    def add(self, received_ts_ns: int) -> None:
        """One quote arrived."""
        if self.started_ns is None:
            self.started_ns = received_ts_ns
        self.pending += 1

    def due(self, now_ns: int) -> bool:
        """True when the batch should be cut now."""
        if self.started_ns is None:
            return False
        return self.pending >= self.max_quotes or now_ns - self.started_ns >= self.interval_ns

    def due_at_ns(self) -> int | None:
        """When the batch falls due by time (None while it is empty): the moment a
        timer at that instant would cut it."""
        return None if self.started_ns is None else self.started_ns + self.interval_ns

    def cut(self) -> int:
        """Start a new batch; returns how many quotes the old one had."""
        count, self.pending, self.started_ns = self.pending, 0, None
        return count


def earliest_due_ns(batchers: Iterable[Batcher], now_ns: int | None = None) -> int | None:
    """When the first pending batch of ``batchers`` falls due by time (None: none is
    pending); given ``now_ns``, one already due (by count too) says ``now_ns``."""
    due = [now_ns if now_ns is not None and b.due(now_ns) else b.due_at_ns()
           for b in batchers]
    return min((d for d in due if d is not None), default=None)
