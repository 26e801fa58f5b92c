"""A variance clock: how much of a year's variance each stretch of calendar time carries.

Crypto trades every day, but weekends move less: desks count a weekend day as a fraction
of a weekday, and add variance for known events (a CPI print, an FOMC decision). The
clock gives each UTC weekday a weight and each event window extra variance in days;
weights are normalised so that a week without events still carries 7 days, so a year is
still a year. With every weight 1 and no events the clock is the calendar, exactly
(ACT/365 seconds), and nothing published changes.
"""

from __future__ import annotations

import msgspec
import numpy as np

DAY_MS = 86_400_000
YEAR_MS = 365.0 * DAY_MS
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


def calendar_years(start_ms: int, end_ms: int) -> float:
    """Calendar time from ``start_ms`` to ``end_ms`` in years (ACT/365, seconds-exact)."""
    return (end_ms - start_ms) / YEAR_MS


class ClockEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Extra variance, in days of average variance, released at ``at_ms``."""

    at_ms: int
    extra_days: float


class VarianceClock(msgspec.Struct, frozen=True, kw_only=True):
    """Weekday weights (Monday first) and events; the calendar by default."""

    weekday_weights: tuple[float, ...] = (1.0,) * 7
    events: tuple[ClockEvent, ...] = ()

    @property
    def is_calendar(self) -> bool:
        """Every weight 1 and no events: years are calendar years."""
        return all(w == 1.0 for w in self.weekday_weights) and not self.events

    def years(self, start_ms: int, end_ms: int) -> float:
        """Variance time from ``start_ms`` to ``end_ms`` (negative when end is earlier)."""
        if self.is_calendar:
            return calendar_years(start_ms, end_ms)
        if end_ms < start_ms:
            return -self.years(end_ms, start_ms)
        return (self._days(start_ms, end_ms) * DAY_MS) / YEAR_MS

    def _days(self, start_ms: int, end_ms: int) -> float:
        weights = np.asarray(self.weekday_weights, np.float64)
        weights = weights * (7.0 / weights.sum())
        first, last = start_ms // DAY_MS, end_ms // DAY_MS
        days = np.arange(first, last + 1)
        lo = np.maximum(days * DAY_MS, start_ms)
        hi = np.minimum((days + 1) * DAY_MS, end_ms)
        share = np.clip(hi - lo, 0, None) / DAY_MS
        total = float(np.sum(share * weights[(days + _EPOCH_WEEKDAY) % 7]))
        return total + sum(e.extra_days for e in self.events if start_ms < e.at_ms <= end_ms)
