"""Heston (1993) stochastic volatility: semi-analytic prices and whole-surface calibration.

Prices use Lewis's (2001) single-integral form for an undiscounted call on the forward,

    C = F - sqrt(F K) / pi * int_0^inf Re[exp(i u x) phi(u - i/2)] / (u^2 + 1/4) du,
    x = ln(F / K),

with ``phi`` the characteristic function of ``ln(F_T / F)`` in the "little Heston trap"
form of Albrecher, Mayer, Schoutens & Tistaert (2007), which has no branch-cut
discontinuity. The integral is mapped to ``(0, 1)`` by ``u = -ln(s) / c`` with ``c`` the
asymptotic decay rate of the integrand (Kahl & Jäckel 2005) and summed with fixed
Gauss–Legendre nodes, so every strike and expiry is priced in one vectorised pass.

Calibration fits the five parameters to a whole surface by least squares in implied
vol, with logs of the positive parameters and ``atanh rho`` as free variables.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares

from streamer.core import black76
from streamer.core.implied_vol import implied_vol
from streamer.core.models.fit import Fit

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complexfloating[Any, Any]]

PANEL_NODES = 16
_U_CAP = 1e5
_MAX_PANELS = 4000
_RHO_MAX = 0.999


class HestonParams(msgspec.Struct, frozen=True, kw_only=True):
    """Initial variance, mean reversion, long-run variance, vol of variance, correlation."""

    v0: float
    kappa: float
    theta: float
    sigma: float
    rho: float

    def as_dict(self) -> dict[str, float]:
        """Parameters by name, for the published surface."""
        return {"v0": self.v0, "kappa": self.kappa, "theta": self.theta,
                "sigma": self.sigma, "rho": self.rho}

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> HestonParams:
        """Inverse of :meth:`as_dict`."""
        return cls(v0=d["v0"], kappa=d["kappa"], theta=d["theta"], sigma=d["sigma"],
                   rho=d["rho"])

    def feller_satisfied(self) -> bool:
        """``2 kappa theta >= sigma^2``: the variance never reaches zero."""
        return 2.0 * self.kappa * self.theta >= self.sigma * self.sigma


@cache
def _legendre(n: int) -> tuple[FloatArray, FloatArray]:
    """Gauss–Legendre nodes and weights on (0, 1)."""
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (x + 1.0), 0.5 * w


def log_characteristic(u: ComplexArray, t: FloatArray, p: HestonParams) -> ComplexArray:
    """``ln E[exp(i u ln(F_T / F))]``, little-Heston-trap form (no branch-cut jumps)."""
    kappa, theta, sigma, rho = p.kappa, p.theta, p.sigma, p.rho
    beta = kappa - 1j * rho * sigma * u
    d = np.sqrt(beta * beta + sigma * sigma * (1j * u + u * u))
    g = (beta - d) / (beta + d)
    e = np.exp(-d * t)
    c = kappa * theta / sigma**2 * ((beta - d) * t - 2.0 * np.log((1.0 - g * e) / (1.0 - g)))
    dd = (beta - d) / sigma**2 * (1.0 - e) / (1.0 - g * e)
    result: ComplexArray = c + dd * p.v0
    return result


def _expected_total_variance(t: FloatArray, p: HestonParams) -> FloatArray:
    """``E[int_0^t v_s ds]``: the Black control variate's total variance."""
    kt = np.maximum(p.kappa * t, 1e-12)
    result: FloatArray = p.theta * t + (p.v0 - p.theta) * -np.expm1(-kt) / kt * t
    return result


def _nodes(t: float, max_abs_x: float, p: HestonParams, var_cv: float
           ) -> tuple[FloatArray, FloatArray]:
    """Composite Gauss–Legendre nodes and weights in ``u`` for one expiry.

    The range ends where both characteristic functions are below 1e-17 of their value
    at zero: the Heston one decays like ``exp(-c u)`` with ``c`` from Kahl & Jäckel
    (2005, eq. 40), the Black one like ``exp(-var u^2 / 2)``. Panels are short enough
    to resolve the strike oscillation ``exp(i u x)``.
    """
    c_inf = max(np.sqrt(1.0 - p.rho * p.rho) / p.sigma * (p.v0 + p.kappa * p.theta * t), 1e-12)
    u_max = min(max(40.0 / c_inf, np.sqrt(80.0 / max(var_cv, 1e-300))), _U_CAP)
    panels = int(np.clip(np.ceil(u_max * max(max_abs_x, 0.25) / np.pi), 8, _MAX_PANELS))
    s, w = _legendre(PANEL_NODES)
    edges = np.linspace(0.0, u_max, panels + 1)
    width = np.diff(edges)[:, None]
    u = (edges[:-1, None] + width * s).ravel()
    return u, (width * w).ravel()


def call_price(forward: npt.ArrayLike, strike: npt.ArrayLike, t: npt.ArrayLike,
               params: HestonParams) -> FloatArray:
    """Undiscounted call prices on the forward; broadcasts ``forward``, ``strike``, ``t``.

    The Lewis integral is taken of the difference between a Black and the Heston
    characteristic function with the same expected variance (a control variate, as in
    Andersen & Piterbarg 2010, section 8.4); the Black price is added back in closed
    form, so the integral only carries the (small, smooth) smile correction.
    """
    f, k, tt = np.broadcast_arrays(np.asarray(forward, np.float64),
                                   np.asarray(strike, np.float64), np.asarray(t, np.float64))
    shape = f.shape
    f, k, tt = f.ravel(), k.ravel(), tt.ravel()
    x = np.log(f / k)
    var_cv = _expected_total_variance(tt, params)
    integral = np.empty_like(x)
    for t_i in np.unique(tt):
        at = tt == t_i
        v_i = float(var_cv[at][0])
        u, w = _nodes(float(t_i), float(np.max(np.abs(x[at]))), params, v_i)
        heston = np.exp(log_characteristic(u - 0.5j, np.full_like(u, t_i), params))
        kernel = (np.exp(-0.5 * v_i * (u * u + 0.25)) - heston) * (w / (u * u + 0.25))
        integral[at] = np.real(np.exp(1j * np.outer(x[at], u)) @ kernel)
    black = black76.price(f, k, tt, np.sqrt(var_cv / np.maximum(tt, 1e-300)), True)
    price: FloatArray = (black + np.sqrt(f * k) / np.pi * integral).reshape(shape)
    return price


def put_price(forward: npt.ArrayLike, strike: npt.ArrayLike, t: npt.ArrayLike,
              params: HestonParams) -> FloatArray:
    """Undiscounted put prices by put-call parity."""
    result: FloatArray = (call_price(forward, strike, t, params)
                          - np.asarray(forward, np.float64) + np.asarray(strike, np.float64))
    return result


def implied_vols(k: npt.ArrayLike, t: npt.ArrayLike, params: HestonParams) -> FloatArray:
    """Black implied vols of Heston prices at log-moneyness ``k = ln(K/F)`` (F = 1).

    Out-of-the-money options are inverted (calls for ``k > 0``), where the time
    value is the whole price and the inversion is best conditioned.
    """
    kk, tt = np.broadcast_arrays(np.asarray(k, np.float64), np.asarray(t, np.float64))
    strike = np.exp(kk)
    call = call_price(1.0, strike, tt, params)
    is_call = kk >= 0
    price = np.where(is_call, call, call - 1.0 + strike)
    return implied_vol(price, 1.0, strike, tt, is_call)


def _to_x(p: HestonParams) -> FloatArray:
    return np.array([np.log(p.v0), np.log(p.kappa), np.log(p.theta), np.log(p.sigma),
                     np.arctanh(np.clip(p.rho / _RHO_MAX, -0.999999, 0.999999))])


def _from_x(x: FloatArray) -> HestonParams:
    v0, kappa, theta, sigma = np.exp(np.clip(x[:4], -30.0, 6.0))
    return HestonParams(v0=float(v0), kappa=float(kappa), theta=float(theta),
                        sigma=float(sigma), rho=float(np.tanh(x[4]) * _RHO_MAX))


def _cold_seed(k: FloatArray, t: FloatArray, iv: FloatArray) -> HestonParams:
    """ATM variance of the shortest and longest expiries as ``v0`` and ``theta``."""
    near = np.abs(k) < max(0.1, float(np.quantile(np.abs(k), 0.2)))
    atm = np.where(near, iv, np.nan)
    t_short, t_long = float(np.min(t)), float(np.max(t))
    v_short = float(np.nanmedian(np.where(t == t_short, atm, np.nan)) ** 2)
    v_long = float(np.nanmedian(np.where(t == t_long, atm, np.nan)) ** 2)
    v0 = v_short if np.isfinite(v_short) else float(np.median(iv)) ** 2
    theta = v_long if np.isfinite(v_long) else v0
    return HestonParams(v0=v0, kappa=2.0, theta=theta, sigma=1.0, rho=-0.3)


def calibrate(k: Sequence[npt.ArrayLike], iv: Sequence[npt.ArrayLike], t: Sequence[float],
              weights: Sequence[npt.ArrayLike] | None = None,
              previous: HestonParams | None = None, *, max_nfev: int = 400
              ) -> Fit[HestonParams]:
    """Fit one parameter set to every expiry of a surface.

    Parameters
    ----------
    k, iv : sequences of array_like, one per expiry
        Log-moneyness ``ln(K/F)`` and market implied vols (decimal).
    t : sequence of float
        Times to expiry in years, one per expiry.
    weights : sequence of array_like, optional
        Non-negative weights of the squared vol errors (default 1).
    previous : HestonParams, optional
        Warm start: refine from these parameters only.
    """
    kk = np.concatenate([np.asarray(a, np.float64).ravel() for a in k]) if k else np.empty(0)
    vv = np.concatenate([np.asarray(a, np.float64).ravel() for a in iv]) if iv else np.empty(0)
    tt = np.concatenate([np.full(np.asarray(a).size, ti, np.float64)
                         for a, ti in zip(k, t, strict=True)]) if k else np.empty(0)
    ww = (np.concatenate([np.asarray(a, np.float64).ravel() for a in weights])
          if weights is not None else np.ones_like(kk))
    fallback = previous or HestonParams(v0=0.0, kappa=0.0, theta=0.0, sigma=0.0, rho=0.0)
    if not (kk.shape == vv.shape == tt.shape == ww.shape):
        return Fit.failed(fallback, "k, iv, t and weights differ in size",
                          warm=previous is not None)
    good = (np.isfinite(kk) & np.isfinite(vv) & (vv > 0) & np.isfinite(tt) & (tt > 0)
            & np.isfinite(ww) & (ww >= 0))
    if good.sum() < 5:
        return Fit.failed(fallback, f"need >= 5 valid points, got {int(good.sum())}",
                          warm=previous is not None)
    kk, vv, tt, sqrt_w = kk[good], vv[good], tt[good], np.sqrt(ww[good])

    def residuals(x: FloatArray) -> FloatArray:
        # Trial steps may reach parameters where prices overflow: those residuals are
        # penalised below rather than warned about.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            model = implied_vols(kk, tt, _from_x(x))
        r: FloatArray = np.where(np.isfinite(model), model - vv, 1.0) * sqrt_w
        return r

    seed = previous if previous is not None else _cold_seed(kk, tt, vv)
    sol = least_squares(residuals, _to_x(seed), method="lm", max_nfev=max_nfev,
                        xtol=1e-10, ftol=1e-12)
    params = _from_x(sol.x)
    err = implied_vols(kk, tt, params) - vv
    rmse = float(np.sqrt(np.nanmean(err * err))) if np.isfinite(err).any() else np.nan
    if not np.isfinite(rmse) or not np.isfinite(err).all():
        return Fit.failed(fallback, "model prices outside no-arbitrage bounds at some quotes",
                          warm=previous is not None, iterations=int(sol.nfev), nfev=int(sol.nfev))
    return Fit(params=params, rmse_vol=rmse, iterations=int(sol.nfev),
               status="converged" if sol.status > 0 else "max_iter",
               message=str(sol.message), nfev=int(sol.nfev), warm=previous is not None)
