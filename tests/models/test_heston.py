"""Heston prices against Fang & Oosterlee (2008) and QuantLib; whole-surface calibration."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.core.models import heston_quadrature as hq
from streamer.core.models.heston import (
    BOUNDS,
    HestonParams,
    _dp_dx,
    _from_x,
    _to_x,
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


def test_lewis_reference_values() -> None:
    # Alan Lewis's high-precision Heston prices, as cached in QuantLib's test suite
    # (test-suite/hestonmodel.cpp, testAllIntegrationMethods): S = 100, r = 0.01,
    # q = 0.02, T = 1, v0 = 0.04, kappa = 4, theta = 0.25, sigma = 1, rho = -0.5.
    p = HestonParams(v0=0.04, kappa=4.0, theta=0.25, sigma=1.0, rho=-0.5)
    strikes = np.array([80.0, 90.0, 100.0, 110.0, 120.0])
    calls = np.array([26.774758743998854, 20.933349000596710, 16.070154917028834,
                      12.132211516709845, 9.024913483457836])
    forward, discount = 100.0 * np.exp(-0.01), np.exp(-0.01)
    ours = discount * call_price(forward, strikes, 1.0, p)
    np.testing.assert_allclose(ours, calls, rtol=1e-10)


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


def _tuple(p: HestonParams) -> tuple[float, float, float, float, float]:
    return (p.v0, p.kappa, p.theta, p.sigma, p.rho)


def test_surface_pricer_refuses_parameters_over_its_node_cap() -> None:
    # A trial step with vol-of-vol 97 once grew the cache to 3.8 million nodes: such a
    # step is not priced (NaN, so the optimiser rejects it) and leaves the cache as it was.
    k, t = _quotes()
    pricer = SurfacePricer(k, t)
    pricer.prices(_tuple(CRYPTO))
    before = pricer.node_count
    prices, grad = pricer.prices((1e-4, 0.01, 1e-4, 97.0, -0.999), gradient=True)
    assert np.isnan(prices).all()
    assert grad is not None
    assert np.isnan(grad).all()
    assert pricer.node_count == before
    np.testing.assert_allclose(pricer.prices(_tuple(CRYPTO))[0],
                               call_price(1.0, np.exp(k), t, CRYPTO), rtol=1e-11, atol=1e-15)


def test_surface_pricer_cache_shrinks_back_after_a_far_step() -> None:
    k, t = _quotes()
    pricer = SurfacePricer(k, t)
    pricer.prices(_tuple(CRYPTO))
    base = pricer.node_count
    pricer.prices((0.05, 1.0, 0.05, 2.0, -0.9))
    assert 4 * base < pricer.node_count <= hq.MAX_NODES
    pricer.prices(_tuple(CRYPTO))
    assert pricer.node_count <= 2 * base


def test_corners_of_the_bounds_price_or_are_refused_whole() -> None:
    # The corners of the calibration box on a 6-hour and a 2-year expiry: each either
    # prices every quote within [intrinsic, F] or is refused whole (NaN), cache untouched.
    k = np.concatenate([np.linspace(-0.15, 0.15, 30), np.linspace(-1.5, 1.5, 60)])
    t = np.concatenate([np.full(30, 0.25 / 365), np.full(60, 2.0)])
    rng = np.random.default_rng(7)
    lo = np.array([b[0] for b in BOUNDS.values()])
    hi = np.array([b[1] for b in BOUNDS.values()])
    pricer = SurfacePricer(k, t)
    refused = 0
    for _ in range(30):
        corner = np.where(rng.random(5) < 0.5, lo, hi)
        before = pricer.node_count
        prices, _ = pricer.prices(tuple(corner))  # type: ignore[arg-type]
        if np.isnan(prices).all():
            refused += 1
            assert pricer.node_count == before
            continue
        intrinsic = np.maximum(1.0 - np.exp(k), 0.0)
        assert np.all(prices >= intrinsic - 1e-9), corner
        assert np.all(prices <= 1.0 + 1e-12), corner
    assert refused < 30


def test_free_variables_map_into_the_bounds_with_no_dead_zone() -> None:
    for x in (np.full(5, -40.0), np.full(5, 40.0), np.zeros(5)):
        got = _from_x(x).as_dict()
        for name, (lo, hi) in BOUNDS.items():
            assert lo <= got[name] <= hi, name
    # The old clip held v0 at exp(-30) with a zero derivative; now the derivative is
    # positive (if small) everywhere, and equals central differences.
    x = _to_x(HestonParams(v0=1e-13, kappa=200.0, theta=0.3, sigma=27.0, rho=-0.9999))
    assert np.all(np.isfinite(x))
    assert np.all(_dp_dx(x) > 0)
    x0 = np.array([-3.0, 1.0, 0.5, 2.0, -1.5])
    h = 1e-6
    for j in range(5):
        up, down = x0.copy(), x0.copy()
        up[j] += h
        down[j] -= h
        fd = (np.array(list(_from_x(up).as_dict().values()))
              - np.array(list(_from_x(down).as_dict().values())))[j] / (2 * h)
        assert _dp_dx(x0)[j] == pytest.approx(fd, rel=1e-6)
    assert _from_x(_to_x(CRYPTO)).as_dict() == pytest.approx(CRYPTO.as_dict(), rel=1e-9)


def test_warm_start_from_a_stuck_previous_fit_moves_v0_off_the_bound() -> None:
    # The state the issue reports: v0 at the old clip exp(-30) (zero derivative there),
    # kappa 200, sigma 27. Clipped into the bounds, the fit moves v0 back to the market.
    ks, ivs, ts = _surface(CRYPTO)
    stuck = HestonParams(v0=np.exp(-30.0), kappa=200.0, theta=0.4, sigma=27.0, rho=-0.5)
    start = calibrate(ks, ivs, ts, previous=stuck, max_nfev=1)
    fit = calibrate(ks, ivs, ts, previous=stuck)
    assert fit.ok
    assert fit.rmse_vol < 0.2 * start.rmse_vol
    assert fit.params.v0 == pytest.approx(CRYPTO.v0, rel=0.1)
    for name, (lo, hi) in BOUNDS.items():
        assert lo <= fit.params.as_dict()[name] <= hi


def test_should_stop_ends_the_fit_at_its_best_point_so_far() -> None:
    ks, ivs, ts = _surface(CRYPTO)
    asked = []

    def stop_after_three() -> bool:
        asked.append(1)
        return len(asked) >= 3

    fit = calibrate(ks, ivs, ts, should_stop=stop_after_three)
    full = calibrate(ks, ivs, ts)
    assert fit.ok
    assert fit.status == "max_iter"
    assert fit.message == "stopped"
    assert fit.nfev == 3
    assert full.nfev > 3
    assert np.isfinite(fit.rmse_vol)
    assert fit.rmse_vol > full.rmse_vol
