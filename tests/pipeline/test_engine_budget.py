"""The time budget is an explicit input: measured on the clock the caller gives the
engine (live: perf_counter), none without one (replay), driven here by a fake clock."""

from __future__ import annotations

from streamer.config import BatchConfig, CalibrationConfig
from streamer.pipeline.engine import Engine
from tests.pipeline.chain import NOW_NS, chain_quotes, expiry_ms

DAYS = (7, 20, 45)
SABR = CalibrationConfig(model="sabr", budget_ms=100.0)  # fitted expiry by expiry


class _Clock:
    """Each reading is ``step`` seconds after the last."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _cut(engine: Engine) -> list[int]:
    for quote in chain_quotes(DAYS):
        engine.on_quote(quote)
    updates = engine.flush(NOW_NS)
    return [s.expiry_ts_ms for u in updates for s in u.slices]


def test_a_batch_past_its_budget_defers_the_rest_of_its_slices() -> None:
    # 60 ms a reading: the deadline is 100 ms after the first; the check before the
    # first expiry reads 60 ms (in time), the one before the second 120 ms (past it).
    engine = Engine("deribit", SABR, BatchConfig(), budget_clock=_Clock(0.06))
    assert _cut(engine) == [expiry_ms(7)]
    assert engine.drain_report().deferred_slices == 2
    state = engine._underlyings["BTC"]
    assert state.book.dirty == {expiry_ms(20), expiry_ms(45)}  # fitted with the next batch


def test_without_a_budget_clock_every_slice_is_fitted_whatever_the_budget() -> None:
    engine = Engine("deribit", CalibrationConfig(model="sabr", budget_ms=0.0), BatchConfig())
    assert _cut(engine) == [expiry_ms(d) for d in DAYS]
    assert engine.drain_report().deferred_slices == 0


def test_a_clock_that_stands_still_defers_nothing() -> None:
    engine = Engine("deribit", SABR, BatchConfig(), budget_clock=_Clock(0.0))
    assert _cut(engine) == [expiry_ms(d) for d in DAYS]
    assert engine.drain_report().deferred_slices == 0
