"""Standard errors from the fit's Jacobian, against the closed form of weighted least squares.

Reference: for a model linear in its parameters, ``vol = X theta``, the Gauss-Newton
covariance ``(J^T W J)^-1`` with ``W = diag(1 / h^2)`` is the exact covariance of the
weighted least-squares estimator when the noise of quote i has standard deviation h_i
(Seber & Wild 1989, section 2.1; any regression text). A Monte Carlo of refits on noisy
quotes checks the nonlinear SVI case.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import least_squares

from streamer.core.fit_errors import standard_errors
from streamer.core.models import svi


def test_linear_model_matches_the_weighted_least_squares_covariance() -> None:
    k = np.linspace(-0.4, 0.3, 25)
    h = 0.002 + 0.01 * k * k
    theta = np.array([0.6, -0.2, 0.5])

    def vol(kk: np.ndarray, th: np.ndarray) -> np.ndarray:
        return th[0] + th[1] * kk + th[2] * kk * kk

    x = np.stack([np.ones_like(k), k, k * k], axis=1)
    cov = np.linalg.inv(x.T @ (x / (h * h)[:, None]))
    se, se_atm = standard_errors(vol, theta, k, h)
    np.testing.assert_allclose(se, np.sqrt(np.diag(cov)), rtol=1e-6)
    assert se_atm == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-6)  # vol(0) = theta_0


def test_svi_atm_error_matches_the_spread_of_refits() -> None:
    rng = np.random.default_rng(5)
    t = 0.1
    true = np.array([0.004, 0.05, -0.3, 0.0, 0.1])
    k = np.linspace(-0.35, 0.3, 30)
    h = np.full(k.size, 0.004)

    def vol(kk: np.ndarray, th: np.ndarray) -> np.ndarray:
        p = svi.SVIParams(a=th[0], b=th[1], rho=th[2], m=th[3], sigma=th[4])
        return np.sqrt(np.maximum(svi.total_variance(kk, p), 1e-12) / t)

    clean = vol(k, true)
    atm = []
    for _ in range(200):
        iv = clean + rng.normal(0.0, h)
        fit = least_squares(lambda th, iv=iv: (vol(k, th) - iv) / h, true,
                            bounds=([-1, 1e-4, -0.99, -1, 1e-3], [1, 2, 0.99, 1, 2]))
        atm.append(vol(np.zeros(1), fit.x)[0])
    _, se_atm = standard_errors(vol, true, k, h)
    assert se_atm == pytest.approx(float(np.std(atm)), rel=0.25)


def test_too_few_quotes_or_no_spread_give_nan() -> None:
    def vol(kk: np.ndarray, th: np.ndarray) -> np.ndarray:
        return th[0] + th[1] * kk

    se, atm = standard_errors(vol, [0.5, 0.1], [0.0, 0.1], [0.01, 0.01])
    assert np.isnan(se).all()
    assert np.isnan(atm)
    se, atm = standard_errors(vol, [0.5, 0.1], [0.0, 0.1, 0.2], [0.01, 0.0, 0.01])
    assert np.isnan(atm)


def test_svi_analytic_jacobian_gives_the_finite_difference_errors() -> None:
    """The SVI slice's analytic ``d vol / d theta`` (what the pipeline uses) against the
    central differences of :func:`standard_errors` on the same fit."""
    from streamer.core.fit_errors import errors_from_jacobian

    t = 0.05
    p = svi.SVIParams(a=0.002, b=0.03, rho=-0.4, m=0.01, sigma=0.08)
    k = np.linspace(-0.3, 0.25, 28)
    h = 0.003 + 0.02 * k * k

    def vol(kk: np.ndarray, th: np.ndarray) -> np.ndarray:
        q = svi.SVIParams(a=th[0], b=th[1], rho=th[2], m=th[3], sigma=th[4])
        return np.sqrt(svi.total_variance(kk, q) / t)

    se_fd, atm_fd = standard_errors(vol, [p.a, p.b, p.rho, p.m, p.sigma], k, h)
    se, atm = errors_from_jacobian(svi.vol_jacobian(np.append(k, 0.0), t, p), h)
    np.testing.assert_allclose(se, se_fd, rtol=1e-5)
    assert atm == pytest.approx(atm_fd, rel=1e-5)


def test_many_fits_at_once_equal_each_fit_alone_and_a_singular_one_is_nan_alone() -> None:
    """Padded slices (half spread +inf) of different sizes in one call: each slice's
    errors are those of the slice on its own; a slice whose quotes cannot separate its
    parameters (every quote at one k: J^T J singular) is NaN without touching the others."""
    from streamer.core.fit_errors import errors_from_jacobian, errors_from_jacobians

    t = 0.05
    slices = [(svi.SVIParams(a=0.002, b=0.03, rho=-0.4, m=0.01, sigma=0.08),
               np.linspace(-0.3, 0.25, 28)),
              (svi.SVIParams(a=0.01, b=0.08, rho=-0.2, m=0.0, sigma=0.2),
               np.linspace(-0.5, 0.4, 17)),
              (svi.SVIParams(a=0.01, b=0.08, rho=-0.2, m=0.0, sigma=0.2), np.full(9, 0.1))]
    width = 29
    jac = np.zeros((3, width, 5))
    h = np.full((3, width - 1), np.inf)
    alone = []
    for i, (p, k) in enumerate(slices):
        h_i = 0.003 + 0.02 * k * k
        j_i = svi.vol_jacobian(np.append(k, 0.0), t, p)
        jac[i, :k.size], jac[i, -1], h[i, :k.size] = j_i[:-1], j_i[-1], h_i
        alone.append(errors_from_jacobian(j_i, h_i))
    se, atm = errors_from_jacobians(jac, h)
    for i in (0, 1):
        np.testing.assert_allclose(se[i], alone[i][0], rtol=1e-10)
        assert atm[i] == pytest.approx(alone[i][1], rel=1e-10)
    assert np.isnan(atm[2])
    assert np.isnan(se[2]).all()
