"""SSVI surfaces (Gatheral & Jacquier 2014), free of static arbitrage by construction.

Total variance at log-moneyness ``k`` and ATM total variance ``theta_t``:

    w(k, theta) = theta / 2 * (1 + rho phi k + sqrt((phi k + rho)^2 + 1 - rho^2)),
    phi(theta) = eta / (theta^gamma (1 + theta)^(1 - gamma))     (power law, eq. 4.5)

The surface is free of calendar arbitrage when ``theta_t`` is non-decreasing in ``t``
(Theorem 4.1 with the power law's ``d(theta phi)/d theta >= 0`` for ``gamma <= 1``), and
of butterfly arbitrage when ``eta (1 + |rho|) <= 2`` and ``0 < gamma <= 1/2``
(Remark 4.4 / Corollary 4.1 of the paper). Calibration enforces all three through
its parametrisation: ``theta`` as a cumulative sum of positive increments,
``eta = 2 / (1 + |rho|) * logistic(.)`` and ``gamma = logistic(.) / 2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares

from streamer.core.models.fit import Fit

FloatArray = npt.NDArray[np.float64]

_RHO_MAX = 0.999
_EPS_THETA = 1e-10


class SSVIParams(msgspec.Struct, frozen=True, kw_only=True):
    """Surface-wide ``rho, eta, gamma`` and the ATM total variance of each expiry."""

    rho: float
    eta: float
    gamma: float
    t: tuple[float, ...]
    theta: tuple[float, ...]

    def surface_dict(self) -> dict[str, float]:
        """The surface-wide parameters, for the published surface."""
        return {"rho": self.rho, "eta": self.eta, "gamma": self.gamma}

    def slice(self, i: int) -> SSVISlice:
        """The smile of expiry ``i`` as a stand-alone slice."""
        curvature = float(phi(self.theta[i], self.eta, self.gamma))
        return SSVISlice(theta=self.theta[i], rho=self.rho, phi=curvature)


class SSVISlice(msgspec.Struct, frozen=True, kw_only=True):
    """One expiry of an SSVI surface: ``theta``, ``rho`` and ``phi(theta)``."""

    theta: float
    rho: float
    phi: float

    def as_dict(self) -> dict[str, float]:
        """Parameters by name, for the published slice."""
        return {"theta": self.theta, "rho": self.rho, "phi": self.phi}

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> SSVISlice:
        """Inverse of :meth:`as_dict`."""
        return cls(theta=d["theta"], rho=d["rho"], phi=d["phi"])


def phi(theta: npt.ArrayLike, eta: float, gamma: float) -> FloatArray:
    """The power-law curvature function of Gatheral & Jacquier (2014), eq. (4.5)."""
    th = np.asarray(theta, np.float64)
    result: FloatArray = eta / (th**gamma * (1.0 + th) ** (1.0 - gamma))
    return result


def slice_total_variance(k: npt.ArrayLike, s: SSVISlice) -> FloatArray:
    """``w(k)`` of one SSVI slice."""
    pk = s.phi * np.asarray(k, np.float64)
    result: FloatArray = 0.5 * s.theta * (1.0 + s.rho * pk + np.sqrt(
        (pk + s.rho) ** 2 + 1.0 - s.rho * s.rho))
    return result


def slice_derivatives(k: npt.ArrayLike, s: SSVISlice) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``w, dw/dk, d2w/dk2`` of one slice, for Durrleman's condition."""
    kk = np.asarray(k, np.float64)
    y = s.phi * kk + s.rho
    root = np.sqrt(y * y + 1.0 - s.rho * s.rho)
    w = 0.5 * s.theta * (1.0 + s.rho * s.phi * kk + root)
    dw = 0.5 * s.theta * s.phi * (s.rho + y / root)
    d2w = 0.5 * s.theta * s.phi * s.phi * (1.0 - s.rho * s.rho) / root**3
    return w, dw, d2w


def total_variance(k: npt.ArrayLike, i: int, params: SSVIParams) -> FloatArray:
    """``w(k)`` of expiry ``i`` of the surface."""
    return slice_total_variance(k, params.slice(i))


def is_arbitrage_free(params: SSVIParams) -> bool:
    """The sufficient conditions of Gatheral & Jacquier (2014) hold (see module doc)."""
    theta = np.asarray(params.theta)
    monotone = bool(np.all(np.diff(theta) >= -1e-15)) and bool(np.all(theta > 0))
    return (monotone and params.eta * (1.0 + abs(params.rho)) <= 2.0 + 1e-12
            and 0.0 < params.gamma <= 0.5 and abs(params.rho) < 1.0)


def _logistic(x: FloatArray | float) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(x))), np.float64)


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1.0 - 1e-9)
    return float(np.log(p / (1.0 - p)))


def _from_x(x: FloatArray, t: tuple[float, ...]) -> SSVIParams:
    rho = float(np.tanh(x[0]) * _RHO_MAX)
    eta = float(2.0 / (1.0 + abs(rho)) * _logistic(x[1]))
    gamma = float(0.5 * _logistic(x[2]))
    theta = np.cumsum(np.exp(x[3:])) + _EPS_THETA
    return SSVIParams(rho=rho, eta=eta, gamma=gamma, t=t, theta=tuple(float(v) for v in theta))


def _to_x(p: SSVIParams) -> FloatArray:
    theta = np.maximum.accumulate(np.maximum(np.asarray(p.theta) - _EPS_THETA, 1e-12))
    steps = np.maximum(np.diff(theta, prepend=0.0), 1e-12 * max(float(theta[-1]), 1e-12))
    rho = float(np.clip(p.rho / _RHO_MAX, -0.999999, 0.999999))
    eta_share = p.eta * (1.0 + abs(p.rho)) / 2.0
    return np.concatenate([[np.arctanh(rho), _logit(eta_share), _logit(2.0 * p.gamma)],
                           np.log(steps)])


def _atm_total_variance(k: FloatArray, iv: FloatArray, t: float) -> float:
    """Market total variance at ``k = 0`` by linear interpolation of the nearest quotes."""
    order = np.argsort(k)
    ks, vs = k[order], iv[order]
    return float(np.interp(0.0, ks, vs)) ** 2 * t


def _seed(ks: list[FloatArray], ivs: list[FloatArray], t: tuple[float, ...],
          previous: SSVIParams | None) -> SSVIParams:
    atm = np.array([_atm_total_variance(k, v, ti) for k, v, ti in zip(ks, ivs, t, strict=True)])
    theta = np.maximum.accumulate(np.maximum(atm, 1e-8))
    if previous is not None:
        return SSVIParams(rho=previous.rho, eta=previous.eta, gamma=previous.gamma, t=t,
                          theta=tuple(float(v) for v in theta))
    return SSVIParams(rho=-0.2, eta=1.0, gamma=0.4, t=t, theta=tuple(float(v) for v in theta))


def calibrate(k: Sequence[npt.ArrayLike], iv: Sequence[npt.ArrayLike], t: Sequence[float],
              weights: Sequence[npt.ArrayLike] | None = None,
              previous: SSVIParams | None = None, *, max_nfev: int = 400
              ) -> Fit[SSVIParams]:
    """Fit an arbitrage-free SSVI surface to every expiry at once.

    Parameters
    ----------
    k, iv : sequences of array_like, one per expiry, expiries ascending in ``t``
        Log-moneyness ``ln(K/F)`` and market implied vols (decimal).
    t : sequence of float
        Times to expiry in years, strictly ascending.
    weights : sequence of array_like, optional
        Non-negative weights of the squared vol errors (default 1).
    previous : SSVIParams, optional
        Warm start for ``rho, eta, gamma``; ``theta`` re-seeds from the market ATM
        variance of each expiry (expiries come and go between fits).
    """
    tt = tuple(float(x) for x in t)
    ks = [np.asarray(a, np.float64).ravel() for a in k]
    vs = [np.asarray(a, np.float64).ravel() for a in iv]
    ws = ([np.asarray(a, np.float64).ravel() for a in weights] if weights is not None
          else [np.ones_like(a) for a in ks])
    fallback = previous or SSVIParams(rho=0.0, eta=0.0, gamma=0.0, t=tt, theta=(0.0,) * len(tt))
    fail = _check_inputs(ks, vs, ws, tt)
    if fail:
        return Fit.failed(fallback, fail, warm=previous is not None)
    goods = [np.isfinite(a) & np.isfinite(b) & (b > 0) & np.isfinite(c) & (c >= 0)
             for a, b, c in zip(ks, vs, ws, strict=True)]
    ks = [a[g] for a, g in zip(ks, goods, strict=True)]
    vs = [a[g] for a, g in zip(vs, goods, strict=True)]
    sqrt_w = np.sqrt(np.concatenate([a[g] for a, g in zip(ws, goods, strict=True)]))
    k_all, v_all = np.concatenate(ks), np.concatenate(vs)
    index = np.concatenate([np.full(a.size, i) for i, a in enumerate(ks)])
    t_all = np.asarray(tt)[index]

    def model_vol(x: FloatArray) -> FloatArray:
        p = _from_x(x, tt)
        theta = np.asarray(p.theta)[index]
        ph = phi(theta, p.eta, p.gamma)
        pk = ph * k_all
        w = 0.5 * theta * (1.0 + p.rho * pk + np.sqrt((pk + p.rho) ** 2 + 1.0 - p.rho**2))
        result: FloatArray = np.sqrt(w / t_all)
        return result

    def residuals(x: FloatArray) -> FloatArray:
        r: FloatArray = (model_vol(x) - v_all) * sqrt_w
        return r

    seed = _seed(ks, vs, tt, previous)
    sol = least_squares(residuals, _to_x(seed), method="lm", max_nfev=max_nfev,
                        xtol=1e-12, ftol=1e-12)
    params = _from_x(sol.x, tt)
    err = model_vol(sol.x) - v_all
    rmse = float(np.sqrt(np.mean(err * err)))
    if not np.isfinite(rmse):
        return Fit.failed(fallback, "non-finite model vols",
                          warm=previous is not None, iterations=int(sol.nfev), nfev=int(sol.nfev))
    return Fit(params=params, rmse_vol=rmse, iterations=int(sol.nfev),
               status="converged" if sol.status > 0 else "max_iter",
               message=str(sol.message), nfev=int(sol.nfev), warm=previous is not None)


def _check_inputs(ks: list[FloatArray], vs: list[FloatArray], ws: list[FloatArray],
                  t: tuple[float, ...]) -> str:
    """An error message, or "" when the inputs can be fitted."""
    if not (len(ks) == len(vs) == len(ws) == len(t)) or not t:
        return "k, iv, weights and t must have one entry per expiry"
    if any(a.shape != b.shape or a.shape != c.shape for a, b, c in zip(ks, vs, ws, strict=True)):
        return "k, iv and weights differ in size within an expiry"
    tarr = np.asarray(t)
    if not (np.all(np.isfinite(tarr)) and np.all(tarr > 0) and np.all(np.diff(tarr) > 0)):
        return "times to expiry must be positive and strictly ascending"
    if any(int(np.sum(np.isfinite(v) & (v > 0))) < 3 for v in vs):
        return "every expiry needs >= 3 valid quotes"
    return ""
