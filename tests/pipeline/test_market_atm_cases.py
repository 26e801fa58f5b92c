""":func:`streamer.pipeline.calibrator.market_atm` case by case, with the numbers worked by
hand: the chord between the nearest quotes either side of the money, of the marks where
both have one, else of the band centres (the mid where a side is missing); a quote at the
money on its own; None with one side only or a gap wider than an ATM total-vol width."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.pipeline.calibrator import market_atm, market_atms
from streamer.pipeline.snapshot import SliceSnapshot

NAN = float("nan")


def _snap(k: list[float], iv: list[float], bid: list[float], ask: list[float],
          mark: list[float] | None = None, t: float = 0.25) -> SliceSnapshot:
    return SliceSnapshot(expiry_ts_ms=1, t=t, forward=100.0, forward_method="parity",
                         k=np.array(k), iv=np.array(iv), bid_iv=np.array(bid),
                         ask_iv=np.array(ask), weights=np.ones(len(k)),
                         mark_iv=np.zeros(0) if mark is None else np.array(mark))


def test_the_chord_of_the_band_centres() -> None:
    # nearest quotes at k = -0.1 (centre 0.5, half 0.02) and 0.3 (centre 0.6, half 0.04)
    snap = _snap([-0.5, -0.1, 0.3, 0.6], [0.7, 0.51, 0.61, 0.7],
                 [0.6, 0.48, 0.56, 0.6], [0.8, 0.52, 0.64, 0.8], t=1.0)  # gap 0.4 < 0.525
    atm, half = market_atm(snap)  # type: ignore[misc]
    assert atm == pytest.approx(0.75 * 0.5 + 0.25 * 0.6, rel=1e-15)
    assert half == pytest.approx(0.75 * 0.02 + 0.25 * 0.04, rel=1e-15)


def test_marks_on_both_sides_win_and_a_missing_one_falls_back_to_the_bands() -> None:
    k, iv, bid, ask = [-0.1, 0.1], [0.5, 0.6], [0.45, NAN], [0.55, 0.65]
    atm, half = market_atm(_snap(k, iv, bid, ask, mark=[0.4, 0.5]))  # type: ignore[misc]
    assert atm == pytest.approx(0.45, rel=1e-15)
    assert np.isnan(half)  # a side of the band is missing at k = 0.1
    atm, _ = market_atm(_snap(k, iv, bid, ask, mark=[0.4, NAN]))  # type: ignore[misc]
    assert atm == pytest.approx(0.5 * 0.5 + 0.5 * 0.6, rel=1e-15)  # centre, then the mid


def test_a_quote_at_the_money_is_the_atm() -> None:
    snap = _snap([-0.2, 0.0, 0.2], [0.6, 0.5, 0.6], [0.55, 0.46, 0.55], [0.65, 0.52, 0.65])
    assert market_atm(snap) == (0.5 * (0.46 + 0.52), 0.5 * (0.52 - 0.46))


def test_one_side_a_wide_gap_or_no_quote_give_none() -> None:
    assert market_atm(_snap([0.1, 0.2], [0.5, 0.6], [0.4, 0.5], [0.6, 0.7])) is None
    assert market_atm(_snap([-0.2, -0.1], [0.5, 0.6], [0.4, 0.5], [0.6, 0.7])) is None
    # 0.5 * sqrt(0.25) = 0.25 of total vol at the money; the quotes are 0.6 apart
    assert market_atm(_snap([-0.3, 0.3], [0.5, 0.5], [0.4, 0.4], [0.6, 0.6])) is None
    assert market_atm(_snap([-0.1, 0.1], [0.5, 0.5], [0.4, 0.4], [0.6, 0.6])) is not None
    assert market_atm(_snap([-0.1, 0.1], [0.5, 0.5], [0.4, 0.4], [0.6, 0.6], t=0.0)) is None
    empty = _snap([], [], [], [])
    assert market_atms([empty, _snap([-0.1, 0.1], [0.5, 0.5], [0.4, 0.4], [0.6, 0.6])])[0] is None
