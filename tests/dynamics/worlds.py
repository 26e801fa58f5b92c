"""Synthetic surface streams whose smile dynamics are known exactly.

Translation worlds: the smile of every expiry is an SSVI slice (the synthesiser's,
``synth_market``) read at a shifted log-moneyness,

    sigma(k, T; S) = sigma_0(k + c ln(S / S_0), T),

so ``d sigma_ATM / d ln S = c sigma_0'`` and the SSR is exactly ``c``: 0 is sticky
moneyness, 1 sticky strike (the vol of a fixed K never moves), 2 the short-maturity
local-vol value (Bergomi 2016, ch. 2: an implied vol that is the average of a local
vol between ln S and ln K depends on ln K + ln S = k + 2 ln S + const).

Heston world: variance and spot follow Heston (1993) with an Euler full-truncation
scheme; each surface's smiles are Heston's own (core.models.heston) at the current
variance, tabulated on a variance grid. Its SSR is
``rho xi d sigma_ATM / d v / skew`` (Itô: cov(d sigma_ATM, d ln S) = d sigma_ATM/dv *
rho xi v dt, var(d ln S) = v dt), which tends to 2 at short maturities.

Every surface gets fit-like noise on ATM vol and skew: the estimator has to beat it.
Surfaces come once a minute, the crypto market never closes: a week is 10 080 of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamer.core.models.heston import HestonParams, implied_vols
from streamer.devtools.synth_market import SPECS, atm_total_variance, ssvi_as_raw_svi
from streamer.pipeline.dynamics import InstrumentMarks
from streamer.types import SliceUpdate, SurfaceUpdate

FloatArray = npt.NDArray[np.float64]
YEAR_S = 365.0 * 86_400.0
START_MS = 1_732_881_600_000
H = 1e-3  # finite-difference step in k
STRIKES_SD = (-0.9, -0.45, 0.0, 0.45, 0.9)  # requoted instruments, in ATM standard deviations


@dataclass(frozen=True)
class Noise:
    """Standard deviations of what a fit gets wrong per slice and surface."""

    atm_vol: float = 0.001  # 0.1 vol point
    skew: float = 0.01
    log_forward: float = 2e-5


def _svi_vol(k: FloatArray, t: float, p: dict[str, float]) -> FloatArray:
    x = k - p["m"]
    w = p["a"] + p["b"] * (p["rho"] * x + np.sqrt(x * x + p["sigma"] ** 2))
    result: FloatArray = np.sqrt(w / t)
    return result


def spot_path(n: int, dt_s: float, annual_vol: float, rng: np.random.Generator,
              s0: float = 95_000.0) -> FloatArray:
    """GBM sampled every ``dt_s`` seconds, starting at ``s0``."""
    dt = dt_s / YEAR_S
    shocks = rng.normal(0.0, annual_vol * np.sqrt(dt), n - 1)
    log_s = np.concatenate([[0.0], np.cumsum(shocks - 0.5 * annual_vol**2 * dt)])
    result: FloatArray = s0 * np.exp(log_s)
    return result


def _slice(expiry_ms: int, t: float, forward: float, vol: float, skew: float) -> SliceUpdate:
    return SliceUpdate(expiry="", expiry_ts_ms=expiry_ms, t=t, forward=forward, params={},
                       atm_vol=vol, atm_skew=skew, rr25=np.nan, bf25=np.nan, rmse_vol=0.001,
                       n_quotes=30, status="warm", butterfly_free=True, calendar_free=True)


def _surfaces(spot: FloatArray, dt_s: float, expiry_days: FloatArray, vols: FloatArray,
              skews: FloatArray, basis: float, noise: Noise, rng: np.random.Generator,
              rolling: bool) -> list[SurfaceUpdate]:
    """One SurfaceUpdate per row; ``vols``/``skews`` have shape (n_updates, n_expiries)."""
    n, m = vols.shape
    vols = vols + rng.normal(0.0, noise.atm_vol, (n, m))
    skews = skews + rng.normal(0.0, noise.skew, (n, m))
    lnf_noise = rng.normal(0.0, noise.log_forward, (n, m))
    out = []
    for i in range(n):
        now_ms = START_MS + int(i * dt_s * 1000)
        t = expiry_days / 365.0 - (i * dt_s / YEAR_S if rolling else 0.0)
        fwd = spot[i] * np.exp(basis * t + lnf_noise[i])
        slices = [_slice(START_MS + int(d * 86_400_000), float(t[j]), float(fwd[j]),
                         float(vols[i, j]), float(skews[i, j]))
                  for j, d in enumerate(expiry_days) if t[j] > 0]
        out.append(SurfaceUpdate(venue="synthetic", underlying="BTC", model="svi", seq=i + 1,
                                 exchange_ts_ms=now_ms, received_ts_ns=now_ms * 1_000_000,
                                 published_ts_ns=now_ms * 1_000_000, spot=float(spot[i]),
                                 params={}, slices=slices))
    return out


def translation_world(ssr: float, *, n: int = 10_080, dt_s: float = 60.0, seed: int = 1,
                      annual_vol: float = 0.55, rho: float = -0.22,
                      noise: Noise = Noise()) -> list[SurfaceUpdate]:
    """Surfaces whose smiles translate with ``ssr * ln(S/S0)`` (weekly expiries, rolling)."""
    return [s for s, _ in translation_requotes(ssr, n=n, dt_s=dt_s, seed=seed,
                                               annual_vol=annual_vol, rho=rho, noise=noise)]


def translation_requotes(ssr: float, *, n: int = 10_080, dt_s: float = 60.0, seed: int = 1,
                         annual_vol: float = 0.55, rho: float = -0.22, noise: Noise = Noise(),
                         iv_noise: float = 0.002, strikes_sd: tuple[float, ...] = STRIKES_SD
                         ) -> list[tuple[SurfaceUpdate, InstrumentMarks]]:
    """:func:`translation_world`'s surfaces, each with its batch's requotes: every
    instrument (fixed strikes at ``strikes_sd`` ATM standard deviations of the first
    forward, per expiry) requoted at every surface at its true vol plus ``iv_noise``,
    with the true smile's slope at its strike."""
    rng = np.random.default_rng(seed)
    spec = SPECS["BTC"]
    spot = spot_path(n, dt_s, annual_vol, rng, spec.spot)
    shift = ssr * np.log(spot / spec.spot)
    expiry_days = np.arange(1.0, 200.0, 7.0)
    elapsed_y = np.arange(n) * dt_s / YEAR_S
    params = [ssvi_as_raw_svi(atm_total_variance(spec, d / 365.0), rho, spec.eta, spec.gamma)
              for d in expiry_days]
    t = np.maximum(expiry_days[None, :] / 365.0 - elapsed_y[:, None], 1e-6)
    vols = np.empty((n, expiry_days.size))
    skews = np.empty_like(vols)
    for j, p in enumerate(params):
        # total variance fixed per expiry, as in synth
        up, mid, down = (_svi_vol(shift + dk, 1.0, p) / np.sqrt(t[:, j]) for dk in (H, 0.0, -H))
        vols[:, j], skews[:, j] = mid, (up - down) / (2 * H)
    surfaces = _surfaces(spot, dt_s, expiry_days, vols, skews, spec.basis, noise, rng,
                         rolling=True)
    log_k0 = np.log(spec.spot) + spec.basis * expiry_days[:, None] / 365.0 + np.outer(
        vols[0] * np.sqrt(expiry_days / 365.0), strikes_sd)  # ln K, (expiry, strike)
    out = []
    for i, surface in enumerate(surfaces):
        live = np.flatnonzero(t[i] > 1e-6)
        log_f = np.log(spot[i]) + spec.basis * t[i, live]
        k = log_k0[live] - log_f[:, None]
        root_t = np.sqrt(t[i, live])[:, None]
        x = shift[i] + k
        smile = [np.stack([_svi_vol(x[a] + dk, 1.0, params[j]) for dk in (H, 0.0, -H)])
                 for a, j in enumerate(live)]
        iv = np.array([v[1] for v in smile]) / root_t
        slope = np.array([(v[0] - v[2]) / (2 * H) for v in smile]) / root_t
        names = [f"{int(expiry_days[j])}d-{m}" for j in live for m in range(len(strikes_sd))]
        size = iv.size
        out.append((surface, InstrumentMarks(
            names, np.full(size, surface.exchange_ts_ms, np.int64),
            np.repeat(t[i, live], len(strikes_sd)), np.repeat(log_f, len(strikes_sd)),
            iv.ravel() + rng.normal(0.0, iv_noise, size), np.full(size, iv_noise**2),
            slope.ravel())))
    return out


@dataclass(frozen=True)
class HestonWorld:
    """Surfaces from a simulated Heston path and the model's own SSR at each tenor."""

    surfaces: list[SurfaceUpdate]
    variance: FloatArray
    tenor_days: FloatArray
    ssr: FloatArray  # (n_updates, n_tenors): the instantaneous SSR at the current variance


def heston_world(params: HestonParams, *, n: int = 10_080, dt_s: float = 60.0, seed: int = 2,
                 noise: Noise = Noise()) -> HestonWorld:
    """Heston spot and variance paths; smiles at fixed tenors from the model itself."""
    rng = np.random.default_rng(seed)
    dt = dt_s / YEAR_S
    z1, z2 = rng.normal(size=(2, n - 1))
    z2 = params.rho * z1 + np.sqrt(1.0 - params.rho**2) * z2
    v, log_s = np.empty(n), np.empty(n)
    v[0], log_s[0] = params.v0, np.log(95_000.0)
    for i in range(n - 1):
        vp = max(v[i], 0.0)
        log_s[i + 1] = log_s[i] - 0.5 * vp * dt + np.sqrt(vp * dt) * z1[i]
        v[i + 1] = v[i] + params.kappa * (params.theta - vp) * dt + params.sigma * np.sqrt(
            vp * dt) * z2[i]
    v = np.maximum(v, 1e-4)
    tenors = np.array([7.0, 14.0, 30.0, 60.0, 90.0, 180.0])
    grid = np.linspace(v.min() * 0.95, v.max() * 1.05, 41)
    atm, skew = np.empty((grid.size, tenors.size)), np.empty((grid.size, tenors.size))
    for g, vg in enumerate(grid):
        p = HestonParams(v0=float(vg), kappa=params.kappa, theta=params.theta,
                         sigma=params.sigma, rho=params.rho)
        iv = implied_vols(np.array([[-H], [0.0], [H]]), tenors[None, :] / 365.0, p)
        atm[g], skew[g] = iv[1], (iv[2] - iv[0]) / (2 * H)
    d_atm: FloatArray = np.asarray(np.gradient(atm, grid, axis=0))
    true_ssr = params.rho * params.sigma * d_atm / skew
    vols = np.stack([np.interp(v, grid, atm[:, j]) for j in range(tenors.size)], axis=1)
    skews = np.stack([np.interp(v, grid, skew[:, j]) for j in range(tenors.size)], axis=1)
    ssr = np.stack([np.interp(v, grid, true_ssr[:, j]) for j in range(tenors.size)], axis=1)
    surfaces = _surfaces(np.exp(log_s), dt_s, tenors, vols, skews, 0.0, noise, rng,
                         rolling=False)
    return HestonWorld(surfaces, v, tenors, ssr)
