"""core.dynamics on inputs whose answers are known in closed form.

References: the skew stickiness ratio and its three benchmark values (1 sticky strike,
0 sticky moneyness, 2 local vol at short maturities) are Bergomi's, "Smile dynamics
IV", Risk, Dec 2009, and *Stochastic Volatility Modeling*, CRC 2016, ch. 2; the
smile-adjusted delta ``delta_BS + vega * d sigma / d S`` is the minimum-variance
delta's smile term of Hull & White, "Optimal delta hedging for options", J. Banking
& Finance 82 (2017), and Bergomi 2016, sec. 2.4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamer.core import black76
from streamer.core.dynamics import (
    FixedStrikeSums,
    atm_at_tenor,
    atm_at_tenors,
    classify_regime,
    fixed_strike_dvol,
    fixed_strike_fit,
    smile_adjusted_delta,
    smile_deltas,
)

# -- the ATM point at a fixed tenor --------------------------------------------------------------


def test_tenor_on_a_linear_total_variance_term_structure_is_exact() -> None:
    # w(t) = 0.04 + 0.25 t is linear: interpolating w in t must give it back exactly.
    t = np.array([7, 14, 28, 63]) / 365
    vol = np.sqrt((0.04 + 0.25 * t) / t)
    dw_dk = -0.02 - 0.1 * t  # also linear in t
    skew = dw_dk / (2 * vol * t)
    fwd = 100 * np.exp(0.05 * t)
    point = atm_at_tenor(t, vol, skew, fwd, 30 / 365)
    assert point is not None
    tau = 30 / 365
    sigma = math.sqrt((0.04 + 0.25 * tau) / tau)
    assert point.vol == pytest.approx(sigma, rel=1e-12)
    assert point.skew == pytest.approx((-0.02 - 0.1 * tau) / (2 * sigma * tau), rel=1e-12)
    assert point.log_forward == pytest.approx(math.log(100) + 0.05 * tau, rel=1e-12)


def test_tenor_is_never_extrapolated_and_bad_rows_are_ignored() -> None:
    t = np.array([7, 14, np.nan, 60]) / 365
    vol = np.array([0.6, 0.55, 0.5, np.nan])  # the 60-day row has no vol
    skew = np.array([-0.3, -0.3, -0.3, -0.3])
    fwd = np.full(4, 100.0)
    assert atm_at_tenor(t, vol, skew, fwd, 30 / 365) is None  # only 7 and 14 days usable
    assert atm_at_tenor(t, vol, skew, fwd, 3 / 365) is None
    on_node = atm_at_tenor(t, vol, skew, fwd, 14 / 365)
    assert on_node is not None
    assert on_node.vol == pytest.approx(0.55)
    vols, _, _ = atm_at_tenors([], [], [], [], [0.1, 0.2])
    assert np.isnan(vols).all()


def test_tenor_interpolation_does_not_depend_on_the_order_of_the_slices() -> None:
    t = np.array([63, 7, 28, 14]) / 365
    vol = np.array([0.5, 0.7, 0.55, 0.6])
    skew = np.array([-0.1, -0.5, -0.3, -0.4])
    fwd = np.array([101.0, 100.1, 100.5, 100.2])
    a = atm_at_tenor(t, vol, skew, fwd, 30 / 365)
    order = np.argsort(t)
    b = atm_at_tenor(t[order], vol[order], skew[order], fwd[order], 30 / 365)
    assert a == b


# -- the fixed-strike regression ----------------------------------------------------------------


def _requotes(ssr: float, slope: np.ndarray, sd: np.ndarray, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """x = slope * dlnf and the fixed-strike vol change of a smile moving with ``ssr``."""
    rng = np.random.default_rng(seed)
    dlnf = rng.normal(0.0, 0.0004, slope.size)
    x = slope * dlnf
    return x, (ssr - 1.0) * x + rng.normal(0.0, sd)


@pytest.mark.parametrize("ssr", [0.0, 1.0, 2.0, 1.4])
def test_the_ssr_of_requotes_from_known_dynamics_with_an_honest_interval(ssr: float) -> None:
    rng = np.random.default_rng(int(10 * ssr))
    slope = rng.uniform(-1.5, -0.1, 20_000)  # short expiries steep, long ones flat
    sd = rng.uniform(0.0002, 0.002, slope.size)  # tick-rounded mids: the noise varies
    x, y = _requotes(ssr, slope, sd, seed=int(10 * ssr) + 1)
    fit = fixed_strike_fit(FixedStrikeSums().plus(x, y, sd**2))
    # WLS with the true variances: se = 1 / sqrt(sum x^2 / sd^2), the interval 1.96 se.
    se = 1.0 / math.sqrt(float(np.sum(x * x / sd**2)))
    assert fit.ssr == pytest.approx(ssr, abs=4 * se)
    assert (fit.ssr_high - fit.ssr_low) / 2 == pytest.approx(1.96 * se, rel=0.05)
    assert fit.n == x.size


def test_weights_by_noise_beat_equal_weights() -> None:
    # Half the requotes 10x noisier: weighted, they hardly matter; unweighted they dominate.
    slope = np.full(4000, -0.5)
    sd = np.where(np.arange(4000) % 2 == 0, 0.0002, 0.002)
    spread = []
    for variance in (sd**2, np.ones_like(sd)):
        ssrs = [fixed_strike_fit(FixedStrikeSums().plus(*_requotes(1.0, slope, sd, seed),
                                                        variance)).ssr for seed in range(30)]
        spread.append(float(np.std(ssrs)))
    weighted, equal = spread
    assert weighted < 0.6 * equal


def test_sums_added_in_pieces_and_decayed_are_one_weighted_fit() -> None:
    slope = np.full(600, -0.4)
    sd = np.full(600, 0.001)
    x, y = _requotes(2.0, slope, sd, seed=9)
    whole = FixedStrikeSums().plus(x, y, sd**2)
    pieces = FixedStrikeSums().plus(x[:300], y[:300], sd[:300] ** 2).decayed(0.5).plus(
        x[300:], y[300:], sd[300:] ** 2)
    assert pieces.taken == whole.taken == 600
    assert pieces.n == pytest.approx(450.0)
    # Decay by 1/2 is the same as doubling the older observations' variances.
    halved = np.concatenate([2 * sd[:300] ** 2, sd[300:] ** 2])
    assert pieces.sxy / pieces.sxx == pytest.approx(
        float(np.sum(x * y / halved) / np.sum(x * x / halved)), rel=1e-12)


def test_the_fit_needs_three_observations_and_spread_in_x() -> None:
    assert math.isnan(fixed_strike_fit(FixedStrikeSums().plus([0.1, 0.2], [0.0, 0.1],
                                                               [1.0, 1.0])).ssr)
    assert math.isnan(fixed_strike_fit(FixedStrikeSums().plus([0.0] * 5, [0.1] * 5,
                                                               [1.0] * 5)).ssr)
    assert math.isnan(fixed_strike_fit(FixedStrikeSums()).ssr_low)


def test_the_ssr_is_never_clipped() -> None:
    # A fixed strike's vol moving 300x its smile slope times the move: SSR 301, and says so.
    x = np.linspace(-0.001, 0.001, 200)
    fit = fixed_strike_fit(FixedStrikeSums().plus(x, 300.0 * x, np.ones_like(x)))
    assert fit.ssr == pytest.approx(301.0, rel=1e-9)


@pytest.mark.parametrize(("ssr", "low", "high", "n", "expected"), [
    (0.05, -0.2, 0.3, 100, "sticky_moneyness"),
    (0.97, 0.8, 1.14, 100, "sticky_strike"),
    (2.1, 1.8, 2.4, 100, "local_vol"),
    (1.0, 0.0, 2.0, 100, "unknown"),      # too imprecise
    (1.0, 0.9, 1.1, 10, "unknown"),       # too few observations
    (3.2, 3.0, 3.4, 100, "unknown"),      # no regime near
    (-0.6, -0.8, -0.4, 100, "unknown"),
    (float("nan"), float("nan"), float("nan"), 100, "unknown"),
])
def test_regime_is_the_nearest_one_only_when_the_estimate_is_precise(
        ssr: float, low: float, high: float, n: int, expected: str) -> None:
    assert classify_regime(ssr, low, high, n, min_obs=30, max_halfwidth=0.5) == expected


# -- smile-adjusted deltas -----------------------------------------------------------------------

F0, T = 95_000.0, 30 / 365
STRIKES = np.array([70_000.0, 85_000.0, 95_000.0, 105_000.0, 130_000.0])


def _smile(k: np.ndarray) -> np.ndarray:
    result: np.ndarray = 0.55 - 0.35 * k + 0.6 * k * k
    return result


def _price(forward: float, ssr: float, is_call: bool) -> np.ndarray:
    """Black-76 at the vol of a smile that translates with ``ssr * ln(F/F0)``."""
    k = np.log(STRIKES / forward) + ssr * math.log(forward / F0)
    return black76.price(forward, STRIKES, T, _smile(k), is_call)


@pytest.mark.parametrize("is_call", [True, False])
@pytest.mark.parametrize("ssr", [0.0, 1.0, 2.0, -0.5])
def test_smile_adjusted_delta_is_the_derivative_of_the_price_in_a_moving_smile(
        ssr: float, is_call: bool) -> None:
    h = F0 * 1e-5
    numeric = (_price(F0 + h, ssr, is_call) - _price(F0 - h, ssr, is_call)) / (2 * h)
    k = np.log(STRIKES / F0)
    slope = -0.35 + 1.2 * k
    deltas = smile_deltas(F0, STRIKES, T, _smile(k), slope, is_call, ssr)
    np.testing.assert_allclose(deltas.smile_adjusted, numeric, atol=1e-7)
    named = {0.0: deltas.sticky_moneyness, 1.0: deltas.sticky_strike}
    if ssr in named:
        np.testing.assert_allclose(named[ssr], numeric, atol=1e-7)
    np.testing.assert_array_equal(deltas.sticky_strike, deltas.black76)


def test_smile_deltas_keep_put_call_parity_and_order_with_a_put_skew() -> None:
    k = np.log(STRIKES / F0)
    vol, slope = _smile(k), -0.35 + 1.2 * k
    calls = smile_deltas(F0, STRIKES, T, vol, slope, True, 2.0)
    puts = smile_deltas(F0, STRIKES, T, vol, slope, False, 2.0)
    for c, p in zip(calls, puts, strict=True):
        np.testing.assert_allclose(c - p, 1.0, atol=1e-12)  # the vega term is the same
    atm = 2  # negative slope at the money: sticky moneyness adds, local vol subtracts delta
    assert calls.sticky_moneyness[atm] > calls.black76[atm] > calls.smile_adjusted[atm]


def test_fixed_strike_beta_gives_the_same_delta_as_the_ssr_at_the_money() -> None:
    vol, slope, ssr = 0.55, -0.35, 1.7
    via_ssr = smile_adjusted_delta(F0, F0, T, vol, True, fixed_strike_dvol(slope, ssr))
    via_beta = smile_adjusted_delta(F0, F0, T, vol, True, (ssr - 1) * slope)
    assert float(via_ssr) == pytest.approx(float(via_beta), rel=1e-14)
    vega = float(black76.vega(F0, F0, T, vol))
    assert float(via_ssr) == pytest.approx(
        float(black76.delta(F0, F0, T, vol, True)) + vega * 0.7 * -0.35 / F0, rel=1e-12)


def test_sums_of_pools_are_the_sums_of_their_observations() -> None:
    """ObservationTerms' pool sums, combined, give ``plus`` of the pool's observations
    bit for bit: the products once per batch, the same dots per pool."""
    from streamer.core.dynamics import ObservationTerms

    rng = np.random.default_rng(7)
    x, y, var = rng.normal(size=40), rng.normal(size=40), rng.uniform(0.1, 2.0, 40)
    pool = rng.random(40) < 0.5
    start = FixedStrikeSums(1.0, 0.5, 2.0, 3.5, 4)
    got = start.combined(ObservationTerms.of(x, y, var).sums(pool))
    w = 1.0 / var[pool]
    xa, ya = x[pool], y[pool]
    want = FixedStrikeSums(1.0 + float(w @ (xa * xa)), 0.5 + float(w @ (xa * ya)),
                           2.0 + float(w @ (ya * ya)), 3.5 + xa.size, 4 + xa.size)
    assert got == want == start.plus(xa, ya, var[pool])


@pytest.mark.parametrize("seed", range(6))
def test_atm_vol_skew_kernel_equals_atm_at_tenors(seed: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The C kernel (and the fallback, forced) give atm_at_tenors' vol and skew bit for
    bit: unsorted and unusable rows, tenors before, on, between and after the expiries,
    a tie (numpy's own search then), one usable expiry, none."""
    from streamer.core import dynamics
    from streamer.core.dynamics import atm_vol_skew_at_tenors

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    t = rng.uniform(0.001, 2.0, n)
    vol, skew, fwd = rng.uniform(0.1, 1.5, n), rng.normal(0, 0.5, n), rng.uniform(50, 150, n)
    if seed == 1:
        vol[0], fwd[-1], t[n // 2] = np.nan, -1.0, np.inf
    if seed == 2 and n > 1:
        t[1] = t[0]  # a tie
    if seed == 3:
        vol[:] = np.nan  # nothing usable
    tenors = np.concatenate([[t.min(), t.max(), 0.0, -1.0, np.nan, 5.0],
                             rng.uniform(0.0, 2.5, 10), t[:3]])
    want_vol, want_skew, _ = atm_at_tenors(t, vol, skew, fwd, tenors)
    for native in (True, False):
        if not native:
            monkeypatch.setattr(dynamics, "_NATIVE", None)
        got_vol, got_skew = atm_vol_skew_at_tenors(t, vol, skew, fwd, tenors)
        np.testing.assert_array_equal(got_vol, want_vol)
        np.testing.assert_array_equal(got_skew, want_skew)
