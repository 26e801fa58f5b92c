"""The C kernel of the spread statistics' sums (``_spread_stats.c``) against the numpy
rows it shadows (:func:`streamer.pipeline.spread.spread_sums_numpy`): the same bits on
random chains (widths past numpy's 128-cell pairwise blocks, missing sides, NaN model
vols, rows without quotes), the fallback forced, and its guards on bad buffers."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from streamer.pipeline import spread

FloatArray = npt.NDArray[np.float64]
needs_native = pytest.mark.skipif(spread._NATIVE is None, reason="the C kernel was not built")


def _chain(rng: np.random.Generator, n: int, m: int
           ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Rows of ``n`` slices padded to ``m`` quotes as the calibrator pads them (NaN
    beyond), spreads from a hundredth of a vol point to ten, a fifth of bids and a tenth
    of asks missing, a few NaN and infinite model vols."""
    sizes = rng.integers(0, m + 1, n)
    quoted = np.arange(m)[None, :] < sizes[:, None]
    mid = rng.uniform(0.2, 1.5, (n, m))
    half = rng.uniform(0.0, 0.1, (n, m)) * 10.0 ** rng.uniform(-3, 0, (n, m))
    bid, ask = mid - half, mid + half
    bid[rng.random((n, m)) < 0.2] = np.nan
    ask[rng.random((n, m)) < 0.1] = np.nan
    for x in (mid, bid, ask):
        x[~quoted] = np.nan
    model = mid + rng.normal(0.0, 0.05, (n, m))
    model[rng.random((n, m)) < 0.02] = np.nan
    model[rng.random((n, m)) < 0.01] = np.inf
    return model, mid, bid, ask, quoted


@needs_native
def test_random_chains_agree_bit_for_bit() -> None:
    rng = np.random.default_rng(41)
    for _ in range(400):
        rows = _chain(rng, int(rng.integers(1, 30)), int(rng.integers(1, 300)))
        np.testing.assert_array_equal(np.array(spread.spread_sums(*rows)),
                                      np.array(spread.spread_sums_numpy(*rows)))


@needs_native
def test_edge_rows_agree() -> None:
    """No quote; quotes without a two-sided band; a model exactly at the mid, the bid
    and the ask; a crossed band; spreads under the floor."""
    nan = np.nan
    model = np.array([[nan, nan, nan], [0.5, 0.6, 0.4], [0.5, 0.45, 0.55], [0.5, 0.5, 0.5]])
    mid = np.array([[nan, nan, nan], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    bid = np.array([[nan, nan, nan], [nan, nan, 0.45], [0.45, 0.45, 0.45],
                    [0.49999, 0.52, 0.5]])
    ask = np.array([[nan, nan, nan], [0.55, nan, nan], [0.55, 0.55, 0.55],
                    [0.50001, 0.48, 0.5]])
    quoted = np.array([[False] * 3, [True] * 3, [True, True, True], [True, True, False]])
    got = spread.spread_sums(model, mid, bid, ask, quoted)
    np.testing.assert_array_equal(np.array(got),
                                  np.array(spread.spread_sums_numpy(model, mid, bid, ask, quoted)))
    assert got[0][3] == 0
    assert np.isnan(got[1][0])  # no two-sided quote: no half spread
    assert got[2][2] == 3  # at the bid, the mid and the ask: all inside


def test_the_fallback_is_numpys(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _chain(np.random.default_rng(3), 6, 40)
    want = spread.spread_sums_numpy(*rows)
    monkeypatch.setattr(spread, "_NATIVE", None)
    np.testing.assert_array_equal(np.array(spread.spread_sums(*rows)), np.array(want))
    stats = spread.spread_stats_rows(*rows)
    for s, (half, sq, inside, n) in zip(stats, want, strict=True):
        if n:
            assert s.half_spread_vol == half or (np.isnan(half) and np.isnan(s.half_spread_vol))
            assert s.within_spread_fraction == inside / n
            assert s.rmse_half_spreads == np.sqrt(sq / n) or np.isnan(sq)
        else:
            assert s == spread.SpreadStats()


def test_rows_of_other_shapes_take_numpy() -> None:
    """A broadcast model row (not the rows' shape) is numpy's to take."""
    model, mid, bid, ask, quoted = _chain(np.random.default_rng(5), 4, 12)
    got = spread.spread_sums(model[:1], mid, bid, ask, quoted)
    np.testing.assert_array_equal(np.array(got), np.array(
        spread.spread_sums_numpy(np.broadcast_to(model[:1], mid.shape), mid, bid, ask, quoted)))


@needs_native
def test_the_kernel_refuses_bad_buffers() -> None:
    kernel = spread._NATIVE
    assert kernel is not None
    x, q, out = np.zeros((2, 3)), np.ones((2, 3), bool), np.empty((2, 4))
    with pytest.raises(ValueError, match="width"):
        kernel(x, x, x, x, q, out, 0)
    with pytest.raises(ValueError, match="width"):
        kernel(x, x, x, x, q, out, 4)  # 6 cells are no rows of 4
    with pytest.raises(ValueError, match="mid_iv"):
        kernel(x, np.zeros(5), x, x, q, out, 3)
    with pytest.raises(ValueError, match="quoted"):
        kernel(x, x, x, x, np.ones((2, 3)), out, 3)  # float64, not bool
    with pytest.raises(ValueError, match="out"):
        kernel(x, x, x, x, q, np.empty((2, 3)), 3)
    with pytest.raises(TypeError):
        kernel(x, x, x, x, q, out)
