"""The variance clock: the calendar by default, weekday weights and events otherwise."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streamer.core.variance_clock import DAY_MS, YEAR_MS, ClockEvent, VarianceClock


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


MONDAY = _ms("2026-01-19T00:00:00")
SATURDAY = _ms("2026-01-24T00:00:00")
WEEKEND = (1.0, 1.0, 1.0, 1.0, 1.0, 0.6, 0.6)


def test_default_is_the_calendar_exactly() -> None:
    clock = VarianceClock()
    start, end = 1_769_000_000_123, 1_771_500_000_456
    assert clock.years(start, end) == (end - start) / YEAR_MS


def test_a_whole_week_is_still_seven_days() -> None:
    clock = VarianceClock(weekday_weights=WEEKEND)
    assert clock.years(MONDAY, MONDAY + 7 * DAY_MS) == pytest.approx(7 / 365, rel=1e-14)


def test_a_weekend_day_carries_its_weight() -> None:
    clock = VarianceClock(weekday_weights=WEEKEND)
    norm = 7 / 6.2
    assert clock.years(SATURDAY, SATURDAY + DAY_MS) * 365 == pytest.approx(0.6 * norm)
    assert clock.years(MONDAY, MONDAY + DAY_MS) * 365 == pytest.approx(norm)
    half = SATURDAY - DAY_MS // 2  # Friday noon to Saturday noon
    assert clock.years(half, half + DAY_MS) * 365 == pytest.approx(0.8 * norm)


def test_events_add_variance_inside_the_window_only() -> None:
    at = MONDAY + DAY_MS + 13 * 3_600_000
    clock = VarianceClock(events=(ClockEvent(at_ms=at, extra_days=1.5),))
    assert clock.years(MONDAY, MONDAY + 2 * DAY_MS) * 365 == pytest.approx(3.5)
    assert clock.years(at, MONDAY + 2 * DAY_MS) * 365 == pytest.approx(11 / 24)
    assert clock.years(MONDAY + 2 * DAY_MS, MONDAY) * 365 == pytest.approx(-3.5)
