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

The eSSVI fit (:func:`calibrate`, Hendriks & Martini 2019) lets ``rho`` vary by expiry.
The ``ssvi`` model (:class:`SSVIModel`) no longer uses it: three parameters an expiry
cannot follow real crypto smiles, so its slices are natural SVI (:class:`SSVISlice` with
a level ``delta`` and a shift ``mu``), fitted under calendar constraints by
:mod:`streamer.core.models.ssvi_surface`, which says what was measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.core.arbitrage import durrleman_g
from streamer.core.lazy_scipy import least_squares
from streamer.core.models import band
from streamer.core.models.batch_lm import levenberg_marquardt
from streamer.core.models.fit import Fit
from streamer.core.models.protocol import VolFromVariance
from streamer.core.params import NamedFloats

if TYPE_CHECKING:
    from streamer.core.models.ssvi_surface import SSVISurface

FloatArray = npt.NDArray[np.float64]

_RHO_MAX = 0.999
#: one-expiry seed fits: a start per side of the skew, LM settings, Jacobian step
_SEED_RHOS = (-0.3, 0.3)
_SEED_MAX_ITER, _SEED_TOL, _FD_STEP = 100, 1e-12, 1.5e-8
_CAP_MARGIN = 1e-9  # psi (1 + |rho|) < 4 is strict


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


class SSVISlice(NamedFloats, frozen=True, kw_only=True):
    """One expiry's natural-SVI smile (Gatheral & Jacquier 2014, eq. 3.2): an SSVI slice
    ``theta, rho, phi`` raised by ``delta`` and moved by ``mu`` in ``k`` (both 0 for an
    SSVI slice proper, whose ``theta`` is then its ATM total variance)."""

    theta: float
    rho: float
    phi: float
    delta: float = 0.0
    mu: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> SSVISlice:
        """Inverse of :meth:`as_dict` (``delta`` and ``mu`` 0 when absent)."""
        return cls(theta=d["theta"], rho=d["rho"], phi=d["phi"], delta=d.get("delta", 0.0),
                   mu=d.get("mu", 0.0))

    @classmethod
    def from_raw_svi(cls, a: float, b: float, rho: float, m: float, sigma: float) -> SSVISlice:
        """Raw SVI ``a, b, rho, m, sigma`` as a natural-SVI slice (Gatheral & Jacquier 2014,
        Lemma 3.2: ``theta = 2 b sigma / sqrt(1 - rho^2)``, ``phi = sqrt(1 - rho^2) / sigma``);
        inverse of :meth:`raw_svi`."""
        root = float(np.sqrt(1.0 - rho * rho))
        return cls(theta=2.0 * b * sigma / root, rho=rho, phi=root / sigma,
                   delta=a - b * sigma * root, mu=m + rho * sigma / root)

    def raw_svi(self) -> tuple[float, float, float, float, float]:
        """The same smile as raw SVI ``a, b, rho, m, sigma`` (Gatheral & Jacquier 2014,
        Lemma 3.2)."""
        a = self.delta + 0.5 * self.theta * (1.0 - self.rho * self.rho)
        b = 0.5 * self.theta * self.phi
        return (a, b, self.rho, self.mu - self.rho / self.phi,
                float(np.sqrt(1.0 - self.rho * self.rho)) / self.phi)


def phi(theta: npt.ArrayLike, eta: float, gamma: float) -> FloatArray:
    """The power-law curvature function of Gatheral & Jacquier (2014), eq. (4.5)."""
    th = np.asarray(theta, np.float64)
    result: FloatArray = eta / (th**gamma * (1.0 + th) ** (1.0 - gamma))
    return result


def slice_total_variance(k: npt.ArrayLike, s: SSVISlice) -> FloatArray:
    """``w(k)`` of one SSVI slice."""
    pk = s.phi * (np.asarray(k, np.float64) - s.mu)
    result: FloatArray = s.delta + 0.5 * s.theta * (1.0 + s.rho * pk + np.sqrt(
        (pk + s.rho) ** 2 + 1.0 - s.rho * s.rho))
    return result


def slice_derivatives(k: npt.ArrayLike, s: SSVISlice) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``w, dw/dk, d2w/dk2`` of one slice, for Durrleman's condition."""
    kk = np.asarray(k, np.float64) - s.mu
    y = s.phi * kk + s.rho
    root = np.sqrt(y * y + 1.0 - s.rho * s.rho)
    w = s.delta + 0.5 * s.theta * (1.0 + s.rho * s.phi * kk + root)
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


# --- eSSVI (Hendriks & Martini 2019) ------------------------------------------------


class ESSVIParams(msgspec.Struct, frozen=True, kw_only=True):
    """An eSSVI surface: per expiry ``t`` its ATM total variance ``theta``, correlation
    ``rho`` and ``psi = theta phi`` (the ATM slope scale: wings ``psi (1 +- rho) / 2``)."""

    t: tuple[float, ...]
    theta: tuple[float, ...]
    rho: tuple[float, ...]
    psi: tuple[float, ...]

    def surface_dict(self) -> dict[str, float]:
        """No surface-wide parameters: every expiry publishes its own."""
        return {}

    def slice(self, i: int) -> SSVISlice:
        """The smile of expiry ``i`` as a stand-alone slice."""
        return SSVISlice(theta=self.theta[i], rho=self.rho[i], phi=self.psi[i] / self.theta[i])

    @classmethod
    def from_power_law(cls, p: SSVIParams) -> ESSVIParams:
        """The same surface (a power-law SSVI is an eSSVI with a constant rho)."""
        psi = np.asarray(p.theta) * phi(p.theta, p.eta, p.gamma)
        return cls(t=p.t, theta=p.theta, rho=(p.rho,) * len(p.t),
                   psi=tuple(float(v) for v in psi))


def butterfly_cap(theta: npt.ArrayLike, rho: npt.ArrayLike) -> FloatArray:
    """Largest ``psi`` free of butterfly arbitrage by Gatheral & Jacquier (2014), Theorem
    4.2: ``psi (1 + |rho|) < 4`` and ``psi^2 (1 + |rho|) <= 4 theta``."""
    one_r = 1.0 + np.abs(np.asarray(rho, np.float64))
    result: FloatArray = np.minimum(4.0 * (1.0 - _CAP_MARGIN) / one_r,
                                    np.sqrt(4.0 * np.asarray(theta, np.float64) / one_r))
    return result


def calendar_ratio(rho_prev: npt.ArrayLike, rho: npt.ArrayLike) -> FloatArray:
    """``p = max((1 + rho_prev) / (1 + rho), (1 - rho_prev) / (1 - rho))`` (>= 1)."""
    a, b = np.asarray(rho_prev, np.float64), np.asarray(rho, np.float64)
    result: FloatArray = np.maximum((1.0 + a) / (1.0 + b), (1.0 - a) / (1.0 - b))
    return result


def is_essvi_arbitrage_free(p: ESSVIParams, tol: float = 1e-12) -> bool:
    """The sufficient conditions this module's fits satisfy by construction.

    Butterfly (every slice): :func:`butterfly_cap`. Calendar (each pair of consecutive
    expiries, Hendriks & Martini 2019, Proposition 3.1 in the form of Mingone 2022):
    ``p <= psi_i / psi_{i-1} <= theta_i / theta_{i-1}`` with ``p`` the
    :func:`calendar_ratio` of the two correlations (so ``theta`` and ``psi`` grow, the
    wing slopes ``psi (1 +- rho)`` grow and ``phi = psi / theta`` does not).
    """
    theta, rho, psi = (np.asarray(v, np.float64) for v in (p.theta, p.rho, p.psi))
    if not (np.all(theta > 0) and np.all(psi > 0) and np.all(np.abs(rho) < 1.0)):
        return False
    if np.any(psi > butterfly_cap(theta, rho) * (1.0 + tol)):
        return False
    ratio = calendar_ratio(rho[:-1], rho[1:])
    grow_psi, grow_theta = psi[1:] / psi[:-1], theta[1:] / theta[:-1]
    return bool(np.all(grow_psi >= ratio * (1.0 - tol))
                and np.all(grow_psi <= grow_theta * (1.0 + tol)))


def _essvi_from_x(x: FloatArray, t: tuple[float, ...]) -> ESSVIParams:
    """The free variables' surface, admissible for any ``x`` (Mingone 2022's global
    parametrisation of the Hendriks-Martini conditions).

    ``x = [atanh(rho / RHO_MAX) (n), ln theta_0, ln a_i (n - 1), logit c_i (n)]``:
    ``theta_i = p_i theta_{i-1} + a_i``; ``psi_i`` is the share ``c_i`` of its admissible
    interval ``[p_i psi_{i-1}, min(psi_{i-1} theta_i / theta_{i-1}, cap_i)]``, where
    ``cap_i`` looks ahead (``min_j f_j / (p_{i+1} ... p_j)`` over later butterfly caps
    ``f_j``) so a later expiry always has room to grow its ``psi``.
    """
    n = len(t)
    flat = _essvi_map(np.asarray(x, np.float64)[None], n)[0]
    return ESSVIParams(t=t, theta=tuple(float(v) for v in flat[:n]),
                       rho=tuple(float(v) for v in flat[n:2 * n]),
                       psi=tuple(float(v) for v in flat[2 * n:]))


def _essvi_map(x: FloatArray, n: int) -> FloatArray:
    """:func:`_essvi_from_x` for a batch of free vectors, shape ``(b, 3 n)`` to
    ``[theta | rho | psi]`` of shape ``(b, 3 n)`` (one pass for a whole Jacobian)."""
    rho = _RHO_MAX * np.tanh(x[:, :n])
    ratio = np.ones_like(rho)
    ratio[:, 1:] = calendar_ratio(rho[:, :-1], rho[:, 1:])
    theta = np.empty_like(rho)
    theta[:, 0] = np.exp(x[:, n])
    steps = np.exp(x[:, n + 1:2 * n])
    for i in range(1, n):
        theta[:, i] = ratio[:, i] * theta[:, i - 1] + steps[:, i - 1]
    cap = butterfly_cap(theta, rho)
    ahead = cap.copy()
    for i in range(n - 2, -1, -1):
        ahead[:, i] = np.minimum(cap[:, i], ahead[:, i + 1] / ratio[:, i + 1])
    share = _logistic(x[:, 2 * n:])
    psi = np.empty_like(rho)
    psi[:, 0] = share[:, 0] * ahead[:, 0]
    for i in range(1, n):
        low = ratio[:, i] * psi[:, i - 1]
        high = np.minimum(ahead[:, i], psi[:, i - 1] * theta[:, i] / theta[:, i - 1])
        psi[:, i] = low + share[:, i] * np.maximum(high - low, 0.0)
    result: FloatArray = np.concatenate([theta, rho, psi], axis=1)
    return result


def _essvi_to_x(theta: FloatArray, rho: FloatArray, psi: FloatArray) -> FloatArray:
    """Free variables of the admissible surface nearest the given one, expiry by expiry
    (a ``theta`` too small for its ``p`` is raised; a ``psi`` is clipped into its
    interval, kept off the interval's ends so the fit can move both ways)."""
    n = theta.size
    r = np.clip(rho, -0.95 * _RHO_MAX, 0.95 * _RHO_MAX)
    ratio = np.ones(n)
    ratio[1:] = calendar_ratio(r[:-1], r[1:])
    th = np.empty(n)
    th[0] = max(float(theta[0]), 1e-8)
    log_steps = np.empty(max(n - 1, 0))
    for i in range(1, n):
        step = max(float(theta[i]) - ratio[i] * th[i - 1], 1e-4 * th[i - 1])
        th[i] = ratio[i] * th[i - 1] + step
        log_steps[i - 1] = np.log(step)
    cap = butterfly_cap(th, r)
    ahead = cap.copy()
    for i in range(n - 2, -1, -1):
        ahead[i] = min(cap[i], ahead[i + 1] / ratio[i + 1])
    logits = np.empty(n)
    prev = 0.0
    for i in range(n):
        low = ratio[i] * prev if i else 0.0
        high = ahead[i] if i == 0 else min(ahead[i], prev * th[i] / th[i - 1])
        share = (float(psi[i]) - low) / (high - low) if high > low else 0.5
        share = min(max(share, 0.02), 0.98)
        logits[i] = _logit(share)
        prev = low + share * max(high - low, 0.0)
    return np.concatenate([np.arctanh(r / _RHO_MAX), [np.log(th[0])], log_steps, logits])


def _slice_seed(k: FloatArray, iv: FloatArray, sqrt_w: FloatArray, t: float
                ) -> tuple[float, float, float]:
    """``theta, rho, psi`` of one expiry fitted on its own (no calendar constraint), inside
    the butterfly conditions of :func:`butterfly_cap`: one start per side of the skew,
    both solved together by the batched LM (forward-difference Jacobian), so a short
    expiry's reduced fit needs no scipy (whose import is a third of a second of every
    replay and worker that meets one)."""
    theta0 = max(_atm_total_variance(k, iv, t), 1e-8)
    starts = []
    for rho0 in _SEED_RHOS:
        share = min(np.sqrt(theta0) / float(butterfly_cap(theta0, rho0)), 0.9)
        starts.append([np.log(theta0), np.arctanh(rho0 / _RHO_MAX), _logit(share)])
    x0 = np.array(starts)

    def residuals(x: FloatArray) -> FloatArray:  # x (n, 3) -> (n, quotes)
        th, r = np.exp(x[:, :1]), _RHO_MAX * np.tanh(x[:, 1:2])
        pk = butterfly_cap(th, r) * _logistic(x[:, 2:3]) * k
        w = 0.5 * (th + r * pk + np.sqrt((pk + r * th) ** 2 + th * th * (1.0 - r * r)))
        out: FloatArray = (np.sqrt(np.maximum(w, 0.0) / t) - iv) * sqrt_w
        return out

    def with_jacobian(x: FloatArray) -> tuple[FloatArray, FloatArray]:
        r0 = residuals(x)
        h = _FD_STEP * np.maximum(np.abs(x), 1.0)  # (n, 3)
        shifted = x[:, None, :] + h[:, :, None] * np.eye(3)  # (n, 3 params, 3)
        moved = residuals(shifted.reshape(-1, 3)).reshape(x.shape[0], 3, -1)
        return r0, (moved - r0[:, None, :]) / h[:, :, None]

    solved = levenberg_marquardt(with_jacobian, x0, max_iter=_SEED_MAX_ITER, tol=_SEED_TOL)
    costs = (residuals(solved.theta) ** 2).sum(axis=1)
    best = solved.theta[int(np.argmin(np.where(np.isfinite(costs), costs, np.inf)))]
    th, r = float(np.exp(best[0])), float(_RHO_MAX * np.tanh(best[1]))
    return th, r, float(butterfly_cap(th, r) * _logistic(best[2]))


def fit_slice(k: npt.ArrayLike, iv: npt.ArrayLike, t: float,
              weights: npt.ArrayLike | None = None) -> Fit[SSVISlice]:
    """One expiry's SSVI smile (``theta, rho, phi``: three parameters, butterfly-free), the
    reduced fit for a slice with too few quotes for a five-parameter SVI (4-5 quotes on an
    expiry a few hours away)."""
    kk, vv = np.asarray(k, np.float64).ravel(), np.asarray(iv, np.float64).ravel()
    ww = np.ones_like(kk) if weights is None else np.asarray(weights, np.float64).ravel()
    empty = SSVISlice(theta=0.0, rho=0.0, phi=0.0)
    if kk.shape != vv.shape or kk.shape != ww.shape or not (np.isfinite(t) and t > 0):
        return Fit.failed(empty, "k, iv and weights differ in size, or t <= 0", warm=False)
    good = np.isfinite(kk) & np.isfinite(vv) & (vv > 0) & np.isfinite(ww) & (ww >= 0)
    if int(good.sum()) < 3:
        return Fit.failed(empty, "a reduced slice needs >= 3 valid quotes", warm=False)
    kk, vv, ww = kk[good], vv[good], ww[good]
    theta, rho, psi = _slice_seed(kk, vv, np.sqrt(ww), t)
    s = SSVISlice(theta=theta, rho=rho, phi=psi / theta)
    err = np.sqrt(slice_total_variance(kk, s) / t) - vv
    return Fit(params=s, rmse_vol=float(np.sqrt(np.mean(err * err))), iterations=0,
               status="converged", warm=False)


def _atm_total_variance(k: FloatArray, iv: FloatArray, t: float) -> float:
    """Market total variance at ``k = 0`` by linear interpolation of the nearest quotes."""
    order = np.argsort(k)
    ks, vs = k[order], iv[order]
    return float(np.interp(0.0, ks, vs)) ** 2 * t


def _seeds(ks: list[FloatArray], vs: list[FloatArray], ws: list[FloatArray],
           t: tuple[float, ...], previous: ESSVIParams | None
           ) -> list[tuple[float, float, float]]:
    """``theta, rho, psi`` to start each expiry from: warm, the previous ``rho`` and ``phi``
    of the expiry nearest in ``t`` (within a day or 5%) with ``theta`` from the market;
    otherwise (cold, or a new expiry) a fit of that expiry on its own."""
    prev_t = np.asarray(previous.t) if previous is not None else np.empty(0)
    out = []
    for k, v, w, ti in zip(ks, vs, ws, t, strict=True):
        j = int(np.argmin(np.abs(prev_t - ti))) if prev_t.size else -1
        if previous is not None and j >= 0 and abs(prev_t[j] - ti) <= max(0.05 * ti, 1 / 365):
            theta = max(_atm_total_variance(k, v, ti), 1e-8)
            out.append((theta, previous.rho[j], previous.psi[j] / previous.theta[j] * theta))
        else:
            out.append(_slice_seed(k, v, np.sqrt(w), ti))
    return out


def calibrate(k: Sequence[npt.ArrayLike], iv: Sequence[npt.ArrayLike], t: Sequence[float],
              weights: Sequence[npt.ArrayLike] | None = None,
              previous: ESSVIParams | None = None, *, max_nfev: int | None = None,
              bid_iv: Sequence[npt.ArrayLike] | None = None,
              ask_iv: Sequence[npt.ArrayLike] | None = None) -> Fit[ESSVIParams]:
    """Fit an arbitrage-free eSSVI surface (Hendriks & Martini 2019) to every expiry.

    Each expiry has its own ``theta, rho, psi``, constrained across expiries so the
    surface is free of calendar and butterfly arbitrage by construction (see
    :func:`is_essvi_arbitrage_free`, :func:`_essvi_from_x`). A cold fit seeds each
    expiry from a fit of that expiry alone (its ATM total variance from the market),
    projects the seeds onto the admissible set and fits all expiries together.

    Parameters
    ----------
    k, iv : sequences of array_like, one per expiry, expiries ascending in ``t``
        Log-moneyness ``ln(K/F)`` and market implied vols (decimal).
    t : sequence of float
        Times to expiry in years, strictly ascending.
    weights : sequence of array_like, optional
        Non-negative weights of the squared vol errors (default 1).
    previous : ESSVIParams, optional
        Warm start: each expiry's previous ``rho`` and ``phi`` (matched by ``t``);
        ``theta`` re-seeds from the market (expiries come and go between fits).
    max_nfev : int, optional
        Most residual evaluations (finite-difference Jacobians included).
    bid_iv, ask_iv : sequences of array_like, optional
        Bid and ask IVs per quote (NaN: side missing): the objective becomes the bid/ask
        band of :mod:`streamer.core.models.band` instead of the mids.
    """
    tt = tuple(float(x) for x in t)
    ks = [np.asarray(a, np.float64).ravel() for a in k]
    vs = [np.asarray(a, np.float64).ravel() for a in iv]
    ws = ([np.asarray(a, np.float64).ravel() for a in weights] if weights is not None
          else [np.ones_like(a) for a in ks])
    n = len(tt)
    fallback = previous or ESSVIParams(t=tt, theta=(0.0,) * n, rho=(0.0,) * n, psi=(0.0,) * n)
    fail = _check_inputs(ks, vs, ws, tt)
    if fail:
        return Fit.failed(fallback, fail, warm=previous is not None)
    bids = ([np.asarray(a, np.float64).ravel() for a in bid_iv] if bid_iv is not None
            else [np.full(a.size, np.nan) for a in ks])
    asks = ([np.asarray(a, np.float64).ravel() for a in ask_iv] if ask_iv is not None
            else [np.full(a.size, np.nan) for a in ks])
    goods = [np.isfinite(a) & np.isfinite(b) & (b > 0) & np.isfinite(c) & (c >= 0)
             for a, b, c in zip(ks, vs, ws, strict=True)]
    ks = [a[g] for a, g in zip(ks, goods, strict=True)]
    vs = [a[g] for a, g in zip(vs, goods, strict=True)]
    ws = [a[g] for a, g in zip(ws, goods, strict=True)]
    k_all, v_all = np.concatenate(ks), np.concatenate(vs)
    index = np.concatenate([np.full(a.size, i) for i, a in enumerate(ks)])
    t_all = np.asarray(tt)[index]
    use_band = bid_iv is not None or ask_iv is not None
    quote_band = band.make_band(
        v_all, np.concatenate([a[g] for a, g in zip(bids, goods, strict=True)]),
        np.concatenate([a[g] for a, g in zip(asks, goods, strict=True)]),
        np.concatenate(ws)) if use_band else band.make_band(v_all, None, None, np.concatenate(ws))

    objective = _SurfaceObjective(k_all, t_all, index, tt, quote_band)
    theta0, rho0, psi0 = (np.array(v) for v in zip(*_seeds(ks, vs, ws, tt, previous),
                                                     strict=True))
    x0 = _essvi_to_x(theta0, rho0, psi0)
    budget = max_nfev if max_nfev is not None else 20 * (x0.size + 1)
    sol = least_squares(objective.residuals, x0, jac=objective.jacobian, method="lm",
                        max_nfev=budget, xtol=1e-8, ftol=1e-8)
    params = _essvi_from_x(sol.x, tt)
    err = objective.vols(sol.x) - v_all
    rmse = float(np.sqrt(np.mean(err * err)))
    if not np.isfinite(rmse):
        return Fit.failed(fallback, "non-finite model vols",
                          warm=previous is not None, iterations=int(sol.nfev), nfev=int(sol.nfev))
    return Fit(params=params, rmse_vol=rmse, iterations=int(sol.nfev),
               status="converged" if sol.status > 0 else "max_iter",
               message=str(sol.message), nfev=int(sol.nfev), warm=previous is not None)


class _SurfaceObjective:
    """Band residuals of an eSSVI surface and their Jacobian in the free variables.

    The smile's derivatives in each expiry's ``theta, rho, psi`` are analytic; the map
    from the free variables (:func:`_essvi_from_x`, a few scalar operations per expiry)
    is differentiated by forward differences, so a Jacobian costs one pass over the
    quotes instead of one per free variable.
    """

    def __init__(self, k: FloatArray, t: FloatArray, index: npt.NDArray[np.intp],
                 expiries: tuple[float, ...], quote_band: band.Band) -> None:
        self.k, self.t, self.index, self.expiries, self.band = k, t, index, expiries, quote_band
        self.n = len(expiries)

    def _flat(self, x: FloatArray) -> FloatArray:
        result: FloatArray = _essvi_map(x[None], self.n)[0]
        return result

    def _smile(self, flat: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray,
                                                 FloatArray, FloatArray]:
        n, i = self.n, self.index
        theta, rho, psi = flat[:n][i], flat[n:2 * n][i], flat[2 * n:][i]
        pk = psi * self.k
        y = pk + rho * theta
        root = np.sqrt(y * y + theta * theta * (1.0 - rho * rho))
        w = 0.5 * (theta + rho * pk + root)
        dtheta = 0.5 * (1.0 + (rho * pk + theta) / root)
        drho = 0.5 * pk * (1.0 + theta / root)
        dpsi = 0.5 * self.k * (rho + y / root)
        return w, dtheta, drho, dpsi, root

    def vols(self, x: FloatArray) -> FloatArray:
        w = self._smile(self._flat(x))[0]
        result: FloatArray = np.sqrt(np.maximum(w, 0.0) / self.t)
        return result

    def residuals(self, x: FloatArray) -> FloatArray:
        return band.residuals(self.vols(x), self.band)[0]

    def jacobian(self, x: FloatArray) -> FloatArray:
        flat = self._flat(x)
        w, dtheta, drho, dpsi, _ = self._smile(flat)
        vol = np.sqrt(np.maximum(w, 1e-300) / self.t)
        scale = band.residuals(vol, self.band)[1] / (2.0 * vol * self.t)
        n, m, i = self.n, self.k.size, self.index
        rows = np.arange(m)
        d_flat = np.zeros((m, 3 * n))
        d_flat[rows, i] = dtheta * scale
        d_flat[rows, n + i] = drho * scale
        d_flat[rows, 2 * n + i] = dpsi * scale
        h = 1e-7
        d_map = (_essvi_map(x[None] + h * np.eye(x.size), n) - flat).T / h
        result: FloatArray = d_flat @ d_map
        return result


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


def slice_butterfly_margin(s: SSVISlice, k_min: float, k_max: float, n: int = 201) -> float:
    """Minimum of ``g(k)`` of one SSVI slice over ``[k_min, k_max]``."""
    k = np.linspace(k_min, k_max, n)
    w, dw, d2w = slice_derivatives(k, s)
    return float(np.min(durrleman_g(k, w, dw, d2w)))


@dataclass(frozen=True)
class SSVIModel(VolFromVariance[SSVISlice]):
    """The calendar-constrained natural-SVI surface of :mod:`streamer.core.models.ssvi_surface`
    (SSVI slices with a level and a shift); each expiry publishes ``theta, rho, phi,
    delta, mu``."""

    name: str = "ssvi"
    is_surface = True
    reduced_slices: bool = True  # slices of 4 quotes join, seeded by a 3-parameter fit

    def calibrate_surface(self, k: Sequence[FloatArray], iv: Sequence[FloatArray],
                          t: Sequence[float], weights: Sequence[FloatArray],
                          previous: SSVISurface | None, *,
                          bid_iv: Sequence[FloatArray] | None = None,
                          ask_iv: Sequence[FloatArray] | None = None,
                          should_stop: Callable[[], bool] | None = None) -> Fit[SSVISurface]:
        # ssvi_surface fits each expiry with svi, which imports this module
        from streamer.core.models import ssvi_surface

        # Cold every time (ssvi_surface.calibrate says why). The band weighs by half
        # spreads, as SVI's: the pipeline's weights only for a slice too small for SVI.
        return ssvi_surface.calibrate(k, iv, t, bid_iv=bid_iv, ask_iv=ask_iv, weights=weights,
                                      should_stop=should_stop)

    def slice_params(self, params: SSVISurface, index: int) -> SSVISlice:
        return params.slice(index)

    def surface_dict(self, params: SSVISurface) -> dict[str, float]:
        return params.surface_dict()

    def surface_from_dict(self, d: dict[str, float]) -> SSVISurface | None:
        # no surface-wide parameters (every expiry has its own): a restart fits cold.
        return None

    def total_variance(self, k: FloatArray, t: float, params: SSVISlice) -> FloatArray:
        return slice_total_variance(k, params)

    def butterfly_margin(self, params: SSVISlice, t: float, k_min: float, k_max: float
                         ) -> float:
        return slice_butterfly_margin(params, k_min, k_max)

    def from_dict(self, d: dict[str, float]) -> SSVISlice:
        return SSVISlice.from_dict(d)
