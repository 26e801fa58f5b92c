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
vol, with logs of the positive parameters and ``atanh rho`` as free variables. It is
Levenberg–Marquardt with the analytic Jacobian: price gradients from the
characteristic function's own derivatives on nodes cached for the whole fit
(:mod:`streamer.core.models.heston_quadrature`), divided by each quote's Black vega.
The reported RMSE re-prices the fitted parameters with :func:`implied_vols`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.core import black76
from streamer.core.implied_vol import implied_vol
from streamer.core.models import heston_quadrature as hq
from streamer.core.models.batch_lm import levenberg_marquardt
from streamer.core.models.fit import Fit

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complexfloating[Any, Any]]

PANEL_NODES = hq.PANEL_NODES
_RHO_MAX = 0.999
_INV_SQRT_2PI = 0.3989422804014327


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


def _tuple(p: HestonParams) -> hq.Params:
    return (p.v0, p.kappa, p.theta, p.sigma, p.rho)


def log_characteristic(u: ComplexArray, t: FloatArray, p: HestonParams) -> ComplexArray:
    """``ln E[exp(i u ln(F_T / F))]``, little-Heston-trap form (no branch-cut jumps)."""
    return hq.log_cf(u, t, _tuple(p), gradient=False)[0]


def _expected_total_variance(t: FloatArray, p: HestonParams) -> FloatArray:
    """``E[int_0^t v_s ds]``: the Black control variate's total variance."""
    return hq.expected_total_variance(t, _tuple(p))


def _nodes(t: float, max_abs_x: float, p: HestonParams, var_cv: float
           ) -> tuple[FloatArray, FloatArray]:
    """Composite Gauss–Legendre nodes and weights in ``u`` for one expiry."""
    return hq.nodes(*hq.node_range(t, max_abs_x, _tuple(p), var_cv))


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
    seed = previous if previous is not None else _cold_seed(kk, tt, vv)
    objective = _VolObjective(kk, vv, tt, sqrt_w)
    res = levenberg_marquardt(objective, _to_x(seed)[None], max_iter=max(max_nfev // 2, 1),
                              tol=1e-12)
    params = _from_x(res.theta[0])
    nfev, iters = int(res.nfev[0]), int(res.iterations[0])
    err = objective.vols(res.theta) - vv
    if not np.isfinite(err).all():
        return Fit.failed(fallback, "model prices outside no-arbitrage bounds at some quotes",
                          warm=previous is not None, iterations=iters, nfev=nfev)
    return Fit(params=params, rmse_vol=float(np.sqrt(np.mean(err * err))), iterations=iters,
               status="converged" if res.converged[0] else "max_iter", nfev=nfev,
               warm=previous is not None)


class _VolObjective:
    """Weighted vol residuals and their Jacobian in the free variables (for batch_lm).

    Model vols are Black vols of the model prices; their derivatives are the price
    derivatives over the Black vega at the model vol. Puts are priced by parity, which
    is parameter-free, so they share the calls' derivatives.
    """

    def __init__(self, k: FloatArray, iv: FloatArray, t: FloatArray, sqrt_w: FloatArray
                 ) -> None:
        self.k, self.iv, self.t, self.sqrt_w = k, iv, t, sqrt_w
        self.pricer = hq.SurfacePricer(k, t)
        self.strike, self.is_call, self.sqrt_t = np.exp(k), k >= 0, np.sqrt(t)
        self.last: tuple[bytes, FloatArray] = (b"", np.empty(0))

    def _evaluate(self, x: FloatArray, gradient: bool) -> tuple[FloatArray, FloatArray | None]:
        # Trial steps may reach parameters where prices overflow: NaN vols, no warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            call, dcall = self.pricer.prices(_tuple(_from_x(x[0])), gradient=gradient)
            vol = implied_vol(np.where(self.is_call, call, call - 1.0 + self.strike), 1.0,
                              self.strike, self.t, self.is_call)
        self.last = (x.tobytes(), vol)
        return vol, dcall

    def vols(self, x: FloatArray) -> FloatArray:
        """Model vols at ``x`` (shape (1, 5)), reusing the last evaluation when it was there."""
        if self.last[0] == x.tobytes():
            return self.last[1]
        return self._evaluate(x, gradient=False)[0]

    def __call__(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        vol, dcall = self._evaluate(x, gradient=True)
        assert dcall is not None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            s = vol * self.sqrt_t
            vega = _INV_SQRT_2PI * np.exp(-0.5 * (-self.k / s + 0.5 * s) ** 2) * self.sqrt_t
            jac = dcall * (_dp_dx(x[0])[:, None] * self.sqrt_w / vega)
        ok = np.isfinite(vol) & np.isfinite(jac).all(axis=0)
        r = np.where(ok, vol - self.iv, 1.0) * self.sqrt_w
        return r[None], np.where(ok, jac, 0.0)[None]


def _dp_dx(x: FloatArray) -> FloatArray:
    """d(v0, kappa, theta, sigma, rho) / d(free variables) of :func:`_from_x`."""
    clipped = (x[:4] > -30.0) & (x[:4] < 6.0)
    out = np.empty(5)
    out[:4] = np.where(clipped, np.exp(np.clip(x[:4], -30.0, 6.0)), 0.0)
    out[4] = _RHO_MAX * (1.0 - np.tanh(x[4]) ** 2)
    return out
