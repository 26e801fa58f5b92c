"""The scorecard's arithmetic on hand-made quotes (the real replays are in test_goals.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamer.devtools import scorecard as sc


def _quotes() -> sc.ExpiryQuotes:
    # strike, is_call, forward, mark, bid_iv, ask_iv; forward 100: puts below, calls above
    rows = np.array([
        [80, 0, 100, 0.60, 0.58, 0.62],
        [80, 1, 100, 0.60, math.nan, 0.70],   # ITM call: not scored
        [90, 0, 100, 0.52, 0.51, 0.53],
        [110, 1, 100, 0.48, 0.47, 0.49],
        [120, 1, 100, 0.50, 0.49, math.nan],  # bid only: scored, not in the band count
        [130, 1, 100, 0.52, 0.51, 0.53],
        [140, 1, 100, 0.55, 0.50, math.nan],  # beyond the two-sided strikes: not scored
    ])
    q = sc._expiry_quotes(1_000, 1_000 + int(sc.YEAR_MS / 10), rows)
    assert q is not None
    return q


def test_scored_quotes_are_otm_with_a_bid_inside_the_two_sided_range() -> None:
    q = _quotes()
    np.testing.assert_array_equal(q.strike, [80, 90, 110, 120, 130])
    assert q.n_two_sided == 4
    # ATM mark: linear in k = ln(K/F) between 90 (0.52) and 110 (0.48)
    k90, k110 = math.log(0.9), math.log(1.1)
    assert q.atm_mark == pytest.approx(0.52 + (0.48 - 0.52) * (0 - k90) / (k110 - k90))


def test_score_vols_rmse_band_worst_and_atm() -> None:
    q = _quotes()
    model = np.array([0.61, 0.535, 0.48, 0.49, 0.52])  # errors 1, 1.5, 0, -1, 0 vol points
    s = sc.score_vols(q, model, q.atm_mark + 0.02)
    assert s.rmse_vp == pytest.approx(math.sqrt((1 + 2.25 + 0 + 1 + 0) / 5))
    assert (s.n, s.n_two_sided, s.n_in_band) == (5, 4, 3)  # 0.535 is above the 0.53 ask
    assert s.worst_vp == pytest.approx(1.5)
    assert s.atm_vp == pytest.approx(2.0)
    assert s.bucket == "30-90d"


def test_summary_of_a_failed_slice_is_infinitely_bad() -> None:
    q = _quotes()
    good = sc.score_vols(q, q.mark.copy(), q.atm_mark)
    bad = sc.score_vols(q, np.full(5, np.nan), q.atm_mark)
    summary = sc.Summary.of([good, bad])
    assert summary.worst_vp == math.inf
    assert summary.rmse_vp_median == 0.0


@pytest.mark.parametrize(("days", "bucket"), [(0.3, "<1d"), (1.0, "1-7d"), (29.9, "7-30d"),
                                              (45, "30-90d"), (200, ">90d")])
def test_buckets(days: float, bucket: str) -> None:
    assert sc.bucket_of(days) == bucket
