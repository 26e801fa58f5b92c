"""Levenberg–Marquardt on many small independent least-squares problems at once.

Each problem ``i`` minimises ``|r_i(theta_i)|^2`` over a few parameters. The residual
function evaluates every problem in one call, padded to a common number of points
(padding carries zero weight), so one iteration is a handful of whole-array numpy
operations and one stacked ``(n, p, p)`` solve, whatever the number of problems.
A problem stops when its Gauss–Newton model predicts, or its last step achieved, a
relative cost reduction below ``tol`` (converged), or at ``max_iter`` accepted steps
(not converged: said so in ``converged``). A stopped problem leaves the active set, and
with a ``select`` function its residuals are no longer evaluated at all.
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
#: problem rows (k,) -> the residual function of those problems only
SelectFn = Callable[[IntArray], ResidualFn]

LAMBDA0, LAMBDA_MIN, LAMBDA_MAX = 1e-3, 1e-12, 1e12
STEP_TOL = 1e-10


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


def levenberg_marquardt(fn: ResidualFn, theta0: FloatArray, *, max_iter: int, tol: float,
                        select: SelectFn | None = None) -> BatchResult:
    """Minimise every problem's ``|r_i|^2`` from ``theta0`` (shape ``(n, p)``).

    ``max_iter`` bounds the accepted steps of each problem (and, twice over, its
    evaluations); a problem whose step cannot be solved for stops where it is.
    ``select(rows)``, when given, returns the residual function of those problems only
    (rows index ``theta0``): the solver then evaluates only the problems still running.
    """
    # Trial steps far from the data may overflow; their non-finite cost rejects them.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _minimise(fn, theta0, max_iter=max_iter, tol=tol, select=select)


def _minimise(fn: ResidualFn, theta0: FloatArray, *, max_iter: int, tol: float,
              select: SelectFn | None) -> BatchResult:
    theta_all = np.array(theta0, np.float64)
    n, p = theta_all.shape
    if n == 1:
        return _one(fn, theta_all, max_iter=max_iter, tol=tol)
    iterations, nfev = np.zeros(n, np.int64), np.ones(n, np.int64)
    converged = np.zeros(n, bool)
    active = _Active(fn, select, theta_all)
    r, jac = active.evaluate(theta_all)
    cost = _cost(r)
    lam = np.full(n, LAMBDA0)
    stop = ~np.isfinite(cost)  # never started
    eye = np.eye(p)
    for _ in range(2 * max_iter):
        if stop.any():  # drop the stopped problems: they cost no more work
            if stop.all():
                break
            keep = ~stop
            active.shrink(keep)
            r, jac, cost, lam = r[keep], jac[keep], cost[keep], lam[keep]
        solved = _damped_steps(jac, r, lam, eye)
        if solved is None:
            break
        step, predicted = solved
        stop = predicted <= tol * cost  # nothing left to gain: converged
        if stop.any():
            converged[active.rows[stop]] = True
            if stop.all():
                break
            keep = ~stop
            active.shrink(keep)
            r, jac, cost, lam, step = r[keep], jac[keep], cost[keep], lam[keep], step[keep]
        rows = active.rows
        trial = active.theta + step
        r_t, jac_t = active.evaluate(trial)
        cost_t = _cost(r_t)
        nfev[rows] += 1
        accept = cost_t <= cost  # False for NaN too
        small = (cost - cost_t <= tol * cost_t) | (np.abs(step).max(axis=1) < STEP_TOL)
        active.theta = np.where(accept[:, None], trial, active.theta)
        r = np.where(accept[:, None], r_t, r)
        jac = np.where(accept[:, None, None], jac_t, jac)
        cost = np.where(accept, cost_t, cost)
        iterations[rows] += accept
        lam = np.where(accept, np.maximum(lam / 3.0, LAMBDA_MIN), lam * 4.0)
        # No descent left even for a tiny step: at a minimum.
        done = (accept & small) | (~accept & (lam > LAMBDA_MAX))
        converged[rows[done]] = True
        stop = done | (iterations[rows] >= max_iter)
    active.shrink(np.zeros(active.rows.size, bool))
    return BatchResult(theta=active.theta_all, iterations=iterations, nfev=nfev,
                       converged=converged)


class _Active:
    """The problems still being solved: their rows, parameters and residual function.

    With ``select`` the residual function is rebuilt for the active rows whenever the set
    shrinks, so a converged problem costs nothing more; without it every evaluation runs
    all problems (stopped ones at their final parameters) and keeps the active rows.
    """

    def __init__(self, fn: ResidualFn, select: SelectFn | None, theta_all: FloatArray) -> None:
        self.fn, self.select = fn, select
        self.theta_all = theta_all
        self.rows: IntArray = np.arange(theta_all.shape[0])
        self.theta = theta_all.copy()

    def evaluate(self, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        if self.select is not None or self.rows.size == self.theta_all.shape[0]:
            return self.fn(theta)
        full = self.theta_all.copy()
        full[self.rows] = theta
        r, jac = self.fn(full)
        return r[self.rows], jac[self.rows]

    def shrink(self, keep: BoolArray) -> None:
        """Write back the parameters of the problems that stop; keep the others."""
        self.theta_all[self.rows] = self.theta
        self.rows, self.theta = self.rows[keep], self.theta[keep]
        if self.select is not None and self.rows.size:
            self.fn = self.select(self.rows)


def _one(fn: ResidualFn, theta: FloatArray, *, max_iter: int, tol: float) -> BatchResult:
    """:func:`levenberg_marquardt` for a single problem, with Python scalars for the
    bookkeeping (a per-slice fit is dominated by numpy's per-call overhead)."""
    r, jac = fn(theta)
    cost = float(r[0] @ r[0])
    lam, nfev, iterations, converged = LAMBDA0, 1, 0, False
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
            if lam > LAMBDA_MAX:  # no descent left even for a tiny step: at a minimum
                converged = True
                break
            continue
        small = cost - cost_t <= tol * cost_t or float(np.abs(step).max()) < STEP_TOL
        theta, r, jac, cost = theta + step, r_t, jac_t, cost_t
        iterations += 1
        lam = max(lam / 3.0, LAMBDA_MIN)
        if small:
            converged = True
            break
    return BatchResult(theta=theta, iterations=np.array([iterations]), nfev=np.array([nfev]),
                       converged=np.array([converged]))
