"""Per-slice analytics: curvature, 10-delta RR/BF and the fit against the bid-ask spread."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from streamer.config import CalibrationConfig
from streamer.core.models.registry import model_for
from streamer.core.smile import smile_metrics
from streamer.pipeline.analytics import (
    _finite_difference_errors,
    _half_spreads,
    fit_standard_errors_many,
)
from streamer.pipeline.calibrator import PerExpiry
from streamer.pipeline.snapshot import SliceSnapshot
from streamer.pipeline.spread import SpreadStats, spread_stats

NAN = float("nan")
T = 0.1
TRUE = {"a": 0.004, "b": 0.04, "rho": -0.3, "m": 0.01, "sigma": 0.12}


def test_spread_stats_by_hand() -> None:
    mid = np.array([0.50, 0.50, 0.50, 0.50, 0.50])
    bid = np.array([0.49, 0.48, 0.49, NAN, 0.49])
    ask = np.array([0.52, 0.51, 0.51, 0.52, NAN])
    model = np.array([0.51, 0.47, 0.505, 0.20, 0.90])
    # z: +0.01/0.02, -0.03/0.02 (outside), +0.005/0.01, -0.30/0.50 (no bid: 0), 0 (no ask)
    z = np.array([0.5, -1.5, 0.5, -0.6, 0.0])
    got = spread_stats(model, mid, bid, ask)
    assert got.half_spread_vol == pytest.approx(np.median([0.015, 0.015, 0.01]))
    assert got.rmse_half_spreads == pytest.approx(np.sqrt(np.mean(z * z)))
    assert got.within_spread_fraction == pytest.approx(0.8)


def test_spread_stats_of_a_zero_spread_and_of_no_quotes() -> None:
    one = np.array([0.5])
    got = spread_stats(one + 0.001, one, one, one)  # bid = ask: 0.01 vol point floor
    assert got.rmse_half_spreads == pytest.approx(10.0)
    assert got.within_spread_fraction == 0.0
    empty = np.zeros(0)
    none = spread_stats(empty, empty, empty, empty)
    assert none == SpreadStats()
    assert np.isnan(none.rmse_half_spreads)
    assert np.isnan(none.within_spread_fraction)


def _snapshot(noise_scale: float = 1.0) -> tuple[SliceSnapshot, np.ndarray]:
    """40 quotes on an SVI smile; every fifth quote has a narrow spread and a mid off
    the smile by more than its half-spread, the rest sit well inside theirs."""
    model = model_for("svi")
    k = np.linspace(-0.4, 0.3, 40)
    true_iv = model.vol(k, T, model.from_dict(TRUE))
    outside = np.arange(k.size) % 5 == 0
    sign = np.where(np.arange(k.size) % 2 == 0, 1.0, -1.0)
    noise = noise_scale * sign * np.where(outside, 0.004, 0.001)
    half = np.where(outside, 0.001, 0.006)
    iv = true_iv + noise
    snap = SliceSnapshot(expiry_ts_ms=1, t=T, forward=100.0, forward_method="parity", k=k,
                         iv=iv, bid_iv=iv - half, ask_iv=iv + 1.2 * half,
                         weights=np.ones(k.size))
    return snap, outside


def test_a_fitted_slice_knows_which_quotes_it_misses() -> None:
    snap, outside = _snapshot()
    calibrator = PerExpiry(model_for("svi"), CalibrationConfig())
    fit = calibrator.calibrate(snap, None).fit
    assert fit is not None
    assert fit.status == "cold"
    assert fit.spread.within_spread_fraction == pytest.approx(1.0 - outside.mean())
    assert fit.spread.half_spread_vol == pytest.approx(1.1 * 0.006)
    model_iv = calibrator.model.vol(snap.k, T, fit.params)
    alone = spread_stats(model_iv, snap.iv, snap.bid_iv, snap.ask_iv)
    # the slice's own state comes from one stacked evaluation of every slice: to rounding
    assert msgspec.structs.astuple(fit.spread) == pytest.approx(
        msgspec.structs.astuple(alone), rel=1e-12)
    # Markov: the share of |z| > 1 is at most the mean of z^2.
    assert 1.0 - fit.spread.within_spread_fraction <= fit.spread.rmse_half_spreads ** 2
    metrics = smile_metrics(lambda k: calibrator.model.vol(k, T, fit.params), T)
    # one stacked pass over every slice against this slice alone: equal to rounding (on
    # some CPUs numpy's SIMD paths differ in the last bits, which the finite-difference
    # curvature magnifies to 1e-9)
    assert msgspec.structs.astuple(fit.metrics) == pytest.approx(
        msgspec.structs.astuple(metrics), rel=1e-7)
    assert metrics.atm_curvature > 0
    assert metrics.bf10 > metrics.bf25 > 0
    assert metrics.rr10 < metrics.rr25 < 0  # a put skew, steeper in the wings


def test_a_kept_fit_is_measured_against_the_new_quotes() -> None:
    """A kept slice republishes old parameters; its spread statistics are those of the
    old smile against the quotes of now, not the ones it was fitted to."""
    calibrator = PerExpiry(model_for("svi"), CalibrationConfig())
    snap, _ = _snapshot()
    first = calibrator.calibrate(snap, None).fit
    assert first is not None
    few = slice(10, 13)  # under min_quotes_reduced: the last fit is kept, 5 vp too low
    now = SliceSnapshot(expiry_ts_ms=1, t=T, forward=100.0, forward_method="parity",
                        k=snap.k[few], iv=snap.iv[few] + 0.05, bid_iv=snap.bid_iv[few] + 0.05,
                        ask_iv=snap.ask_iv[few] + 0.05, weights=snap.weights[few])
    kept = calibrator.calibrate(now, first)
    assert kept.fallback_reason == "too_few_quotes"
    assert kept.fit is not None
    assert kept.fit.status == "stale"
    assert kept.fit.spread.within_spread_fraction == 0.0
    assert kept.fit.spread.rmse_half_spreads > 5.0
    assert kept.fit.params == first.params


def test_spread_stats_of_padded_rows_are_each_rows_own() -> None:
    """Slices of different sizes in one call (padding NaN, ``quoted`` False): each row's
    statistics are those of its quotes alone, and a row of no quotes gets the NaN ones."""
    from streamer.pipeline.spread import spread_stats_rows

    rng = np.random.default_rng(4)
    sizes = [7, 3, 0, 11]
    width = max(sizes)
    rows = {name: np.full((len(sizes), width), np.nan) for name in ("model", "mid", "bid", "ask")}
    alone = []
    for i, n in enumerate(sizes):
        mid = rng.uniform(0.4, 0.6, n)
        bid = np.where(rng.random(n) < 0.2, np.nan, mid - rng.uniform(0.001, 0.02, n))
        ask = np.where(rng.random(n) < 0.2, np.nan, mid + rng.uniform(0.001, 0.02, n))
        model = mid + rng.normal(0.0, 0.01, n)
        for name, values in zip(rows, (model, mid, bid, ask), strict=True):
            rows[name][i, :n] = values
        alone.append(spread_stats(model, mid, bid, ask))
    quoted = np.arange(width)[None, :] < np.array(sizes)[:, None]
    together = spread_stats_rows(rows["model"], rows["mid"], rows["bid"], rows["ask"], quoted)
    for got, want in zip(together, alone, strict=True):
        np.testing.assert_allclose(msgspec.structs.astuple(got), msgspec.structs.astuple(want),
                                   rtol=1e-14)
    assert together[2] == SpreadStats()


def test_svi_butterfly_margins_in_one_pass_are_each_slices_own() -> None:
    from streamer.core.models.svi import SVIParams
    from streamer.core.models.svi import butterfly_margin as svi_butterfly_margin
    from streamer.core.models.svi import butterfly_margins as svi_butterfly_margins

    slices = [(SVIParams(a=-0.0410, b=0.1331, rho=0.3060, m=0.3586, sigma=0.4153), -1.5, 1.5),
              (SVIParams(a=0.02, b=0.12, rho=-0.35, m=0.03, sigma=0.18), -0.8, 0.6),
              (SVIParams(a=0.001, b=0.02, rho=-0.1, m=0.0, sigma=0.05), -0.1, 0.12)]
    lo, hi = (np.array([s[i] for s in slices]) for i in (1, 2))
    together = svi_butterfly_margins([p for p, _, _ in slices], lo, hi)
    assert together.tolist() == [svi_butterfly_margin(p, a, b) for p, a, b in slices]
    assert together[0] < 0.0 < together[1]  # Gatheral & Jacquier's arbitrage example first


def test_stacked_svi_error_bars_are_each_slices_own_by_central_differences() -> None:
    """Slices of different lengths in one padded analytic pass: each slice's error bars
    equal those of central differences on that slice alone (some quotes without a bid)."""
    model = model_for("svi")
    rng = np.random.default_rng(4)
    params, ts, ks, ivs, bids, asks = [], [], [], [], [], []
    for i, n in enumerate((7, 23, 41)):
        t = 0.05 * (i + 1)
        p = model.from_dict({**TRUE, "a": TRUE["a"] * (i + 1)})
        k = np.sort(rng.uniform(-0.4, 0.3, n))
        iv = model.vol(k, t, p)
        half = rng.uniform(0.002, 0.02, n)
        bid = np.where(rng.random(n) < 0.2, NAN, iv - half)
        params.append(p), ts.append(t), ks.append(k), ivs.append(iv)
        bids.append(bid), asks.append(iv + half)
    stacked = fit_standard_errors_many(model, params, ts, ks, ivs, bids, asks)
    names = list(model.to_dict(params[0]))
    for got, p, t, k, iv, bid, ask in zip(stacked, params, ts, ks, ivs, bids, asks,
                                          strict=True):
        atm, se = _finite_difference_errors(model, names, p, t, k, _half_spreads(iv, bid, ask))
        assert got[0] == pytest.approx(atm, rel=1e-4)
        assert got[1] == pytest.approx(se, rel=1e-4)
