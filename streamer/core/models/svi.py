"""Raw SVI smiles (Gatheral 2004): parameters, evaluation and calibration.

Total implied variance at log-moneyness ``k = ln(K/F)``:

    w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))

Calibration is least squares in implied vol. A cold fit seeds a grid over
``(m, sigma)`` with the quasi-explicit linear solve of Zeliade (2009) for
``(a, b, rho)`` and refines the best seed; a warm fit refines the previous
parameters only. The refinement is a small Levenberg–Marquardt loop with the
analytic Jacobian in an unconstrained parametrisation (``ln b``, ``atanh rho``,
``ln sigma``), which keeps ``b > 0``, ``|rho| < 1`` and ``sigma > 0`` by construction
and avoids the per-call overhead of a general-purpose solver on the hot path.
"""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.core.models.fit import Fit

FloatArray = npt.NDArray[np.float64]

_W_FLOOR = 1e-12
_RHO_MAX = 0.999
MIN_POINTS = 5


class SVIParams(msgspec.Struct, frozen=True, kw_only=True):
    """Raw SVI parameters of one expiry's total-variance smile."""

    a: float
    b: float
    rho: float
    m: float
    sigma: float

    def as_dict(self) -> dict[str, float]:
        """Parameters by name, for the published surface."""
        return {"a": self.a, "b": self.b, "rho": self.rho, "m": self.m, "sigma": self.sigma}

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> SVIParams:
        """Inverse of :meth:`as_dict`."""
        return cls(a=d["a"], b=d["b"], rho=d["rho"], m=d["m"], sigma=d["sigma"])


def total_variance(k: npt.ArrayLike, p: SVIParams) -> FloatArray:
    """Total implied variance ``w(k)``; ``k = ln(K/F)``."""
    x = np.asarray(k, np.float64) - p.m
    result: FloatArray = p.a + p.b * (p.rho * x + np.sqrt(x * x + p.sigma * p.sigma))
    return result


def implied_vol(k: npt.ArrayLike, t: float, p: SVIParams) -> FloatArray:
    """Decimal implied vol ``sqrt(w(k) / t)``; NaN where ``w < 0``."""
    w = total_variance(k, p)
    with np.errstate(invalid="ignore"):
        result: FloatArray = np.sqrt(w / t)
    return result


def derivatives(k: npt.ArrayLike, p: SVIParams) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``w``, ``dw/dk`` and ``d2w/dk2`` at ``k``."""
    x = np.asarray(k, np.float64) - p.m
    root = np.sqrt(x * x + p.sigma * p.sigma)
    w = p.a + p.b * (p.rho * x + root)
    dw = p.b * (p.rho + x / root)
    d2w = p.b * p.sigma * p.sigma / root**3
    return w, dw, d2w


# -- calibration ---------------------------------------------------------------

def _to_theta(p: SVIParams) -> FloatArray:
    rho = float(np.clip(p.rho, -_RHO_MAX, _RHO_MAX))
    return np.array([p.a, np.log(max(p.b, 1e-10)), np.arctanh(rho), p.m,
                     np.log(max(p.sigma, 1e-8))])


def _from_theta(theta: FloatArray) -> SVIParams:
    return SVIParams(a=float(theta[0]), b=float(np.exp(theta[1])), rho=float(np.tanh(theta[2])),
                     m=float(theta[3]), sigma=float(np.exp(theta[4])))


def _residuals(theta: FloatArray, k: FloatArray, iv: FloatArray, t: float
               ) -> tuple[FloatArray, FloatArray]:
    """Vol residuals and their Jacobian in the unconstrained parametrisation."""
    a, b, rho, m, sigma = theta[0], np.exp(theta[1]), np.tanh(theta[2]), theta[3], np.exp(theta[4])
    x = k - m
    root = np.sqrt(x * x + sigma * sigma)
    w = np.maximum(a + b * (rho * x + root), _W_FLOOR)
    vol = np.sqrt(w / t)
    scale = 1.0 / (2.0 * t * vol)
    jac = np.empty((k.size, 5))
    jac[:, 0] = scale
    jac[:, 1] = scale * b * (rho * x + root)
    jac[:, 2] = scale * b * x * (1.0 - rho * rho)
    jac[:, 3] = scale * (-b) * (rho + x / root)
    jac[:, 4] = scale * b * sigma * sigma / root
    return vol - iv, jac


def _levenberg_marquardt(theta: FloatArray, k: FloatArray, iv: FloatArray, t: float,
                         sqrt_w: FloatArray, max_iter: int, tol: float
                         ) -> tuple[FloatArray, int, int, bool]:
    """Minimise sum((sqrt_w * r)^2); returns theta, iterations, evaluations, converged."""
    r, jac = _residuals(theta, k, iv, t)
    rw, jw = r * sqrt_w, jac * sqrt_w[:, None]
    cost = float(rw @ rw)
    lam, nfev = 1e-3, 1
    for it in range(1, max_iter + 1):
        jtj = jw.T @ jw
        grad = jw.T @ rw
        diag = np.maximum(np.diag(jtj), 1e-12)
        while True:
            try:
                step = np.linalg.solve(jtj + lam * np.diag(diag), -grad)
            except np.linalg.LinAlgError:
                return theta, it, nfev, False
            trial = theta + step
            r_t, jac_t = _residuals(trial, k, iv, t)
            nfev += 1
            rw_t = r_t * sqrt_w
            cost_t = float(rw_t @ rw_t)
            if np.isfinite(cost_t) and cost_t <= cost:
                break
            lam *= 4.0
            if lam > 1e12:
                return theta, it, nfev, True  # no descent left: at a minimum
        improvement = cost - cost_t
        theta, rw, jw, cost = trial, rw_t, jac_t * sqrt_w[:, None], cost_t
        lam = max(lam / 3.0, 1e-12)
        if improvement <= tol * max(cost, 1e-30) or float(np.abs(step).max()) < 1e-10:
            return theta, it, nfev, True
    return theta, max_iter, nfev, False


def _quasi_explicit_seed(k: FloatArray, iv: FloatArray, t: float, sqrt_w: FloatArray
                         ) -> SVIParams:
    """Best seed over an (m, sigma) grid, (a, b, rho) by linear least squares on w."""
    w_mkt = iv * iv * t
    span = max(float(k.max() - k.min()), 0.05)
    best: tuple[float, SVIParams] | None = None
    for m in np.linspace(k.min() - 0.1 * span, k.max() + 0.1 * span, 9):
        for sigma in span * np.array([0.02, 0.05, 0.1, 0.2, 0.4, 0.8]):
            y = (k - m) / sigma
            design = np.column_stack([np.ones_like(y), y, np.sqrt(y * y + 1.0)]) * sqrt_w[:, None]
            coef, *_ = np.linalg.lstsq(design, w_mkt * sqrt_w, rcond=None)
            a, d, c = coef
            if c <= 1e-10:
                continue
            rho = float(np.clip(d / c, -0.99, 0.99))
            p = SVIParams(a=float(a), b=float(c / sigma), rho=rho, m=float(m), sigma=float(sigma))
            err = implied_vol(k, t, p) - iv
            score = float(np.nansum(err * err * sqrt_w * sqrt_w)) + 1e3 * np.isnan(err).sum()
            if best is None or score < best[0]:
                best = (score, p)
    if best is None:
        atm_w = float(np.median(w_mkt))
        return SVIParams(a=atm_w * 0.9, b=0.1, rho=0.0, m=0.0, sigma=0.1)
    return best[1]


def calibrate(k: npt.ArrayLike, iv: npt.ArrayLike, t: float,
              weights: npt.ArrayLike | None = None, previous: SVIParams | None = None, *,
              max_iter: int = 50, tol: float = 1e-10) -> Fit[SVIParams]:
    """Fit raw SVI to one expiry's implied vols.

    Parameters
    ----------
    k : array_like, shape (n,)
        Log-moneyness ``ln(K/F)``.
    iv : array_like, shape (n,)
        Market implied vols (decimal).
    t : float
        Time to expiry in years.
    weights : array_like, shape (n,), optional
        Non-negative weights of the squared vol errors (default 1).
    previous : SVIParams, optional
        Warm start: refine from these parameters only.

    Returns
    -------
    Fit[SVIParams]
        ``rmse_vol`` is the unweighted RMS of model minus market vol. Failure is a
        status, never an exception.
    """
    kk = np.asarray(k, np.float64).ravel()
    vv = np.asarray(iv, np.float64).ravel()
    ww = np.ones_like(kk) if weights is None else np.asarray(weights, np.float64).ravel()
    fallback = previous or SVIParams(a=0.0, b=0.0, rho=0.0, m=0.0, sigma=1.0)
    good = np.isfinite(kk) & np.isfinite(vv) & (vv > 0) & np.isfinite(ww) & (ww >= 0)
    if not (np.isfinite(t) and t > 0):
        return Fit.failed(fallback, f"bad time to expiry {t!r}", warm=previous is not None)
    if good.sum() < MIN_POINTS or kk.shape != vv.shape or kk.shape != ww.shape:
        return Fit.failed(fallback, f"need >= {MIN_POINTS} valid points, got {int(good.sum())}",
                          warm=previous is not None)
    kk, vv, sqrt_w = kk[good], vv[good], np.sqrt(ww[good])
    seed = previous if previous is not None else _quasi_explicit_seed(kk, vv, t, sqrt_w)
    theta, iters, nfev, converged = _levenberg_marquardt(
        _to_theta(seed), kk, vv, t, sqrt_w, max_iter, tol)
    params = _from_theta(theta)
    err = implied_vol(kk, t, params) - vv
    rmse = float(np.sqrt(np.mean(err * err)))
    if not np.isfinite(rmse):
        return Fit.failed(fallback, "fit produced negative total variance",
                          warm=previous is not None, iterations=iters, nfev=nfev)
    return Fit(params=params, rmse_vol=rmse, iterations=iters,
               status="converged" if converged else "max_iter", nfev=nfev,
               warm=previous is not None)
