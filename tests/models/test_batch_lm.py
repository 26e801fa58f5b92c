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


def test_converged_problems_stop_costing_evaluations() -> None:
    # Three problems start at their solution, one far away: with a select function the
    # solver evaluates only the problems still running, so the residual rows computed
    # are the per-problem evaluation counts, and the early ones stop at their first.
    a, k = np.array([1.0, 2.0, 0.5, 3.0]), np.array([0.3, 1.5, 4.0, 0.05])
    y = a[:, None] * np.exp(-k[:, None] * T)
    start = np.log(np.column_stack([a, k]))
    start[3] = [2.0, 2.0]
    rows_evaluated: list[int] = []

    def counted(rows: np.ndarray) -> ResidualFn:
        inner = _exponential_fits(y[rows])

        def fn(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            rows_evaluated.append(theta.shape[0])
            return inner(theta)
        return fn

    res = levenberg_marquardt(counted(np.arange(4)), start, max_iter=100, tol=1e-14,
                              select=counted)
    assert res.converged.all()
    assert sum(rows_evaluated) == res.nfev.sum()
    assert (res.nfev[:3] <= 2).all()
    assert res.nfev[3] > 5
    np.testing.assert_allclose(np.exp(res.theta), np.column_stack([a, k]), rtol=1e-8)
    # Without select every evaluation covers all four problems.
    full: list[int] = []

    def fn_all(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        full.append(theta.shape[0])
        return _exponential_fits(y)(theta)

    again = levenberg_marquardt(fn_all, start, max_iter=100, tol=1e-14)
    np.testing.assert_allclose(again.theta, res.theta, rtol=1e-12)
    assert sum(full) == 4 * len(full) > sum(rows_evaluated)


def test_a_problem_out_of_iterations_says_it_did_not_converge() -> None:
    y = np.vstack([np.exp(-T), 2.0 * np.exp(-3.0 * T)])
    res = levenberg_marquardt(_exponential_fits(y), np.array([[0.0, 0.0], [3.0, -3.0]]),
                              max_iter=3, tol=1e-14)
    assert not res.converged[1]
    assert res.iterations[1] <= 3
