"""Levenberg–Marquardt on many small independent least-squares problems at once.

Each problem ``i`` minimises ``|r_i(theta_i)|^2`` over a few parameters. The residual
function evaluates every problem in one call, padded to a common number of points
(padding carries zero weight), so one iteration is a handful of whole-array numpy
operations and one stacked ``(n, p, p)`` solve, whatever the number of problems.
A problem stops when its Gauss–Newton model predicts, or its last step achieved, a
relative cost reduction below ``tol``; it then keeps its parameters while the others
go on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
#: theta (n, p) -> weighted residuals (n, m) and their Jacobian, transposed: (n, p, m)
ResidualFn = Callable[[FloatArray], tuple[FloatArray, FloatArray]]

_LAMBDA0, _LAMBDA_MIN, _LAMBDA_MAX = 1e-3, 1e-12, 1e12
_STEP_TOL = 1e-10


class BatchResult(NamedTuple):
    """Per problem: parameters, accepted steps, residual evaluations, converged flag."""

    theta: FloatArray
    iterations: IntArray
    nfev: IntArray
    converged: BoolArray


def _cost(r: FloatArray) -> FloatArray:
    result: FloatArray = (r * r).sum(axis=1)
    return result


def _damped_steps(jac_t: FloatArray, r: FloatArray, lam: FloatArray, eye: FloatArray
                  ) -> tuple[FloatArray, FloatArray] | None:
    """LM steps ``-(J'J + lam diag J'J)^-1 J'r`` and their predicted cost reduction."""
    jtj = np.matmul(jac_t, jac_t.transpose(0, 2, 1))
    grad = np.matmul(jac_t, r[..., None])
    damped = jtj + (lam[:, None] * np.maximum(jtj.diagonal(axis1=1, axis2=2), 1e-12))[
        ..., None] * eye
    try:
        step = np.linalg.solve(damped, -grad)
    except np.linalg.LinAlgError:
        return None
    # |r + J s|^2 = cost + 2 g.s + s'J'J s, so the model predicts this reduction:
    predicted = -(step * (grad + grad + np.matmul(jtj, step))).sum(axis=(1, 2))
    return step[..., 0], predicted


def levenberg_marquardt(fn: ResidualFn, theta0: FloatArray, *, max_iter: int, tol: float
                        ) -> BatchResult:
    """Minimise every problem's ``|r_i|^2`` from ``theta0`` (shape ``(n, p)``).

    ``max_iter`` bounds the accepted steps of each problem (and, twice over, its
    evaluations); a problem whose step cannot be solved for stops where it is.
    """
    # Trial steps far from the data may overflow; their non-finite cost rejects them.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _minimise(fn, theta0, max_iter=max_iter, tol=tol)


def _minimise(fn: ResidualFn, theta0: FloatArray, *, max_iter: int, tol: float
              ) -> BatchResult:
    theta = np.array(theta0, np.float64)
    n, p = theta.shape
    if n == 1:
        return _one(fn, theta, max_iter=max_iter, tol=tol)
    eye = np.eye(p)
    r, jac = fn(theta)
    cost = _cost(r)
    lam = np.full(n, _LAMBDA0)
    iterations, nfev = np.zeros(n, np.int64), np.ones(n, np.int64)
    stopped = ~np.isfinite(cost)  # converged, out of iterations, or never started
    converged = np.zeros(n, bool)
    for _ in range(2 * max_iter):
        solved = _damped_steps(jac, r, lam, eye)
        if solved is None:
            break
        step, predicted = solved
        done = predicted <= tol * cost
        converged |= done & ~stopped
        stopped |= done
        if stopped.all():
            break
        if stopped.any():
            step[stopped] = 0.0
        trial = theta + step
        r_t, jac_t = fn(trial)
        cost_t = _cost(r_t)
        nfev += ~stopped
        accept = (cost_t <= cost) & ~stopped  # False for NaN too
        if accept.all():  # the usual case near a solution: no per-problem selection
            theta, r, jac = trial, r_t, jac_t
            small = (cost - cost_t <= tol * cost_t) | (np.abs(step).max(axis=1) < _STEP_TOL)
            cost = cost_t
            iterations += 1
            lam = np.maximum(lam / 3.0, _LAMBDA_MIN)
            converged |= small
        else:
            reject = ~accept & ~stopped
            theta = np.where(accept[:, None], trial, theta)
            r = np.where(accept[:, None], r_t, r)
            jac = np.where(accept[:, None, None], jac_t, jac)
            small = (cost - cost_t <= tol * cost_t) | (np.abs(step).max(axis=1) < _STEP_TOL)
            cost = np.where(accept, cost_t, cost)
            iterations += accept
            lam = np.where(accept, np.maximum(lam / 3.0, _LAMBDA_MIN),
                           np.where(reject, lam * 4.0, lam))
            # No descent left even for a tiny step: at a minimum.
            converged |= (accept & small) | (reject & (lam > _LAMBDA_MAX))
        stopped |= converged | (iterations >= max_iter)
    return BatchResult(theta=theta, iterations=iterations, nfev=nfev, converged=converged)


def _one(fn: ResidualFn, theta: FloatArray, *, max_iter: int, tol: float) -> BatchResult:
    """:func:`levenberg_marquardt` for a single problem, with Python scalars for the
    bookkeeping (a per-slice fit is dominated by numpy's per-call overhead)."""
    r, jac = fn(theta)
    cost = float(r[0] @ r[0])
    lam, nfev, iterations, converged = _LAMBDA0, 1, 0, False
    eye = np.eye(theta.shape[1])
    while nfev <= 2 * max_iter and iterations < max_iter and np.isfinite(cost):
        jtj = jac[0] @ jac[0].T
        grad = jac[0] @ r[0]
        try:
            step = np.linalg.solve(jtj + lam * np.maximum(jtj.diagonal(), 1e-12) * eye, -grad)
        except np.linalg.LinAlgError:
            break
        if -float(step @ (grad + grad + jtj @ step)) <= tol * cost:
            converged = True
            break
        r_t, jac_t = fn(theta + step)
        nfev += 1
        cost_t = float(r_t[0] @ r_t[0])
        if not cost_t <= cost:  # worse, or NaN
            lam *= 4.0
            if lam > _LAMBDA_MAX:  # no descent left even for a tiny step: at a minimum
                converged = True
                break
            continue
        small = cost - cost_t <= tol * cost_t or float(np.abs(step).max()) < _STEP_TOL
        theta, r, jac, cost = theta + step, r_t, jac_t, cost_t
        iterations += 1
        lam = max(lam / 3.0, _LAMBDA_MIN)
        if small:
            converged = True
            break
    return BatchResult(theta=theta, iterations=np.array([iterations]), nfev=np.array([nfev]),
                       converged=np.array([converged]))
