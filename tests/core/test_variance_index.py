"""The Cboe VIX method on prices whose model-free variance is known.

References: Cboe, "VIX White Paper" (2019), steps 1-3 (forward at min |C - P|, K0 the
strike at or below F, OTM mids with the zero-bid rule, dK weights, the (F/K0 - 1)^2
correction, 30-day interpolation in total variance); Deribit, "DVOL" methodology (r = 0,
the two expiries bracketing 30 days). The continuous limit is Carr & Madan's
model-free variance 2/T * int Q(K)/K^2 dK = E[-2 ln(S_T / F)] / T, which under a flat
Black-76 smile is sigma^2 exactly; for a skewed smile it is computed here by scipy's
adaptive quadrature on the same prices.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from streamer.core import black76
from streamer.core.models import svi
from streamer.core.variance_index import (
    ExpiryVariance,
    _wing_length,
    bracketing,
    expiry_variance,
    interpolated_vol,
)

F = 100_000.0


def _chain(vol_of_k, t: float, strikes: np.ndarray) -> dict[str, np.ndarray]:
    vol = vol_of_k(np.log(strikes / F))
    calls = black76.price(F, strikes, t, vol, True)
    puts = black76.price(F, strikes, t, vol, False)
    return {"strike": strikes, "call_mid": calls, "put_mid": puts,
            "call_bid": calls * 0.99, "put_bid": puts * 0.99}


def test_flat_smile_gives_its_vol() -> None:
    t, sigma = 30 / 365, 0.6
    strikes = np.arange(20_000.0, 400_001.0, 500.0)
    chain = _chain(lambda k: np.full_like(k, sigma), t, strikes)
    got = expiry_variance(**chain, t=t)
    assert got is not None
    assert np.sqrt(got.variance) == pytest.approx(sigma, rel=2e-3)
    assert got.forward == pytest.approx(F, rel=1e-9)
    assert got.k0 == 100_000.0


def test_skewed_smile_matches_the_continuous_integral() -> None:
    t = 45 / 365
    p = svi.SVIParams(a=0.02, b=0.08, rho=-0.3, m=0.02, sigma=0.15)

    def vol_of_k(k: np.ndarray) -> np.ndarray:
        return np.sqrt(svi.total_variance(k, p) / t)

    def otm(strike: float) -> float:
        v = float(vol_of_k(np.array([np.log(strike / F)]))[0])
        return float(black76.price(F, strike, t, v, strike >= F)) / strike**2

    exact = 2 / t * (quad(otm, 1_000.0, F, limit=400)[0] + quad(otm, F, 2_000_000.0, limit=400)[0])
    strikes = np.arange(10_000.0, 600_001.0, 1_000.0)
    got = expiry_variance(**_chain(vol_of_k, t, strikes), t=t)
    assert got is not None
    assert got.variance == pytest.approx(exact, rel=0.01)


def test_two_consecutive_zero_bids_end_the_wing() -> None:
    t = 30 / 365
    strikes = np.arange(60_000.0, 140_001.0, 5_000.0)
    chain = _chain(lambda k: np.full_like(k, 0.5), t, strikes)
    full = expiry_variance(**chain, t=t)
    # zero bids at 75k and 70k: the puts at 65k and 60k must not count
    chain["put_bid"][[2, 3]] = 0.0
    cut = expiry_variance(**chain, t=t)
    # a single zero bid (at 75k only) is skipped, the wing goes on
    chain2 = _chain(lambda k: np.full_like(k, 0.5), t, strikes)
    chain2["put_bid"][3] = 0.0
    skipped = expiry_variance(**chain2, t=t)
    assert full is not None
    assert cut is not None
    assert skipped is not None
    assert cut.n_strikes == full.n_strikes - 4
    assert skipped.n_strikes == full.n_strikes - 1
    # fewer wing strikes: less variance (the skipped strike widens its neighbours dK)
    assert cut.variance < min(full.variance, skipped.variance)


def test_forward_from_parity_and_k0_below_it() -> None:
    t = 30 / 365
    strikes = np.arange(80_000.0, 120_001.0, 2_500.0)
    fwd = 101_200.0
    vol = 0.55
    calls = black76.price(fwd, strikes, t, vol, True)
    puts = black76.price(fwd, strikes, t, vol, False)
    got = expiry_variance(strikes, calls, puts, calls, puts, t)
    assert got is not None
    assert got.forward == pytest.approx(fwd, rel=1e-12)
    assert got.k0 == 100_000.0


def test_no_pair_or_no_time_is_none() -> None:
    s = np.array([90.0, 100.0, 110.0])
    nan = np.full(3, np.nan)
    assert expiry_variance(s, nan, np.ones(3), nan, np.ones(3), 0.1) is None
    assert expiry_variance(s, np.ones(3), np.ones(3), np.ones(3), np.ones(3), 0.0) is None


def test_thirty_day_interpolation_in_total_variance() -> None:
    near = ExpiryVariance(t=20 / 365, variance=0.25, forward=F, k0=F, n_strikes=10)
    nxt = ExpiryVariance(t=40 / 365, variance=0.36, forward=F, k0=F, n_strikes=10)
    tenor = 30 / 365
    w = 0.5 * (near.t * 0.25 + nxt.t * 0.36)
    assert interpolated_vol(near, nxt, tenor) == pytest.approx(np.sqrt(w / tenor), rel=1e-14)
    flat = ExpiryVariance(t=40 / 365, variance=0.25, forward=F, k0=F, n_strikes=10)
    assert interpolated_vol(near, flat, tenor) == pytest.approx(0.5, rel=1e-14)


def test_bracketing() -> None:
    ts = [0.01, 0.05, 0.1, 0.3]
    assert bracketing(ts, 30 / 365) == (1, 2)
    assert bracketing(ts, 0.05) == (1, 2)
    assert bracketing(ts, 0.3) == (3, 3)
    assert bracketing(ts, 0.5) is None
    assert bracketing(ts, 0.001) is None


def _walk_by_hand(bids: list[float]) -> list[bool]:
    """The white paper's rule read literally, one strike at a time."""
    used, zeros = [], 0
    for bid in bids:
        if zeros == 2:
            used.append(False)
        elif bid > 0:
            zeros = 0
            used.append(True)
        else:
            zeros += 1
            used.append(False)
    return used


def _walk(bids: np.ndarray) -> np.ndarray:
    """Which options of an outward-ordered run are used (the reference's mask): zero bids
    skipped, stop before the second of two (``_wing_length``)."""
    positive = bids > 0
    return positive & (np.arange(bids.size) < _wing_length(positive))


def test_the_wing_walk_is_the_white_papers_rule_strike_by_strike() -> None:
    rng = np.random.default_rng(3)
    for _ in range(500):
        bids = np.where(rng.random(rng.integers(0, 12)) < 0.3, 0.0, 1.0)
        bids[rng.random(bids.size) < 0.1] = np.nan  # no quote: no bid
        assert _walk(bids).tolist() == _walk_by_hand(bids.tolist())


def _indexed_reference(k: np.ndarray, c: np.ndarray, p: np.ndarray, cb: np.ndarray,
                       pb: np.ndarray, t: float) -> ExpiryVariance | None:
    """The implementation by index arrays that the slices replaced (5f9f2d0), the same
    float operations in the same order: the published index must keep its bits."""
    pairs = np.isfinite(c) & np.isfinite(p)
    if not pairs.any() or t <= 0:
        return None
    star = int(np.argmin(np.where(pairs, np.abs(c - p), np.inf)))
    forward = float(k[star] + c[star] - p[star])
    below = np.nonzero(k <= forward)[0]
    if below.size == 0:
        return None
    i0 = int(below[-1])
    q = np.full(k.size, np.nan)
    puts, calls = np.arange(i0 - 1, -1, -1), np.arange(i0 + 1, k.size)
    puts, calls = puts[_walk(pb[puts])], calls[_walk(cb[calls])]
    q[puts], q[calls] = p[puts], c[calls]
    q[i0] = 0.5 * (c[i0] + p[i0]) if pairs[i0] else (p[i0] if np.isfinite(p[i0]) else c[i0])
    used = np.isfinite(q)
    ku, qu = k[used], q[used]
    if ku.size < 2:
        return None
    dk = np.empty(ku.size)
    dk[1:-1] = 0.5 * (ku[2:] - ku[:-2])
    dk[0], dk[-1] = ku[1] - ku[0], ku[-1] - ku[-2]
    k0 = float(k[i0])
    variance = 2.0 / t * float(np.sum(dk / (ku * ku) * qu)) - (forward / k0 - 1.0) ** 2 / t
    return ExpiryVariance(t=t, variance=variance, forward=forward, k0=k0, n_strikes=ku.size)


def test_the_sum_over_slices_is_the_index_arrays_sum_bit_for_bit() -> None:
    # random chains: missing quotes, zero bids (single and double), the forward anywhere,
    # below the first strike included, up to 300 strikes (numpy's pairwise sum blocks)
    rng = np.random.default_rng(11)
    seen = {"none": 0, "some": 0}
    for _ in range(3000):
        n = int(rng.choice([0, 1, 2, 5, 12, 40, 300]))
        k = np.sort(rng.choice(np.arange(1, 4 * n + 2), n, replace=False)) * 1000.0
        c, p = rng.random(n) * 5000, rng.random(n) * 5000
        c[rng.random(n) < 0.15], p[rng.random(n) < 0.15] = np.nan, np.nan
        cb = np.where(rng.random(n) < 0.25, 0.0, 0.9 * c)
        pb = np.where(rng.random(n) < 0.25, 0.0, 0.9 * p)
        t = float(rng.choice([0.0, 1e-3, 0.08, 1.5]))
        want = _indexed_reference(k, c, p, cb, pb, t)
        got = expiry_variance(k, c, p, cb, pb, t)
        assert (got is None) == (want is None)
        seen["none" if got is None else "some"] += 1
        if got is not None and want is not None:
            assert tuple(got) == tuple(want)  # exactly: floats compared bit for bit
    assert min(seen.values()) > 300  # both outcomes exercised
