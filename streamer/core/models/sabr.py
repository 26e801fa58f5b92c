"""SABR smiles (Hagan, Kumar, Lesniewski & Woodward 2002): lognormal vol expansion and fit.

The implied Black vol follows Hagan et al. (2002), "Managing smile risk", eq. (2.17a),
arranged as QuantLib's ``sabrVolatility`` arranges it (including its series for
``z / x(z)`` near the money), so the two agree to rounding.

Calibration fits ``alpha``, ``rho`` and ``nu`` at a fixed ``beta`` (``beta = 1``,
lognormal, is the usual choice for coin-margined crypto options) by least squares in
vol, with ``ln alpha``, ``atanh rho`` and ``ln nu`` as the free variables so the
parameters stay admissible.
"""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares

from streamer.core.models.fit import Fit

FloatArray = npt.NDArray[np.float64]

MIN_POINTS = 4
_RHO_MAX = 0.999
_Z_SERIES = 10.0 * np.finfo(np.float64).eps  # QuantLib's switch to the series for z/x(z)


class SABRParams(msgspec.Struct, frozen=True, kw_only=True):
    """SABR parameters of one expiry."""

    alpha: float
    beta: float
    rho: float
    nu: float

    def as_dict(self) -> dict[str, float]:
        """Parameters by name, for the published surface."""
        return {"alpha": self.alpha, "beta": self.beta, "rho": self.rho, "nu": self.nu}

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> SABRParams:
        """Inverse of :meth:`as_dict`."""
        return cls(alpha=d["alpha"], beta=d["beta"], rho=d["rho"], nu=d["nu"])


def implied_vol(forward: npt.ArrayLike, strike: npt.ArrayLike, t: npt.ArrayLike,
                params: SABRParams) -> FloatArray:
    """Hagan's lognormal (Black) implied vol; NaN where the expansion breaks down."""
    f = np.asarray(forward, np.float64)
    k = np.asarray(strike, np.float64)
    tt = np.asarray(t, np.float64)
    alpha, beta, rho, nu = params.alpha, params.beta, params.rho, params.nu
    one_minus_beta = 1.0 - beta
    a = (f * k) ** one_minus_beta
    sqrt_a = np.sqrt(a)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        eps = (f - k) / k
        log_m = np.where(np.isclose(f, k, rtol=4 * np.finfo(np.float64).eps, atol=0.0),
                         eps - 0.5 * eps * eps, np.log(f / k))
        z = (nu / alpha) * sqrt_a * log_m
        b = 1.0 - 2.0 * rho * z + z * z
        c = one_minus_beta**2 * log_m * log_m
        xx = np.log((np.sqrt(b) + z - rho) / (1.0 - rho))
        d_ = sqrt_a * (1.0 + c / 24.0 + c * c / 1920.0)
        d = 1.0 + tt * (one_minus_beta**2 * alpha * alpha / (24.0 * a)
                        + 0.25 * rho * beta * nu * alpha / sqrt_a
                        + (2.0 - 3.0 * rho * rho) * nu * nu / 24.0)
        series = 1.0 - 0.5 * rho * z - (3.0 * rho * rho - 2.0) * z * z / 12.0
        multiplier = np.where(np.abs(z * z) > _Z_SERIES, z / xx, series)
        vol: FloatArray = (alpha / d_) * multiplier * d
    return np.where(np.isfinite(vol) & (vol > 0), vol, np.nan)


def _to_x(p: SABRParams) -> FloatArray:
    return np.array([np.log(p.alpha), np.arctanh(np.clip(p.rho, -_RHO_MAX, _RHO_MAX)),
                     np.log(p.nu)])


def _from_x(x: FloatArray, beta: float) -> SABRParams:
    return SABRParams(alpha=float(np.exp(x[0])), beta=beta,
                      rho=float(np.tanh(x[1]) * _RHO_MAX), nu=float(np.exp(x[2])))


def _cold_seeds(forward: float, k: FloatArray, iv: FloatArray, beta: float) -> list[SABRParams]:
    """A few starts around the ATM level: alpha from the nearest-ATM vol."""
    atm_vol = float(iv[np.argmin(np.abs(np.log(k / forward)))])
    alpha = atm_vol * forward ** (1.0 - beta)
    return [SABRParams(alpha=alpha, beta=beta, rho=rho, nu=nu)
            for rho in (-0.4, 0.0, 0.4) for nu in (0.5, 1.5)]


def calibrate(forward: float, strike: npt.ArrayLike, iv: npt.ArrayLike, t: float,
              weights: npt.ArrayLike | None = None, previous: SABRParams | None = None, *,
              beta: float = 1.0, max_nfev: int = 200) -> Fit[SABRParams]:
    """Fit ``alpha, rho, nu`` (``beta`` fixed) to one expiry's market vols.

    Parameters
    ----------
    forward : float
        The expiry's forward.
    strike, iv : array_like, shape (n,)
        Strikes and market implied vols (decimal).
    t : float
        Time to expiry in years.
    weights : array_like, shape (n,), optional
        Non-negative weights of the squared vol errors (default 1).
    previous : SABRParams, optional
        Warm start: refine from these parameters only (its ``beta`` is kept).
    """
    kk = np.asarray(strike, np.float64).ravel()
    vv = np.asarray(iv, np.float64).ravel()
    ww = np.ones_like(kk) if weights is None else np.asarray(weights, np.float64).ravel()
    if previous is not None:
        beta = previous.beta
    fallback = previous or SABRParams(alpha=0.0, beta=beta, rho=0.0, nu=0.0)
    good = np.isfinite(kk) & (kk > 0) & np.isfinite(vv) & (vv > 0) & np.isfinite(ww) & (ww >= 0)
    if not (np.isfinite(t) and t > 0 and np.isfinite(forward) and forward > 0):
        return Fit.failed(fallback, f"bad forward {forward!r} or time {t!r}",
                          warm=previous is not None)
    if good.sum() < MIN_POINTS:
        return Fit.failed(fallback, f"need >= {MIN_POINTS} valid points, got {int(good.sum())}",
                          warm=previous is not None)
    kk, vv, sqrt_w = kk[good], vv[good], np.sqrt(ww[good])

    def residuals(x: FloatArray) -> FloatArray:
        model = implied_vol(forward, kk, t, _from_x(x, beta))
        r: FloatArray = np.where(np.isfinite(model), model - vv, 1.0) * sqrt_w
        return r

    seeds = [previous] if previous is not None else _cold_seeds(forward, kk, vv, beta)
    best = None
    nfev = 0
    for seed in seeds:
        sol = least_squares(residuals, _to_x(seed), method="lm", max_nfev=max_nfev,
                            xtol=1e-12, ftol=1e-12)
        nfev += int(sol.nfev)
        if best is None or sol.cost < best.cost:
            best = sol
    assert best is not None
    params = _from_x(best.x, beta)
    err = implied_vol(forward, kk, t, params) - vv
    rmse = float(np.sqrt(np.mean(err * err)))
    if not np.isfinite(rmse):
        return Fit.failed(fallback, "expansion undefined at some strikes",
                          warm=previous is not None, iterations=nfev, nfev=nfev)
    return Fit(params=params, rmse_vol=rmse, iterations=nfev,
               status="converged" if best.status > 0 else "max_iter",
               message=str(best.message), nfev=nfev, warm=previous is not None)
