"""SSVI (Gatheral & Jacquier 2014): no static arbitrage by construction; calibration."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.arbitrage import calendar_free, durrleman_g
from streamer.core.models import ssvi

T = tuple(float(t) for t in np.linspace(0.02, 1.5, 11))
TRUE = ssvi.SSVIParams(rho=-0.3, eta=1.2, gamma=0.35, t=T,
                       theta=tuple(0.25 * t * (1.2 - 0.2 * i / 10) for i, t in enumerate(T)))


def _market(params: ssvi.SSVIParams) -> tuple[list[np.ndarray], list[np.ndarray]]:
    ks = [np.linspace(-0.8, 0.6, 40) for _ in params.t]
    ivs = [np.sqrt(ssvi.total_variance(k, i, params) / t)
           for i, (k, t) in enumerate(zip(ks, params.t, strict=True))]
    return ks, ivs


def test_calibration_recovers_a_known_surface() -> None:
    ks, ivs = _market(TRUE)
    fit = ssvi.calibrate(ks, ivs, TRUE.t)
    assert fit.ok
    assert fit.rmse_vol < 1e-10
    assert fit.params.rho == pytest.approx(TRUE.rho, abs=1e-8)
    assert fit.params.eta == pytest.approx(TRUE.eta, rel=1e-8)
    assert fit.params.gamma == pytest.approx(TRUE.gamma, rel=1e-7)
    np.testing.assert_allclose(fit.params.theta, TRUE.theta, rtol=1e-8)


def test_warm_refit_after_a_small_move_matches_cold() -> None:
    ks, ivs = _market(TRUE)
    moved = [v * 1.004 - 0.01 * k * k for v, k in zip(ivs, ks, strict=True)]
    start = ssvi.calibrate(ks, ivs, TRUE.t).params
    warm = ssvi.calibrate(ks, moved, TRUE.t, previous=start)
    cold = ssvi.calibrate(ks, moved, TRUE.t)
    assert warm.rmse_vol <= cold.rmse_vol * 1.01 + 1e-12


def test_a_fitted_surface_passes_the_calendar_and_butterfly_checks_everywhere() -> None:
    ks, ivs = _market(TRUE)
    rng = np.random.default_rng(11)
    noisy = [v + rng.normal(0, 0.01, v.size) for v in ivs]  # noise that raw fits would chase
    p = ssvi.calibrate(ks, noisy, TRUE.t).params
    assert ssvi.is_arbitrage_free(p)
    grid = np.linspace(-3.0, 3.0, 601)
    w = np.array([ssvi.total_variance(grid, i, p) for i in range(len(p.t))])
    assert calendar_free(w).all()
    for i in range(len(p.t)):
        assert np.min(durrleman_g(grid, *ssvi.slice_derivatives(grid, p.slice(i)))) >= -1e-12


@settings(max_examples=200, deadline=None)
@given(rho=st.floats(-0.99, 0.99), eta_share=st.floats(0.01, 1.0),
       gamma=st.floats(0.01, 0.5), theta0=st.floats(1e-4, 0.5),
       steps=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=6))
def test_admissible_parameters_are_free_of_static_arbitrage(
        rho: float, eta_share: float, gamma: float, theta0: float, steps: list[float]) -> None:
    # Gatheral & Jacquier (2014), Theorem 4.1 and Corollary 4.1 with the power law (4.5):
    # theta non-decreasing, eta (1 + |rho|) <= 2, 0 < gamma <= 1/2.
    eta = 2.0 / (1.0 + abs(rho)) * eta_share
    theta = tuple(np.cumsum([theta0, *steps]))
    p = ssvi.SSVIParams(rho=rho, eta=eta, gamma=gamma, t=tuple(range(1, len(theta) + 1)),
                        theta=tuple(float(x) for x in theta))
    assert ssvi.is_arbitrage_free(p)
    k = np.linspace(-4.0, 4.0, 401)
    w = np.array([ssvi.total_variance(k, i, p) for i in range(len(theta))])
    assert calendar_free(w, tol=1e-12 * float(w.max())).all()
    for i in range(len(theta)):
        g = durrleman_g(k, *ssvi.slice_derivatives(k, p.slice(i)))
        assert np.min(g) >= -1e-9


def test_bad_inputs_fail_as_a_status() -> None:
    ks, ivs = _market(TRUE)
    assert ssvi.calibrate(ks, ivs, TRUE.t[::-1]).status == "failed"
    assert ssvi.calibrate(ks[:2], ivs[:2], TRUE.t[:3]).status == "failed"
    assert ssvi.calibrate([np.zeros(2)], [np.full(2, 0.5)], [0.5]).status == "failed"
