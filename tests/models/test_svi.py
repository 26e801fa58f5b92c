"""Raw SVI (Gatheral 2004): calibration, warm start and the butterfly check."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.arbitrage import numeric_butterfly_margin
from streamer.core.models import svi
from streamer.core.models.svi import (
    SVIParams,
    calibrate,
    calibrate_chain,
    implied_vol,
    total_variance,
)
from streamer.core.models.svi import butterfly_margin as svi_butterfly_margin

TRUE = SVIParams(a=0.02, b=0.12, rho=-0.35, m=0.03, sigma=0.18)


def test_gatheral_jacquier_butterfly_arbitrage_example_is_detected() -> None:
    # Gatheral & Jacquier (2014), "Arbitrage-free SVI volatility surfaces", Example 3.1
    # (parameters due to Axel Vogt): a raw SVI slice with negative density.
    vogt = SVIParams(a=-0.0410, b=0.1331, rho=0.3060, m=0.3586, sigma=0.4153)
    assert svi_butterfly_margin(vogt, -1.5, 1.5) < 0.0
    assert numeric_butterfly_margin(lambda k: total_variance(k, vogt), -1.5, 1.5) < 0.0
    assert svi_butterfly_margin(TRUE, -1.5, 1.5) > 0.0


def test_cold_calibration_recovers_known_parameters() -> None:
    k = np.linspace(-0.8, 0.6, 45)
    fit = calibrate(k, implied_vol(k, 0.4, TRUE), 0.4)
    assert fit.ok
    assert fit.rmse_vol < 1e-10
    for name, value in TRUE.as_dict().items():
        assert getattr(fit.params, name) == pytest.approx(value, rel=1e-6, abs=1e-8), name


def test_warm_refit_after_a_small_move_reaches_the_cold_rmse() -> None:
    k = np.linspace(-0.8, 0.6, 45)
    rng = np.random.default_rng(5)
    iv = implied_vol(k, 0.4, TRUE)
    moved = iv * 1.01 - 0.004 * k + rng.normal(0, 2e-4, k.size)
    first = calibrate(k, iv, 0.4)
    warm = calibrate(k, moved, 0.4, previous=first.params)
    cold = calibrate(k, moved, 0.4)
    assert warm.warm
    assert warm.rmse_vol <= cold.rmse_vol * 1.01
    assert warm.iterations < cold.iterations or warm.nfev < cold.nfev


@given(a=st.floats(-0.1, 0.5), b=st.floats(0.0, 2.0), rho=st.floats(-0.999, 0.999),
       m=st.floats(-1.0, 1.0), sigma=st.floats(1e-3, 2.0))
def test_total_variance_is_non_negative_when_its_minimum_is(
        a: float, b: float, rho: float, m: float, sigma: float) -> None:
    # Minimum of raw SVI is a + b sigma sqrt(1 - rho^2) (Gatheral 2004).
    floor = a + b * sigma * np.sqrt(1.0 - rho * rho)
    p = SVIParams(a=a, b=b, rho=rho, m=m, sigma=sigma)
    w = total_variance(np.linspace(-5.0, 5.0, 201), p)
    assert np.min(w) >= floor - 1e-12
    if floor >= 0:
        assert np.all(w >= -1e-12)


def test_bad_inputs_fail_as_a_status() -> None:
    assert calibrate([0.0, 0.1], [0.5, 0.5], 0.4).status == "failed"
    assert calibrate(np.linspace(-0.5, 0.5, 9), np.full(9, 0.5), -1.0).status == "failed"


def _chain() -> tuple[list[np.ndarray], list[np.ndarray], list[float]]:
    rng = np.random.default_rng(11)
    ts = [0.02, 0.1, 0.4, 1.0]
    ks = [np.linspace(-0.6, 0.5, n) * np.sqrt(t / 0.4) for n, t in zip((20, 35, 45, 28), ts,
                                                                       strict=True)]
    params = [SVIParams(a=0.04 * t, b=0.1 * np.sqrt(t), rho=-0.3, m=0.02, sigma=0.2 * np.sqrt(t))
              for t in ts]
    ivs = [implied_vol(k, t, p) + rng.normal(0, 1e-4, k.size)
           for k, t, p in zip(ks, ts, params, strict=True)]
    return ks, ivs, ts


def test_chain_fit_equals_fitting_each_slice_alone() -> None:
    ks, ivs, ts = _chain()
    weights = [np.linspace(1.0, 2.0, k.size) for k in ks]
    first = calibrate_chain(ks, ivs, ts, weights)
    # Warm for two slices, cold for one, and a slice with a bad time that must fail alone.
    previous = [first[0].params, None, first[2].params, None]
    moved = [iv + 0.003 for iv in ivs]
    chain = calibrate_chain(ks, moved, [*ts[:3], -1.0], weights, previous)
    assert [f.status for f in chain][3] == "failed"
    assert [f.warm for f in chain] == [True, False, True, False]
    for i in range(3):
        alone = calibrate(ks[i], moved[i], ts[i], weights[i], previous[i])
        assert chain[i].ok
        assert alone.ok
        assert chain[i].rmse_vol == pytest.approx(alone.rmse_vol, rel=1e-6)
        for name, value in alone.params.as_dict().items():
            assert getattr(chain[i].params, name) == pytest.approx(value, rel=1e-5, abs=1e-7)


def test_chain_of_cold_fits_matches_the_per_slice_cold_fits() -> None:
    ks, ivs, ts = _chain()
    chain = calibrate_chain(ks, ivs, ts)
    for k, iv, t, fit in zip(ks, ivs, ts, chain, strict=True):
        assert fit.status == "converged"
        assert fit.rmse_vol == pytest.approx(calibrate(k, iv, t).rmse_vol, rel=1e-6)
        assert fit.rmse_vol < 2e-4


def test_a_fit_cut_off_at_max_iter_says_so() -> None:
    k = np.linspace(-0.8, 0.6, 45)
    fit = calibrate(k, implied_vol(k, 0.4, TRUE) + 0.01 * np.sin(9 * k), 0.4, max_iter=2)
    assert fit.ok
    assert fit.status == "max_iter"
    assert "max_iter=2" in fit.message
    full = calibrate(k, implied_vol(k, 0.4, TRUE) + 0.01 * np.sin(9 * k), 0.4)
    assert full.status == "converged"


def test_band_fit_of_a_smile_inside_its_quotes_recovers_the_smile() -> None:
    # Mids scattered inside bid/ask bands around a known smile: with a small pull the
    # fit lands inside every band and near the smile the mids scatter about.
    k = np.linspace(-0.8, 0.6, 45)
    true_iv = implied_vol(k, 0.4, TRUE)
    rng = np.random.default_rng(3)
    half = np.full(k.size, 0.01)
    mid = true_iv + rng.uniform(-0.6, 0.6, k.size) * half
    fit = calibrate(k, mid, 0.4, 1.0 / half**2, bid_iv=mid - half, ask_iv=mid + half)
    assert fit.status == "converged"
    model = implied_vol(k, 0.4, fit.params)
    assert np.all((model >= mid - half - 1e-9) & (model <= mid + half + 1e-9))
    assert np.sqrt(np.mean((model - true_iv) ** 2)) < 0.3 * half[0]


def test_quotes_the_smile_cannot_reach_leave_their_neighbours_in_their_bands() -> None:
    # A known smile quoted in tight bands, two quotes a few vol points off it. Fitting
    # every band's distance squared (Kaiko, arXiv 2207.02989) bends the smile toward
    # them and out of 10 of the other 29 bands; the Huber tail and the margin of
    # svi.OBJECTIVE cost a far quote in proportion to its miss and aim inside the rest.
    k = np.linspace(-0.5, 0.4, 31)
    t = 0.1
    true_iv = implied_vol(k, t, TRUE)
    half = np.full(k.size, 0.004)
    centre = true_iv + np.random.default_rng(5).uniform(-0.3, 0.3, k.size) * half
    centre[[3, 26]] += [0.03, -0.025]
    bid, ask = centre - half, centre + half
    fit = calibrate(k, centre, t, bid_iv=bid, ask_iv=ask)
    assert fit.status == "converged"
    model = implied_vol(k, t, fit.params)
    others = np.ones(k.size, bool)
    others[[3, 26]] = False
    assert np.all((model >= bid) & (model <= ask) | ~others)
    assert np.max(np.abs(model - true_iv)[others]) < half[0]
    squared = calibrate(k, centre, t, bid_iv=bid, ask_iv=ask, pull=1.0, margin=0.0,
                        tail=np.inf)  # the objective before
    model = implied_vol(k, t, squared.params)
    assert np.count_nonzero(((model < bid) | (model > ask)) & others) > 5


def test_a_parabolic_smile_over_a_narrow_span_converges() -> None:
    # Raw SVI tends to a parabola as sigma, b -> inf: on a parabola over a narrow span
    # the least-squares optimum is at infinity and an unbounded fit never converges.
    k = np.linspace(-0.08, 0.06, 12)
    t = 3.0 / 365
    w = (0.45 + 0.3 * k + 2.5 * k * k) ** 2 * t
    fit = calibrate(k, np.sqrt(w / t), t)
    assert fit.status == "converged"
    assert fit.rmse_vol < 5e-4
    assert fit.params.sigma < 2 * (k.max() - k.min())


def test_a_warm_refit_costs_its_own_refinement_and_one_seed_not_a_cold_search() -> None:
    """A warm slice refines its previous fit and its best seed (two starts), not the
    cold fit's three best seeds."""
    k = np.linspace(-0.8, 0.6, 45)
    rng = np.random.default_rng(8)
    iv = implied_vol(k, 0.4, TRUE)
    first = calibrate(k, iv, 0.4)
    moved = iv * 1.002 + rng.normal(0, 1e-4, k.size)
    cold = calibrate(k, moved, 0.4)
    one_seed = calibrate(k, moved, 0.4, n_starts=1)
    warm = calibrate(k, moved, 0.4, previous=first.params)
    assert warm.status == "converged"
    assert warm.rmse_vol <= cold.rmse_vol * 1.001
    assert warm.nfev <= one_seed.nfev + 8
    assert cold.nfev > warm.nfev


def test_a_warm_start_stuck_in_a_worse_basin_still_ends_where_a_cold_fit_does() -> None:
    """The band objective has more than one basin: from this previous fit the warm
    refinement converges to a local minimum of 2.5 times the cold fit's objective while
    the best seed, unrefined, is worse still (1.08 against 0.67), so refining the seed
    only when it already beat the warm fit kept the worse smile. Refining both does not."""
    rng = np.random.default_rng(311)  # a banded synthetic slice (searched for the case)
    n = 25
    k = np.sort(rng.uniform(-0.3, 0.3, n))
    t = float(rng.uniform(0.01, 0.2))
    true = SVIParams(a=0.04 * t, b=0.1 * np.sqrt(t) * rng.uniform(0.5, 2),
                     rho=rng.uniform(-0.6, 0.3), m=rng.uniform(-0.05, 0.05),
                     sigma=rng.uniform(0.03, 0.2))
    iv = implied_vol(k, t, true) + rng.normal(0, 0.006, n)
    half = rng.uniform(0.003, 0.02, n)
    previous = SVIParams(a=0.04 * t * rng.uniform(0.5, 1.5),
                         b=0.1 * np.sqrt(t) * rng.uniform(0.3, 3), rho=rng.uniform(-0.9, 0.9),
                         m=rng.uniform(-0.3, 0.3), sigma=rng.uniform(0.01, 0.5))
    bid, ask = iv - half, iv + half
    warm = calibrate(k, iv, t, previous=previous, bid_iv=bid, ask_iv=ask)
    cold = calibrate(k, iv, t, bid_iv=bid, ask_iv=ask)
    assert warm.warm
    assert cold.ok
    np.testing.assert_allclose(implied_vol(k, t, warm.params), implied_vol(k, t, cold.params),
                               atol=1e-4)


def test_a_warm_start_in_the_wrong_basin_takes_the_seed() -> None:
    """The previous fit is of another market (a smile skewed the other way around
    another centre): the unrefined quasi-explicit seed beats where the warm start ends,
    so the slice is refined from the seed too and fits as well as a cold start."""
    k = np.linspace(-0.8, 0.6, 45)
    iv = implied_vol(k, 0.4, TRUE)
    stale = SVIParams(a=-0.2, b=0.6, rho=0.95, m=0.9, sigma=0.01)
    warm = calibrate(k, iv, 0.4, previous=stale)
    cold = calibrate(k, iv, 0.4)
    assert warm.ok
    assert warm.rmse_vol <= max(cold.rmse_vol * 1.01, 1e-8)


def test_a_chains_points_are_cleaned_slice_by_slice_in_one_pass() -> None:
    """``_clean_all``'s one pass over a chain: each slice keeps its own usable points and
    gives its own reason, whatever its neighbours hold."""
    k = np.linspace(-0.5, 0.5, 9)
    iv = implied_vol(k, 0.5, TRUE)
    holed = iv.copy()
    holed[[1, 4]] = np.nan
    few = iv.copy()
    few[:6] = np.nan  # 3 points left
    got = svi._clean_all([k, k, k, k[:8], k, [list(k)]], [iv, holed, few, iv, iv, [list(iv)]],
                         [0.5, 0.5, 0.5, 0.5, -1.0, 0.5], [None, np.arange(9.0), None, None,
                                                           None, None],
                         [None, iv - 0.01, None, None, None, None],
                         [None, iv + 0.01, None, None, None, None])
    assert isinstance(got[0], svi._Slice)
    np.testing.assert_array_equal(got[0].w, np.ones(9))
    kept = np.isfinite(holed)
    assert isinstance(got[1], svi._Slice)
    for have, want in zip(got[1], (k[kept], iv[kept], np.arange(9.0)[kept], iv[kept] - 0.01,
                                   iv[kept] + 0.01), strict=True):
        np.testing.assert_array_equal(have, want)
    assert got[2] == "need >= 5 valid points, got 3"
    assert got[3] == "k, iv, weights, bid and ask IVs differ in size ([8, 9])"
    assert got[4] == "bad time to expiry -1.0"
    assert isinstance(got[5], svi._Slice)  # nested lists: flattened
    np.testing.assert_array_equal(got[5].k, k)
