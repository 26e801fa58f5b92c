"""SABR: Hagan et al. (2002) lognormal vols against QuantLib, and calibration."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.core.models.sabr import (
    BETAS,
    SABRModel,
    SABRParams,
    _expansion_seed,
    calibrate,
    implied_vol,
)

ql = pytest.importorskip("QuantLib")


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("rho", [-0.7, 0.0, 0.6])
@pytest.mark.parametrize("nu", [0.2, 1.0, 2.5])
def test_vols_equal_quantlib_sabr_volatility(beta: float, rho: float, nu: float) -> None:
    # Reference: QuantLib's sabrVolatility (ql/termstructures/volatility/sabr.cpp),
    # the same expansion (Hagan et al. 2002, eq. 2.17a).
    forward = 100.0
    alpha = 0.6 * forward ** (1.0 - beta)
    params = SABRParams(alpha=alpha, beta=beta, rho=rho, nu=nu)
    strikes = forward * np.exp(np.linspace(-1.0, 1.0, 41))
    for t in (0.01, 0.5, 2.0):
        ours = implied_vol(forward, strikes, t, params)
        ref = np.array([ql.sabrVolatility(float(k), forward, t, alpha, beta, nu, rho)
                        for k in strikes])
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=0.0)


def test_at_the_money_uses_the_series_without_loss() -> None:
    params = SABRParams(alpha=0.55, beta=1.0, rho=-0.3, nu=1.1)
    atm = implied_vol(1.0, 1.0, 0.25, params)
    near = implied_vol(1.0, 1.0 + 1e-9, 0.25, params)
    ref = ql.sabrVolatility(1.0, 1.0, 0.25, 0.55, 1.0, 1.1, -0.3)
    assert atm == pytest.approx(ref, rel=1e-14)
    assert near == pytest.approx(atm, rel=1e-8)


def test_cold_calibration_recovers_known_parameters() -> None:
    true = SABRParams(alpha=0.62, beta=1.0, rho=-0.35, nu=1.4)
    strikes = np.exp(np.linspace(-0.6, 0.6, 25))
    fit = calibrate(1.0, strikes, implied_vol(1.0, strikes, 0.25, true), 0.25)
    assert fit.status == "converged"
    assert fit.rmse_vol < 1e-10
    assert fit.params.alpha == pytest.approx(true.alpha, rel=1e-7)
    assert fit.params.rho == pytest.approx(true.rho, abs=1e-7)
    assert fit.params.nu == pytest.approx(true.nu, rel=1e-7)


def test_warm_refit_after_a_small_move_matches_a_cold_fit() -> None:
    true = SABRParams(alpha=0.62, beta=1.0, rho=-0.35, nu=1.4)
    strikes = np.exp(np.linspace(-0.6, 0.6, 25))
    iv = implied_vol(1.0, strikes, 0.25, true)
    rng = np.random.default_rng(3)
    moved = iv * 1.01 + 0.002 * np.log(strikes) + rng.normal(0, 1e-4, iv.size)
    first = calibrate(1.0, strikes, iv, 0.25)
    warm = calibrate(1.0, strikes, moved, 0.25, previous=first.params)
    cold = calibrate(1.0, strikes, moved, 0.25)
    assert warm.warm
    assert warm.rmse_vol <= cold.rmse_vol * 1.01
    assert warm.nfev < cold.nfev


def test_too_few_or_bad_inputs_fail_as_a_status() -> None:
    fit = calibrate(1.0, [0.9, 1.0, 1.1], [0.5, 0.5, 0.5], 0.25)
    assert fit.status == "failed"
    assert "valid points" in fit.message
    fit = calibrate(float("nan"), np.exp(np.linspace(-0.5, 0.5, 9)), np.full(9, 0.5), 0.25)
    assert fit.status == "failed"


@pytest.mark.parametrize(("beta", "rho", "nu", "t"), [
    (1.0, -0.35, 1.4, 0.25), (1.0, 0.2, 0.6, 1.0), (1.0, -0.1, 3.0, 0.02),
    (0.5, -0.4, 0.8, 0.5),
])
def test_expansion_seed_lands_near_the_true_parameters(beta: float, rho: float, nu: float,
                                                       t: float) -> None:
    # ATM level, skew and curvature of the market smile pin alpha, rho nu and nu^2.
    forward = 100.0
    true = SABRParams(alpha=0.6 * forward ** (1.0 - beta), beta=beta, rho=rho, nu=nu)
    strikes = forward * np.exp(np.linspace(-0.5, 0.5, 41) * np.sqrt(t))
    iv = implied_vol(forward, strikes, t, true)
    seed = _expansion_seed(forward, strikes, iv, t, beta, np.ones(iv.size))
    assert seed.alpha == pytest.approx(true.alpha, rel=0.03)
    assert seed.rho == pytest.approx(true.rho, abs=0.1)
    assert seed.nu == pytest.approx(true.nu, rel=0.15)


def test_a_good_first_start_needs_no_fallback() -> None:
    true = SABRParams(alpha=0.62, beta=1.0, rho=-0.35, nu=1.4)
    strikes = np.exp(np.linspace(-0.6, 0.6, 25))
    fit = calibrate(1.0, strikes, implied_vol(1.0, strikes, 0.25, true), 0.25)
    assert fit.status == "converged"
    assert fit.nfev <= 12  # one start; the 6-start grid took ~60


def test_band_fit_lands_inside_every_band_of_a_sabr_smile() -> None:
    # Mids scattered inside bid/ask bands around a known SABR smile: the band fit's
    # vols are inside every band and nearer the smile than the mids are.
    true = SABRParams(alpha=0.55, beta=1.0, rho=-0.2, nu=1.8)
    strikes = np.exp(np.linspace(-0.5, 0.4, 21))
    smile = implied_vol(1.0, strikes, 0.1, true)
    rng = np.random.default_rng(8)
    half = np.full(strikes.size, 0.01)
    mid = smile + rng.uniform(-0.7, 0.7, strikes.size) * half
    fit = calibrate(1.0, strikes, mid, 0.1, bid_iv=mid - half, ask_iv=mid + half)
    assert fit.status == "converged"
    model = implied_vol(1.0, strikes, 0.1, fit.params)
    assert np.all(np.abs(model - mid) <= half + 1e-9)
    assert np.sqrt(np.mean((model - smile) ** 2)) < np.sqrt(np.mean((mid - smile) ** 2))


@pytest.mark.parametrize("true_beta", [0.0, 0.5, 1.0])
def test_a_cold_fit_chooses_the_beta_of_the_smile(true_beta: float) -> None:
    # A short expiry's steep smile at each backbone: fitted with the model's candidate
    # betas, the cold fit picks the true one and lands on the smile.
    true = SABRParams(alpha=0.5, beta=true_beta, rho=-0.3, nu=9.0)
    strikes = np.exp(np.linspace(-0.15, 0.1, 19))
    t = 2.0 / 365.0
    iv = implied_vol(1.0, strikes, t, true)
    fit = calibrate(1.0, strikes, iv, t, beta=BETAS)
    assert fit.params.beta == true_beta
    assert fit.rmse_vol < 1e-6


def test_a_good_warm_fit_keeps_its_beta_and_a_poor_one_chooses_again() -> None:
    strikes = np.exp(np.linspace(-0.4, 0.3, 19))
    t = 2.0 / 365.0
    normal = implied_vol(1.0, strikes, t, SABRParams(alpha=0.5, beta=0.0, rho=-0.3, nu=9.0))
    first = calibrate(1.0, strikes, normal, t, beta=BETAS)
    warm = calibrate(1.0, strikes, normal * 1.002, t, previous=first.params, beta=BETAS)
    assert warm.params.beta == 0.0
    assert warm.nfev < first.nfev  # the previous fit alone: no other beta tried
    # the lognormal backbone misses this smile by over a vol point: a poor warm start
    lognormal = calibrate(1.0, strikes, normal, t, beta=1.0)
    assert lognormal.rmse_vol > 0.01
    again = calibrate(1.0, strikes, normal, t, previous=lognormal.params, beta=BETAS)
    assert again.params.beta == 0.0
    assert again.rmse_vol < 1e-6


def test_the_model_fits_each_expiry_at_a_candidate_beta() -> None:
    model = SABRModel()
    k = np.linspace(-0.15, 0.1, 19)
    t = 2.0 / 365.0
    iv = implied_vol(1.0, np.exp(k), t, SABRParams(alpha=0.5, beta=0.0, rho=-0.3, nu=9.0))
    half = np.full(k.size, 0.005)
    fit = model.calibrate(k, iv, t, np.ones(k.size), None, bid_iv=iv - half, ask_iv=iv + half)
    assert model.betas == BETAS
    assert fit.params.beta == 0.0
    assert np.max(np.abs(model.vol(k, t, fit.params) - iv)) < 1e-4
