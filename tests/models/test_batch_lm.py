"""Levenberg–Marquardt on many small problems at once, and on one."""

from __future__ import annotations

import numpy as np

from streamer.core.models.batch_lm import ResidualFn, levenberg_marquardt

T = np.linspace(0.0, 2.0, 30)


def _exponential_fits(y: np.ndarray) -> ResidualFn:
    """Residuals of ``a exp(-k t)`` to each row of ``y``, theta = (ln a, ln k)."""
    def fn(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, k = np.exp(theta[:, 0:1]), np.exp(theta[:, 1:2])
        model = a * np.exp(-k * T)
        jac = np.stack([model, -k * T * model], axis=1)  # (n, 2, m)
        return model - y, jac
    return fn


def test_each_problem_converges_to_its_own_solution() -> None:
    a, k = np.array([1.0, 2.0, 0.5, 3.0]), np.array([0.3, 1.5, 4.0, 0.05])
    y = a[:, None] * np.exp(-k[:, None] * T)
    res = levenberg_marquardt(_exponential_fits(y), np.zeros((4, 2)), max_iter=100, tol=1e-14)
    assert res.converged.all()
    np.testing.assert_allclose(np.exp(res.theta), np.column_stack([a, k]), rtol=1e-8)
    assert (res.nfev >= res.iterations).all()


def test_one_problem_gives_what_the_batch_gives_it() -> None:
    rng = np.random.default_rng(4)
    y = np.vstack([1.5 * np.exp(-0.7 * T), 0.8 * np.exp(-2.0 * T)]) + rng.normal(0, 1e-3, (2, 30))
    start = np.array([[0.1, -0.2], [0.0, 0.5]])
    batch = levenberg_marquardt(_exponential_fits(y), start, max_iter=100, tol=1e-12)
    for i in range(2):
        one = levenberg_marquardt(_exponential_fits(y[i:i + 1]), start[i:i + 1], max_iter=100,
                                  tol=1e-12)
        np.testing.assert_allclose(one.theta[0], batch.theta[i], rtol=1e-7)


def test_a_problem_that_cannot_start_stops_without_holding_up_the_others() -> None:
    y = np.vstack([np.exp(-T), np.full(T.size, np.nan)])
    res = levenberg_marquardt(_exponential_fits(y), np.zeros((2, 2)), max_iter=50, tol=1e-12)
    assert res.converged[0]
    assert not res.converged[1]
    np.testing.assert_allclose(np.exp(res.theta[0]), [1.0, 1.0], rtol=1e-8)
    assert res.nfev[1] == 1
