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
    atm_at_tenor,
    atm_at_tenors,
    classify_regime,
    estimate_dynamics,
    fixed_strike_dvol,
    ols,
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


# -- regressions ---------------------------------------------------------------------------------


def test_ols_recovers_a_known_line_with_its_standard_error() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=2000)
    y = 0.7 - 1.3 * x + rng.normal(0.0, 0.5, x.size)
    fit = ols(x, y, trim=0)
    assert fit.slope == pytest.approx(-1.3, abs=4 * 0.5 / math.sqrt(x.size))
    assert fit.intercept == pytest.approx(0.7, abs=0.05)
    assert fit.stderr == pytest.approx(0.5 / math.sqrt(x.size), rel=0.1)
    assert fit.r2 == pytest.approx(1.3**2 / (1.3**2 + 0.25), abs=0.03)
    assert fit.n == x.size


def test_ols_drops_gross_outliers_but_keeps_everything_else() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=500)
    x[:5] = 3.0
    y = 2.0 * x + rng.normal(0.0, 0.1, x.size)
    y[:5] += 5.0  # five failed fits, where they hurt most
    assert ols(x, y, trim=0).slope > 2.1
    robust = ols(x, y)
    assert robust.slope == pytest.approx(2.0, abs=0.03)
    assert robust.n == 495


def test_ols_needs_three_points_and_spread_in_x() -> None:
    assert math.isnan(ols([1.0, 2.0], [1.0, 2.0]).slope)
    assert math.isnan(ols([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]).slope)
    assert math.isnan(ols([1.0, np.nan, 2.0], [1.0, 2.0, np.nan]).slope)


# -- SSR, beta and fixed-strike beta -------------------------------------------------------------


def _pairs(ssr: float, skew: np.ndarray, noise: float, seed: int
           ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    dlnf = rng.choice([-1.0, 1.0], skew.size) * rng.uniform(0.002, 0.006, skew.size)
    return dlnf, ssr * skew * dlnf + rng.normal(0.0, noise, skew.size)


@pytest.mark.parametrize("ssr", [0.0, 1.0, 2.0, 1.4])
def test_ssr_and_betas_on_pairs_from_known_dynamics(ssr: float) -> None:
    skew = np.full(800, -0.35)
    dlnf, dvol = _pairs(ssr, skew, 0.0005, seed=int(10 * ssr))
    est = estimate_dynamics(dlnf, dvol, skew, min_skew=0.03)
    assert est.ssr.slope == pytest.approx(ssr, abs=0.1)
    assert est.ssr_low < ssr < est.ssr_high
    assert est.beta.slope == pytest.approx(ssr * -0.35, abs=0.04)
    assert est.fixed_strike_beta == pytest.approx((ssr - 1.0) * -0.35, abs=0.04)


def test_a_skew_through_zero_leaves_the_ssr_right_and_the_fixed_strike_beta_finite() -> None:
    # Crypto skews change sign: SSR = beta / skew blows up near zero, the pairs with a flat
    # skew are left out of its regression, and beta - skew stays finite throughout.
    skew = np.linspace(-0.3, 0.3, 1001)
    dlnf, dvol = _pairs(2.0, skew, 0.0003, seed=5)
    est = estimate_dynamics(dlnf, dvol, skew, min_skew=0.05)
    assert est.ssr.n == int(np.sum(np.abs(skew) >= 0.05))
    assert est.ssr.slope == pytest.approx(2.0, abs=0.15)
    assert math.isfinite(est.fixed_strike_beta)
    # beta - skew averaged with weights dlnf^2: (SSR - 1) * <skew> = 0 here, by symmetry.
    assert est.fixed_strike_beta == pytest.approx(0.0, abs=0.02)


def test_the_ssr_is_never_clipped() -> None:
    # A skew of 0.001 with ATM vol moving like a skew of 0.3: the SSR is 300, and says so.
    rng = np.random.default_rng(6)
    dlnf = rng.uniform(-0.01, 0.01, 200)
    est = estimate_dynamics(dlnf, 0.3 * dlnf, np.full(200, 0.001), min_skew=0.0)
    assert est.ssr.slope == pytest.approx(300.0, rel=1e-6)
    assert est.fixed_strike_beta == pytest.approx(0.3 - 0.001, rel=1e-9)


def test_flat_skews_only_give_no_ssr_but_still_a_beta() -> None:
    dlnf, dvol = _pairs(1.0, np.full(100, 0.01), 0.0001, seed=7)
    est = estimate_dynamics(dlnf, dvol, np.full(100, 0.01), min_skew=0.03)
    assert est.ssr.n == 0
    assert math.isnan(est.ssr.slope)
    assert math.isnan(est.ssr_low)
    assert math.isfinite(est.beta.slope)


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
