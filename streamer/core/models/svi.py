"""Raw SVI smiles (Gatheral 2004): parameters, evaluation and calibration.

Total implied variance at log-moneyness ``k = ln(K/F)``:

    w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))

Calibration is least squares in implied vol. A cold fit seeds a grid over
``(m, sigma)`` with the quasi-explicit linear solve of Zeliade (2009) for
``(a, b, rho)`` (every grid point of every slice in one stacked solve) and refines the
best seed; a warm fit refines the previous parameters only. The refinement is
Levenberg–Marquardt with the analytic Jacobian in an unconstrained parametrisation
(``ln b``, ``atanh rho``, ``ln sigma``), which keeps ``b > 0``, ``|rho| < 1`` and
``sigma > 0`` by construction. :func:`calibrate_chain` fits every expiry of a chain in
one batched loop (:mod:`streamer.core.models.batch_lm`), so the numpy call overhead
is paid once per iteration rather than once per slice; :func:`calibrate` is the same
fit for one slice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.core.models.batch_lm import ResidualFn, levenberg_marquardt
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

_NO_PARAMS = SVIParams(a=0.0, b=0.0, rho=0.0, m=0.0, sigma=1.0)  # of a failed cold fit
_SEED_M = np.linspace(0.0, 1.0, 9)  # across [k_min - span/10, k_max + span/10]
_SEED_SIGMA = np.array([0.02, 0.05, 0.1, 0.2, 0.4, 0.8])  # times the span


def _to_theta(p: SVIParams) -> list[float]:
    rho = min(max(p.rho, -_RHO_MAX), _RHO_MAX)
    return [p.a, math.log(max(p.b, 1e-10)), math.atanh(rho), p.m, math.log(max(p.sigma, 1e-8))]


def _from_theta(theta: FloatArray) -> SVIParams:
    a, ln_b, atanh_rho, m, ln_sigma = theta.tolist()
    return SVIParams(a=a, b=math.exp(ln_b), rho=math.tanh(atanh_rho), m=m, sigma=math.exp(ln_sigma))


class _Chain(NamedTuple):
    """Slices padded to a common length; padding has zero weight and ``valid`` False."""

    k: FloatArray
    iv: FloatArray
    t: FloatArray  # (n_slices, 1)
    sqrt_w: FloatArray
    valid: npt.NDArray[np.bool_]
    n_valid: FloatArray  # (n_slices,)
    padded: bool


def _clean(k: npt.ArrayLike, iv: npt.ArrayLike, t: float, weights: npt.ArrayLike | None
           ) -> tuple[FloatArray, FloatArray, FloatArray] | str:
    """The usable points of one slice and their sqrt weights, or why there are too few."""
    kk = np.asarray(k, np.float64).ravel()
    vv = np.asarray(iv, np.float64).ravel()
    ww = np.ones(kk.size) if weights is None else np.asarray(weights, np.float64).ravel()
    if not (math.isfinite(t) and t > 0):
        return f"bad time to expiry {t!r}"
    if kk.shape != vv.shape or kk.shape != ww.shape:
        return f"k, iv and weights differ in size ({kk.size}, {vv.size}, {ww.size})"
    good = np.isfinite(kk + vv + ww) & (vv > 0) & (ww >= 0)
    n_good = int(np.count_nonzero(good))
    if n_good < MIN_POINTS:
        return f"need >= {MIN_POINTS} valid points, got {n_good}"
    if n_good < kk.size:
        kk, vv, ww = kk[good], vv[good], ww[good]
    return kk, vv, np.sqrt(ww)


def _pad(slices: Sequence[tuple[FloatArray, FloatArray, FloatArray]], ts: Sequence[float]
         ) -> _Chain:
    sizes = [s[0].size for s in slices]
    t = np.asarray(ts, np.float64)[:, None]
    if len(slices) == 1:  # nothing to pad: views, no copies
        kk, vv, sw = slices[0]
        return _Chain(k=kk[None], iv=vv[None], t=t, sqrt_w=sw[None],
                      valid=np.ones((1, kk.size), bool), n_valid=np.array([kk.size], float),
                      padded=False)
    n = max(sizes)
    k, iv = np.zeros((len(slices), n)), np.ones((len(slices), n))
    sqrt_w, valid = np.zeros((len(slices), n)), np.zeros((len(slices), n), bool)
    for i, (kk, vv, sw) in enumerate(slices):
        k[i, :kk.size], iv[i, :kk.size], sqrt_w[i, :kk.size] = kk, vv, sw
        valid[i, :kk.size] = True
    return _Chain(k=k, iv=iv, t=t, sqrt_w=sqrt_w, valid=valid,
                  n_valid=np.asarray(sizes, float), padded=min(sizes) < n)


def _residual_fn(c: _Chain) -> ResidualFn:
    """Weighted vol residuals of every slice and their Jacobian in theta."""
    inv_t, half_sqrt_w_over_t = 1.0 / c.t, 0.5 * c.sqrt_w / c.t
    shape = (c.k.shape[0], 5, c.k.shape[1])

    def residuals(theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        a, m, rho = theta[:, 0:1], theta[:, 3:4], np.tanh(theta[:, 2:3])
        b_sigma = np.exp(theta[:, 1::3])  # columns 1 and 4: ln b and ln sigma
        b, sigma2 = b_sigma[:, 0:1], b_sigma[:, 1:2] ** 2
        x = c.k - m
        root = np.sqrt(x * x + sigma2)
        smile = rho * x + root
        vol = np.sqrt(np.maximum(a + b * smile, _W_FLOOR) * inv_t)
        scale = half_sqrt_w_over_t / vol
        b_scale = scale * b
        jac = np.empty(shape)
        jac[:, 0] = scale
        jac[:, 1] = b_scale * smile
        jac[:, 2] = b_scale * x * (1.0 - rho * rho)
        jac[:, 3] = -b_scale * (rho + x / root)
        jac[:, 4] = b_scale * sigma2 / root
        return (vol - c.iv) * c.sqrt_w, jac
    return residuals


def _seed_grid(c: _Chain) -> FloatArray:
    """Best quasi-explicit seed of each slice over its (m, sigma) grid, as theta rows.

    For each grid point ``(a, d, c)`` of ``w = a + d y + c sqrt(y^2 + 1)``,
    ``y = (k - m) / sigma``, is the weighted linear least-squares fit to the market
    total variance (Zeliade 2009); all grid points of all slices are one stacked 3x3
    solve of the normal equations.
    """
    lo = np.where(c.valid, c.k, np.inf).min(axis=1)
    hi = np.where(c.valid, c.k, -np.inf).max(axis=1)
    span = np.maximum(hi - lo, 0.05)
    lo, hi = lo - 0.1 * span, hi + 0.1 * span
    grid = (len(span), _SEED_M.size, _SEED_SIGMA.size)
    m = np.broadcast_to(lo[:, None, None] + (hi - lo)[:, None, None] * _SEED_M[:, None],
                        grid).reshape(len(span), -1)
    sigma = np.broadcast_to(span[:, None, None] * _SEED_SIGMA, grid).reshape(m.shape)
    y = (c.k[:, None, :] - m[..., None]) / sigma[..., None]
    root = np.sqrt(y * y + 1.0)
    w = (c.sqrt_w * c.sqrt_w)[:, None, :]
    target = (c.iv * c.iv * c.t)[:, None, :]
    wy, wr = w * y, w * root
    s1 = np.broadcast_to(w.sum(axis=-1), m.shape)
    sy, sr, syy, syr = wy.sum(-1), wr.sum(-1), (wy * y).sum(-1), (wy * root).sum(-1)
    normal = np.stack([s1, sy, sr, sy, syy, syr, sr, syr, syy + s1], axis=-1).reshape(
        (*m.shape, 3, 3))
    rhs = np.stack([np.broadcast_to((w * target).sum(-1), m.shape), (wy * target).sum(-1),
                    (wr * target).sum(-1)], axis=-1)
    normal += 1e-13 * np.eye(3) * np.trace(normal, axis1=-2, axis2=-1)[..., None, None]
    coef = np.linalg.solve(normal, rhs[..., None])[..., 0]
    a, d, cc = coef[..., 0], coef[..., 1], coef[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.clip(d / cc, -0.99, 0.99)
        vol = np.sqrt((a[..., None] + cc[..., None] * (rho[..., None] * y + root)) / c.t[:, None])
    err = vol - c.iv[:, None, :]
    undefined = np.isnan(err)  # w < 0: penalised per point, padding excepted
    score = (np.where(undefined, 0.0, err * err * w).sum(-1)
             + 1e3 * (undefined & c.valid[:, None, :]).sum(-1))
    score = np.where(cc > 1e-10, score, np.inf)
    best = np.argmin(score, axis=1)
    pick = np.arange(len(span)), best
    theta = np.column_stack([a[pick], np.log(np.maximum(cc[pick] / sigma[pick], 1e-10)),
                             np.arctanh(rho[pick]), m[pick], np.log(sigma[pick])])
    none = ~np.isfinite(score[pick])
    if none.any():  # no grid point had positive curvature: a flat generic start
        atm_w = np.median(np.where(c.valid, c.iv * c.iv * c.t, np.nan)[none], axis=1)
        theta[none] = np.column_stack([0.9 * atm_w, np.full(atm_w.shape, np.log(0.1)),
                                       np.zeros_like(atm_w), np.zeros_like(atm_w),
                                       np.full(atm_w.shape, np.log(0.1))])
    return theta


def _rmse(c: _Chain, theta: FloatArray) -> FloatArray:
    """Unweighted RMS of model minus market vol per slice; NaN where ``w < 0`` somewhere."""
    a, m = theta[:, 0:1], theta[:, 3:4]
    b, rho, sigma = np.exp(theta[:, 1:2]), np.tanh(theta[:, 2:3]), np.exp(theta[:, 4:5])
    x = c.k - m
    with np.errstate(invalid="ignore"):
        err = np.sqrt((a + b * (rho * x + np.sqrt(x * x + sigma * sigma))) / c.t) - c.iv
    if c.padded:
        err = np.where(c.valid, err, 0.0)
    result: FloatArray = np.sqrt((err * err).sum(axis=1) / c.n_valid)
    return result


def calibrate_chain(ks: Sequence[npt.ArrayLike], ivs: Sequence[npt.ArrayLike],
                    ts: Sequence[float], weights: Sequence[npt.ArrayLike] | None = None,
                    previous: Sequence[SVIParams | None] | None = None, *,
                    max_iter: int = 50, tol: float = 1e-10) -> list[Fit[SVIParams]]:
    """Fit raw SVI to every expiry of a chain at once, each slice on its own.

    Parameters
    ----------
    ks, ivs : sequences of array_like, one per expiry
        Log-moneyness ``ln(K/F)`` and market implied vols (decimal) of each slice.
    ts : sequence of float
        Times to expiry in years.
    weights : sequence of array_like, optional
        Non-negative weights of the squared vol errors (default 1).
    previous : sequence of SVIParams or None, optional
        Per slice, the warm start (refine from it only) or None (cold fit).

    Returns
    -------
    list of Fit[SVIParams]
        One per slice, as :func:`calibrate` would return it (a slice's failure is its
        own status; the others are unaffected).

    Raises
    ------
    ValueError
        If the sequences do not have one entry per slice (a caller's bug, not data).
    """
    n = len(ks)
    prev = list(previous) if previous is not None else [None] * n
    wts = list(weights) if weights is not None else [None] * n
    if not len(ivs) == len(ts) == len(prev) == len(wts) == n:
        raise ValueError("ks, ivs, ts, weights and previous must have one entry per slice")
    fits: list[Fit[SVIParams] | None] = [None] * n
    todo: list[int] = []
    cleaned: list[tuple[FloatArray, FloatArray, FloatArray]] = []
    for i in range(n):
        got = _clean(ks[i], ivs[i], ts[i], wts[i])
        if isinstance(got, str):
            fits[i] = Fit.failed(prev[i] or _NO_PARAMS, got, warm=prev[i] is not None)
        else:
            todo.append(i)
            cleaned.append(got)
    if todo:
        for i, fit in zip(todo, _fit(cleaned, [float(ts[i]) for i in todo],
                                     [prev[i] for i in todo], max_iter, tol), strict=True):
            fits[i] = fit
    return [f for f in fits if f is not None]


def _fit(cleaned: list[tuple[FloatArray, FloatArray, FloatArray]], ts: list[float],
         prev: list[SVIParams | None], max_iter: int, tol: float) -> list[Fit[SVIParams]]:
    chain = _pad(cleaned, ts)
    theta0 = np.empty((len(ts), 5))
    cold = [i for i, p in enumerate(prev) if p is None]
    for i, p in enumerate(prev):
        if p is not None:
            theta0[i] = _to_theta(p)
    if cold:
        theta0[cold] = _seed_grid(chain if len(cold) == len(prev) else chain._replace(
            k=chain.k[cold], iv=chain.iv[cold], t=chain.t[cold], sqrt_w=chain.sqrt_w[cold],
            valid=chain.valid[cold], n_valid=chain.n_valid[cold]))
    res = levenberg_marquardt(_residual_fn(chain), theta0, max_iter=max_iter, tol=tol)
    rmse = _rmse(chain, res.theta)
    fits: list[Fit[SVIParams]] = []
    for i, p in enumerate(prev):
        warm, it, nfev = p is not None, int(res.iterations[i]), int(res.nfev[i])
        if not np.isfinite(rmse[i]):
            fits.append(Fit.failed(p or _NO_PARAMS, "fit produced negative total variance",
                                   warm=warm, iterations=it, nfev=nfev))
            continue
        fits.append(Fit(params=_from_theta(res.theta[i]), rmse_vol=float(rmse[i]),
                        iterations=it, status="converged" if res.converged[i] else "max_iter",
                        nfev=nfev, warm=warm))
    return fits


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
    return calibrate_chain([k], [iv], [t], None if weights is None else [weights], [previous],
                           max_iter=max_iter, tol=tol)[0]
