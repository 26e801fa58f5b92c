"""Heston prices against Fang & Oosterlee (2008) and QuantLib; whole-surface calibration."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.core.models.heston import (
    HestonParams,
    calibrate,
    call_price,
    implied_vols,
    put_price,
)
from streamer.core.models.heston_quadrature import SurfacePricer

ql = pytest.importorskip("QuantLib")

FO_2008 = HestonParams(v0=0.0175, kappa=1.5768, theta=0.0398, sigma=0.5751, rho=-0.5711)
CRYPTO = HestonParams(v0=0.36, kappa=2.0, theta=0.49, sigma=1.5, rho=-0.2)


def test_fang_oosterlee_reference_value() -> None:
    # Fang & Oosterlee (2008), "A novel pricing method for European options based on
    # Fourier-cosine series expansions", section 5.4: S0 = K = 100, T = 1, r = q = 0,
    # reference price 5.785155450.
    assert call_price(100.0, 100.0, 1.0, FO_2008) == pytest.approx(5.785155450, rel=1e-8)


def _quantlib_call(forward: float, strike: float, days: int, p: HestonParams) -> float:
    today = ql.Date(2, 1, 2025)
    ql.Settings.instance().evaluationDate = today
    curve = ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, ql.Actual365Fixed()))
    process = ql.HestonProcess(curve, curve, ql.QuoteHandle(ql.SimpleQuote(forward)),
                               p.v0, p.kappa, p.theta, p.sigma, p.rho)
    engine = ql.AnalyticHestonEngine(ql.HestonModel(process), 1e-14, 100_000)
    option = ql.EuropeanOption(ql.PlainVanillaPayoff(ql.Option.Call, strike),
                               ql.EuropeanExercise(today + days))
    option.setPricingEngine(engine)
    return float(option.NPV())


@pytest.mark.parametrize("params", [
    FO_2008, CRYPTO,
    HestonParams(v0=0.8, kappa=5.0, theta=0.5, sigma=3.0, rho=0.3),
    HestonParams(v0=0.04, kappa=0.5, theta=0.09, sigma=0.3, rho=-0.9),
])
def test_prices_equal_quantlib_analytic_heston_engine(params: HestonParams) -> None:
    # Reference: QuantLib's AnalyticHestonEngine (adaptive Gauss-Lobatto, rel. tol 1e-14).
    strikes = np.array([50.0, 70.0, 85.0, 100.0, 115.0, 140.0, 200.0])
    for days in (7, 30, 91, 365, 730):
        ours = call_price(100.0, strikes, days / 365.0, params)
        ref = np.array([_quantlib_call(100.0, k, days, params) for k in strikes])
        meaningful = ref > 1e-8 * 100.0  # below that both are rounding noise
        np.testing.assert_allclose(ours[meaningful], ref[meaningful], rtol=1e-8)
        assert np.all(np.abs(ours[~meaningful] - ref[~meaningful]) < 1e-6)


def test_put_call_parity_and_bounds() -> None:
    strikes = np.linspace(60.0, 160.0, 11)
    calls = call_price(100.0, strikes, 0.5, CRYPTO)
    puts = put_price(100.0, strikes, 0.5, CRYPTO)
    np.testing.assert_allclose(calls - puts, 100.0 - strikes, atol=1e-10)
    assert np.all(calls >= np.maximum(100.0 - strikes, 0.0) - 1e-10)
    assert np.all(calls <= 100.0)


def _surface(params: HestonParams) -> tuple[list[np.ndarray], list[np.ndarray], list[float]]:
    ts = list(np.linspace(0.05, 1.5, 10))
    ks = [np.linspace(-0.5, 0.5, 20) * np.sqrt(t / 0.5) ** 0.5 for t in ts]
    ivs = [implied_vols(k, t, params) for k, t in zip(ks, ts, strict=True)]
    return ks, ivs, ts


def test_cold_calibration_recovers_a_known_surface() -> None:
    ks, ivs, ts = _surface(CRYPTO)
    fit = calibrate(ks, ivs, ts)
    assert fit.ok
    assert fit.rmse_vol < 1e-9
    got, want = fit.params.as_dict(), CRYPTO.as_dict()
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-5, abs=1e-6), name


def test_warm_recalibration_after_a_small_move_matches_cold() -> None:
    ks, ivs, ts = _surface(CRYPTO)
    moved = [v * 1.005 + 0.003 * k for v, k in zip(ivs, ks, strict=True)]
    start = calibrate(ks, ivs, ts).params
    warm = calibrate(ks, moved, ts, previous=start)
    cold = calibrate(ks, moved, ts)
    assert warm.warm
    assert warm.rmse_vol <= cold.rmse_vol * 1.01 + 1e-9
    assert warm.nfev <= cold.nfev


def test_bad_inputs_fail_as_a_status() -> None:
    fit = calibrate([np.array([0.0, 0.1])], [np.array([0.5, 0.5])], [0.5])
    assert fit.status == "failed"
    fit = calibrate([np.zeros(3)], [np.full(4, 0.5)], [0.5])
    assert fit.status == "failed"


def test_feller_condition() -> None:
    assert HestonParams(v0=0.04, kappa=2.0, theta=0.04, sigma=0.3, rho=0.0).feller_satisfied()
    assert not CRYPTO.feller_satisfied()


def _quotes() -> tuple[np.ndarray, np.ndarray]:
    ks, _, ts = _surface(CRYPTO)
    return np.concatenate(ks), np.repeat(ts, [k.size for k in ks])


@pytest.mark.parametrize("params", [CRYPTO, FO_2008])
def test_surface_pricer_equals_call_price(params: HestonParams) -> None:
    k, t = _quotes()
    p = (params.v0, params.kappa, params.theta, params.sigma, params.rho)
    prices, _ = SurfacePricer(k, t).prices(p)
    np.testing.assert_allclose(prices, call_price(1.0, np.exp(k), t, params), rtol=1e-11,
                               atol=1e-15)


def test_surface_pricer_gradient_equals_central_differences() -> None:
    # The analytic derivative of the characteristic function (Cui et al. 2017), summed
    # on the same nodes, against (P(p + h) - P(p - h)) / 2h with h = 1e-6.
    k, t = _quotes()
    pricer = SurfacePricer(k, t)
    p = (CRYPTO.v0, CRYPTO.kappa, CRYPTO.theta, CRYPTO.sigma, CRYPTO.rho)
    _, grad = pricer.prices(p, gradient=True)
    assert grad is not None
    for j in range(5):
        up, down = list(p), list(p)
        up[j] += 1e-6
        down[j] -= 1e-6
        fd = (pricer.prices((*up,))[0] - pricer.prices((*down,))[0]) / 2e-6
        np.testing.assert_allclose(grad[j], fd, rtol=0, atol=1e-7 * np.abs(grad[j]).max())


def test_surface_pricer_widens_its_nodes_when_parameters_need_them() -> None:
    k, t = _quotes()
    pricer = SurfacePricer(k, t)
    pricer.prices((CRYPTO.v0, CRYPTO.kappa, CRYPTO.theta, CRYPTO.sigma, CRYPTO.rho))
    before = pricer.u.size
    slow_decay = HestonParams(v0=0.05, kappa=1.0, theta=0.05, sigma=3.0, rho=-0.9)
    prices, _ = pricer.prices((0.05, 1.0, 0.05, 3.0, -0.9))
    assert pricer.u.size > before
    # Both quadratures are ~2e-11 from a 16x finer one for these extreme parameters.
    np.testing.assert_allclose(prices, call_price(1.0, np.exp(k), t, slow_decay), rtol=1e-9,
                               atol=1e-10)
