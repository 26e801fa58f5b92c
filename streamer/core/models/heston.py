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
vol, inside :data:`BOUNDS`: each free variable maps onto its range by a logistic (in
logs for the positive parameters), which has no flat clip where a parameter could get
stuck (a clip of v0 at exp(-30) once held a warm start there while kappa drifted to
200). It is
Levenberg–Marquardt with the analytic Jacobian: price gradients from the
characteristic function's own derivatives on nodes cached for the whole fit
(:mod:`streamer.core.models.heston_quadrature`), divided by each quote's Black vega.
The reported RMSE re-prices the fitted parameters with :func:`implied_vols`.
A trial step whose quadrature would be over the pricer's work caps is rejected (NaN);
``should_stop`` ends a fit early at its best point so far (the caller's time budget).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt

from streamer.core import black76
from streamer.core.implied_vol import implied_vol
from streamer.core.lazy_scipy import cubic_spline
from streamer.core.models import heston_quadrature as hq
from streamer.core.models.batch_lm import levenberg_marquardt
from streamer.core.models.fit import Fit
from streamer.core.models.protocol import VarianceFromVol
from streamer.core.params import NamedFloats

if TYPE_CHECKING:
    from scipy.interpolate import CubicSpline

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complexfloating[Any, Any]]

PANEL_NODES = hq.PANEL_NODES
#: Calibration bounds a desk accepts, (low, high) of v0, kappa, theta, sigma, rho: vols of
#: 3%-250% for v0 and theta, mean reversion up to 20 a year, vol of variance up to 10
#: (Feller is not required), |rho| <= 0.98.
BOUNDS: dict[str, tuple[float, float]] = {
    "v0": (1e-3, 6.25), "kappa": (1e-2, 20.0), "theta": (1e-3, 6.25),
    "sigma": (1e-2, 10.0), "rho": (-0.98, 0.98)}
_LO = np.array([b[0] for b in BOUNDS.values()])
_HI = np.array([b[1] for b in BOUNDS.values()])
_LOG_LO, _LOG_HI = np.log(_LO[:4]), np.log(_HI[:4])
#: A (warm) start lies within 2% of each range's ends: logistic(4) = 0.982.
_X_START = 4.0
_INV_SQRT_2PI = 0.3989422804014327


class HestonParams(NamedFloats, frozen=True, kw_only=True):
    """Initial variance, mean reversion, long-run variance, vol of variance, correlation."""

    v0: float
    kappa: float
    theta: float
    sigma: float
    rho: float


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
    """Free variables of ``p``, no further out than ``_X_START`` (a start at a bound,
    where the logistic is flat, would barely move)."""
    values = np.array([p.v0, p.kappa, p.theta, p.sigma, p.rho], np.float64)
    inner = np.clip(np.nan_to_num(values, nan=1.0), _LO * (1 + 1e-12), _HI * (1 - 1e-12))
    share = np.empty(5)
    share[:4] = (np.log(inner[:4]) - _LOG_LO) / (_LOG_HI - _LOG_LO)
    share[4] = (inner[4] - _LO[4]) / (_HI[4] - _LO[4])
    share = np.clip(share, 1e-12, 1.0 - 1e-12)
    result: FloatArray = np.clip(np.log(share / (1.0 - share)), -_X_START, _X_START)
    return result


def _logistic(x: FloatArray) -> FloatArray:
    result: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * x))
    return result


def _from_x(x: FloatArray) -> HestonParams:
    """Parameters of the free variables: a logistic onto each bound's range (in logs for
    the positive ones), smooth with a non-zero derivative everywhere (no clip)."""
    s = _logistic(np.asarray(x, np.float64))
    v0, kappa, theta, sigma = np.clip(np.exp(_LOG_LO + (_LOG_HI - _LOG_LO) * s[:4]),
                                      _LO[:4], _HI[:4])  # the clip only rounds
    rho = _LO[4] + (_HI[4] - _LO[4]) * s[4]
    return HestonParams(v0=float(v0), kappa=float(kappa), theta=float(theta),
                        sigma=float(sigma), rho=float(rho))


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
              previous: HestonParams | None = None, *, max_nfev: int = 200,
              should_stop: Callable[[], bool] | None = None) -> Fit[HestonParams]:
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
    max_nfev : int
        Most evaluations of the residuals and their Jacobian.
    should_stop : callable, optional
        Asked before each evaluation; once it returns True the fit ends at its best
        point so far (status ``max_iter``, message ``stopped``).
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
    objective = _VolObjective(kk, vv, tt, sqrt_w, should_stop)
    stopped = False
    try:
        res = levenberg_marquardt(objective, _to_x(seed)[None],
                                  max_iter=max(max_nfev // 2, 1), tol=1e-12)
        x, nfev, iters, converged = (res.theta[0], int(res.nfev[0]), int(res.iterations[0]),
                                     bool(res.converged[0]))
    except _Stopped:
        stopped, nfev, iters, converged = True, objective.calls, 0, False
        x = objective.best[1] if np.isfinite(objective.best[0]) else _to_x(seed)
    params = _from_x(x)
    err = objective.vols(x[None]) - vv
    if not np.isfinite(err).all():
        return Fit.failed(fallback, "model prices outside no-arbitrage bounds at some quotes",
                          warm=previous is not None, iterations=iters, nfev=nfev)
    return Fit(params=params, rmse_vol=float(np.sqrt(np.mean(err * err))), iterations=iters,
               status="converged" if converged else "max_iter", nfev=nfev,
               message="stopped" if stopped else "", warm=previous is not None)


class _Stopped(Exception):
    """The caller's ``should_stop`` said so."""


class _VolObjective:
    """Weighted vol residuals and their Jacobian in the free variables (for batch_lm).

    Model vols are Black vols of the model prices; their derivatives are the price
    derivatives over the Black vega at the model vol. Puts are priced by parity, which
    is parameter-free, so they share the calls' derivatives.
    """

    def __init__(self, k: FloatArray, iv: FloatArray, t: FloatArray, sqrt_w: FloatArray,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.k, self.iv, self.t, self.sqrt_w = k, iv, t, sqrt_w
        self.pricer = hq.SurfacePricer(k, t)
        self.strike, self.is_call, self.sqrt_t = np.exp(k), k >= 0, np.sqrt(t)
        self.last: tuple[bytes, FloatArray] = (b"", np.empty(0))
        self.should_stop = should_stop
        self.calls = 0
        #: lowest cost evaluated so far and its free variables (where a stop ends)
        self.best: tuple[float, FloatArray] = (np.inf, np.empty(5))

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
        if self.calls and self.should_stop is not None and self.should_stop():
            raise _Stopped
        self.calls += 1
        vol, dcall = self._evaluate(x, gradient=True)
        assert dcall is not None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            s = vol * self.sqrt_t
            vega = _INV_SQRT_2PI * np.exp(-0.5 * (-self.k / s + 0.5 * s) ** 2) * self.sqrt_t
            jac = dcall * (_dp_dx(x[0])[:, None] * self.sqrt_w / vega)
        ok = np.isfinite(vol) & np.isfinite(jac).all(axis=0)
        r = np.where(ok, vol - self.iv, 1.0) * self.sqrt_w
        cost = float(r @ r) if ok.all() else np.inf
        if cost < self.best[0]:
            self.best = (cost, x[0].copy())
        return r[None], np.where(ok, jac, 0.0)[None]


def _dp_dx(x: FloatArray) -> FloatArray:
    """d(v0, kappa, theta, sigma, rho) / d(free variables) of :func:`_from_x`."""
    s = _logistic(np.asarray(x, np.float64))
    ds = s * (1.0 - s)
    out = np.empty(5)
    out[:4] = np.exp(_LOG_LO + (_LOG_HI - _LOG_LO) * s[:4]) * (_LOG_HI - _LOG_LO) * ds[:4]
    out[4] = (_HI[4] - _LO[4]) * ds[4]
    return out


@dataclass(frozen=True)
class HestonModel(VarianceFromVol[HestonParams]):
    """One Heston parameter set for the whole surface; every expiry publishes it.

    ``grid_spline``: dense grids read a spline through one exact pass (see :meth:`vol`);
    :meth:`exact` is the same model without it, as consumers of the published
    parameters evaluate it.
    """

    name: str = "heston"
    is_surface = True
    one_parameter_set = True
    costly_vol = True  # each call prices by quadrature: evaluate on grids, not points
    #: Quotes an expiry needs to join the fit, whatever calibration.min_quotes says: on the
    #: real hourly chains, 5-quote expiries hours away joining the one parameter set moved
    #: the worst published ATM error from 8.6 to 15.3 vol points.
    min_slice_quotes: int = 6
    grid_spline: bool = True

    def calibrate_surface(self, k: Sequence[FloatArray], iv: Sequence[FloatArray],
                          t: Sequence[float], weights: Sequence[FloatArray],
                          previous: HestonParams | None, *,
                          bid_iv: Sequence[FloatArray] | None = None,
                          ask_iv: Sequence[FloatArray] | None = None,
                          should_stop: Callable[[], bool] | None = None) -> Fit[HestonParams]:
        return calibrate(k, iv, t, weights, previous, should_stop=should_stop)

    def slice_params(self, params: HestonParams, index: int) -> HestonParams:
        return params

    def surface_dict(self, params: HestonParams) -> dict[str, float]:
        return params.as_dict()

    def surface_from_dict(self, d: dict[str, float]) -> HestonParams:
        return HestonParams.from_dict(d)

    def exact(self) -> Self:
        return replace(self, grid_spline=False)

    def vol(self, k: FloatArray, t: float, params: HestonParams) -> FloatArray:
        """Exact for a few points (a slice's quotes); a dense grid (butterfly margins,
        jump wings, tenors: hundreds of points, each a row of the quadrature) reads a
        spline through one exact pass over :data:`HESTON_GRID_POINTS` points, cached per
        expiry and parameters; points beyond that grid are priced exactly."""
        kk = np.asarray(k, np.float64)
        if not self.grid_spline:
            return np.empty(kk.shape) if kk.size == 0 else implied_vols(kk, t, params)
        if kk.size <= HESTON_GRID_POINTS:
            return implied_vols(kk, t, params)
        lo, hi, spline = _smile_spline(float(t), params.v0, params.kappa, params.theta,
                                       params.sigma, params.rho)
        inside = (kk >= lo) & (kk <= hi)
        if spline is None or not inside.any():
            return implied_vols(kk, t, params)
        out = np.asarray(spline(np.clip(kk, lo, hi)), np.float64)
        if not inside.all():
            out[~inside] = implied_vols(kk[~inside], t, params)
        return out

    def from_dict(self, d: dict[str, float]) -> HestonParams:
        return HestonParams.from_dict(d)


#: Points of the exact pass behind a Heston smile's spline (six ATM total-vol widths each
#: side: the spline's error there is below 1e-6 vol).
HESTON_GRID_POINTS = 121


@lru_cache(maxsize=256)
def _smile_spline(t: float, v0: float, kappa: float, theta: float, sigma: float, rho: float
                  ) -> tuple[float, float, CubicSpline | None]:
    """A cubic spline of one Heston expiry's smile in ``k`` and its range (None when the
    model has no finite vol somewhere on it)."""
    p = HestonParams(v0=v0, kappa=kappa, theta=theta, sigma=sigma, rho=rho)
    atm = float(implied_vols(np.zeros(1), t, p)[0]) * np.sqrt(t)
    half = 6.0 * max(atm, 0.01) if np.isfinite(atm) else 1.0
    grid = np.linspace(-half, half, HESTON_GRID_POINTS)
    vols = implied_vols(grid, t, p)
    if not np.all(np.isfinite(vols)):
        return -half, half, None
    return -half, half, cubic_spline(grid, vols)
