"""Heston, SSVI and SABR calibration: our cold and warm fits vs a baseline, in one run.

* **Heston** (one parameter set for a whole surface): 10 expiries, t from 0.05 to 1.5
  years geometrically spaced and rounded to whole days (the same day-rounded t for
  both libraries, so both fit identical quotes), 20 strikes each, vols from
  ``v0=0.36, kappa=2, theta=0.49, sigma=1.5, rho=-0.2`` plus 5e-4 vol of noise.
  ``ours_cold`` is ``heston.calibrate`` from its own cold seed; ``quantlib_cold`` is
  QuantLib's ``HestonModel.calibrate`` (one ``HestonModelHelper`` per quote with
  ``ImpliedVolError``, ``AnalyticHestonEngine``, Levenberg–Marquardt,
  ``EndCriteria(400, 50, 1e-8, 1e-8, 1e-8)``, flat zero curves, spot 1) from the same
  seed. The surface then moves (``iv * 1.005 + 0.003 k``): ``ours_warm`` and
  ``quantlib_warm`` refit it from our cold fit. ``*_from_true`` fit the original
  quotes starting at the true parameters. RMSE is always ours: ``heston.implied_vols``
  of the fitted parameters minus the quotes, over all quotes.
* **SSVI** (whole surface): 12 expiries from 2 days to 1.5 years, 50 strikes each,
  from known ``rho, eta, gamma`` and an ATM term structure plus 1e-4 vol of noise;
  ``ssvi.calibrate`` cold, and warm (``previous`` = cold fit) after a parallel shift
  of +0.4 vol points and a tilt of -1 point per unit of k; ``ours_cold_moved`` fits
  the moved surface cold, the reference for the warm row (the move is not exactly an
  SSVI surface, so its RMSE is the model's, not the warm start's). ``natural_cold`` is
  the pipeline's SSVI since issue 12 (``ssvi_surface.calibrate``: natural-SVI slices
  under calendar constraints, always cold) on the same surface; its RMSE is the fit's.
* **SABR** (per slice, beta = 1): 12 slices x 50 strikes of a BTC-like chain from known
  per-slice parameters plus 1e-4 vol of noise, the same move as SSVI. ``sabr.calibrate``
  cold and warm on every slice, against ``scipy.optimize.least_squares`` (trf, 2-point
  Jacobian, bounds alpha > 0, -1 < rho < 1, nu > 0, default tolerances) from
  ``alpha`` = nearest-ATM vol, ``rho = 0``, ``nu = 1``. Timings are per whole chain.

Every group calls its methods in turn, round after round
(:func:`harness.interleaved_timings_s`), so load changes hit them alike.

Run from the repo root: ``.venv/bin/python benchmarks/bench_models.py``.
"""

from __future__ import annotations

import os
import sys

# Figures are per core: OpenBLAS's worker threads, on a 2-core machine shared with other
# work, make the small matrix products of the calibrations up to 20x slower. Set before
# numpy loads OpenBLAS; the baselines (scipy, QuantLib, py_vollib) run under the same.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import QuantLib as ql  # noqa: N813 - the alias QuantLib's own examples use
from scipy.optimize import least_squares

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import interleaved_timings_s, percentiles_ms, record

from streamer.core.models import heston, sabr, ssvi
from streamer.core.models import ssvi_surface as natural_ssvi

SHIFT, TILT = 0.004, -0.01  # SSVI/SABR "small move": +0.4 vol points, -1 point per unit k
CHAIN_EXPIRIES = np.geomspace(2.0 / 365.0, 1.5, 12)

# --------------------------------------------------------------------------- Heston

HESTON_TRUE = heston.HestonParams(v0=0.36, kappa=2.0, theta=0.49, sigma=1.5, rho=-0.2)
HESTON_DAYS = np.round(np.geomspace(0.05, 1.5, 10) * 365.0).astype(int)
HESTON_STRIKES = 20
HESTON_NOISE = 5e-4
HESTON_REPEAT = 10
QL_END = {getattr(ql.EndCriteria, n): n for n in (
    "None", "MaxIterations", "StationaryPoint", "StationaryFunctionValue",
    "StationaryFunctionAccuracy", "ZeroGradientNorm", "FunctionEpsilonTooSmall", "Unknown")
    if hasattr(ql.EndCriteria, n)}

Surface = tuple[list[np.ndarray], list[np.ndarray], list[float]]  # k, iv per expiry; t


def heston_surface() -> tuple[Surface, Surface]:
    """The noisy surface and the same surface after the small move."""
    rng = np.random.default_rng(2024)
    ts = [float(d) / 365.0 for d in HESTON_DAYS]
    ks, ivs = [], []
    for t in ts:
        sd = 0.6 * np.sqrt(t)
        k = np.linspace(max(-2.5 * sd, -1.5), min(2.0 * sd, 1.5), HESTON_STRIKES)
        ks.append(k)
        ivs.append(heston.implied_vols(k, t, HESTON_TRUE)
                   + rng.normal(0.0, HESTON_NOISE, k.size))
    moved = [iv * 1.005 + 0.003 * k for k, iv in zip(ks, ivs, strict=True)]
    return (ks, ivs, ts), (ks, moved, ts)


def heston_rmse(surface: Surface, p: heston.HestonParams) -> float:
    """RMS over all quotes of our model vol at ``p`` minus the quote."""
    ks, ivs, ts = surface
    err = np.concatenate([heston.implied_vols(k, t, p) - iv
                          for k, iv, t in zip(ks, ivs, ts, strict=True)])
    return float(np.sqrt(np.mean(err * err)))


class QuantLibHeston:
    """QuantLib's Heston calibration of one surface's quotes (F = spot = 1, r = q = 0)."""

    def __init__(self, surface: Surface) -> None:
        today = ql.Date(2, ql.January, 2025)
        ql.Settings.instance().evaluationDate = today
        dc = ql.Actual365Fixed()
        self.rates = ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, dc))
        self.dividends = ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, dc))
        self.spot = ql.QuoteHandle(ql.SimpleQuote(1.0))
        calendar = ql.NullCalendar()
        ks, ivs, _ = surface
        self.helpers = [
            ql.HestonModelHelper(ql.Period(int(days), ql.Days), calendar, 1.0,
                                 float(np.exp(kk)), ql.QuoteHandle(ql.SimpleQuote(float(v))),
                                 self.rates, self.dividends,
                                 ql.BlackCalibrationHelper.ImpliedVolError)
            for days, k, iv in zip(HESTON_DAYS, ks, ivs, strict=True)
            for kk, v in zip(k, iv, strict=True)]

    def calibrate(self, start: heston.HestonParams) -> tuple[heston.HestonParams, int, str]:
        """Fitted parameters, cost-function evaluations and QuantLib's end criterion."""
        process = ql.HestonProcess(self.rates, self.dividends, self.spot, start.v0,
                                   start.kappa, start.theta, start.sigma, start.rho)
        model = ql.HestonModel(process)
        engine = ql.AnalyticHestonEngine(model)
        for h in self.helpers:
            h.setPricingEngine(engine)
        model.calibrate(self.helpers, ql.LevenbergMarquardt(),
                        ql.EndCriteria(400, 50, 1e-8, 1e-8, 1e-8))
        p = heston.HestonParams(v0=model.v0(), kappa=model.kappa(), theta=model.theta(),
                                sigma=model.sigma(), rho=model.rho())
        end = model.endCriteria()
        return p, int(model.functionEvaluation()), QL_END.get(end, str(end))


def heston_rows() -> list[dict[str, Any]]:
    surface, moved = heston_surface()
    ks, ivs, ts = surface
    seed = heston._cold_seed(np.concatenate(ks), np.repeat(ts, HESTON_STRIKES),
                             np.concatenate(ivs))
    previous = heston.calibrate(*surface).params  # our cold fit: the warm start for both
    ql_surface, ql_moved = QuantLibHeston(surface), QuantLibHeston(moved)
    data = {"ours_cold": surface, "quantlib_cold": surface, "ours_warm": moved,
            "quantlib_warm": moved, "ours_from_true": surface,
            "quantlib_from_true": surface}
    outs: dict[str, tuple[heston.HestonParams, int, str]] = {}

    def ours(name: str, prev: heston.HestonParams | None) -> Callable[[], object]:
        def run() -> None:
            fit = heston.calibrate(*data[name], previous=prev)
            outs[name] = (fit.params, fit.nfev, fit.status)
        return run

    def theirs(name: str, helper: QuantLibHeston, start: heston.HestonParams
               ) -> Callable[[], object]:
        def run() -> None:
            outs[name] = helper.calibrate(start)
        return run

    fns = {"ours_cold": ours("ours_cold", None),
           "quantlib_cold": theirs("quantlib_cold", ql_surface, seed),
           "ours_warm": ours("ours_warm", previous),
           "quantlib_warm": theirs("quantlib_warm", ql_moved, previous),
           "ours_from_true": ours("ours_from_true", HESTON_TRUE),
           "quantlib_from_true": theirs("quantlib_from_true", ql_surface, HESTON_TRUE)}
    samples = interleaved_timings_s(fns, HESTON_REPEAT, warmup=1)
    rows: list[dict[str, Any]] = []
    for name, s in samples.items():
        pct = percentiles_ms(s)
        p, nfev, status = outs[name]
        row: dict[str, Any] = {"method": name, "quotes": len(ts) * HESTON_STRIKES,
                               "p50_ms": pct["p50_ms"], "p99_ms": pct["p99_ms"]}
        if name.startswith("ours"):
            other = samples[name.replace("ours", "quantlib")]
            row["speedup_vs_quantlib"] = float(np.median(other) / np.median(s))
        row |= {"rmse_vol": heston_rmse(data[name], p), "nfev": nfev, "status": status,
                "v0": p.v0, "kappa": p.kappa, "theta": p.theta, "sigma": p.sigma,
                "rho": p.rho}
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- SSVI

SSVI_TRUE = {"rho": -0.25, "eta": 1.2, "gamma": 0.4}
SSVI_STRIKES = 50
CHAIN_NOISE = 1e-4
SSVI_CHAINS, SSVI_REPEAT = 3, 8


def atm_vol(t: float) -> float:
    return 0.5 + 0.1 * float(np.exp(-t / 0.25))


def ssvi_surface(seed: int) -> tuple[Surface, Surface]:
    rng = np.random.default_rng(seed)
    ts = [float(t) for t in CHAIN_EXPIRIES]
    theta = tuple(atm_vol(t) ** 2 * t for t in ts)
    true = ssvi.SSVIParams(t=tuple(ts), theta=theta, **SSVI_TRUE)
    ks, ivs = [], []
    for i, t in enumerate(ts):
        sd = 0.6 * np.sqrt(t)
        k = np.linspace(max(-3.0 * sd, -1.5), min(2.5 * sd, 1.5), SSVI_STRIKES)
        ks.append(k)
        ivs.append(np.sqrt(ssvi.total_variance(k, i, true) / t)
                   + rng.normal(0.0, CHAIN_NOISE, k.size))
    moved = [iv + SHIFT + TILT * k for k, iv in zip(ks, ivs, strict=True)]
    return (ks, ivs, ts), (ks, moved, ts)


def ssvi_rmse(surface: Surface, p: ssvi.SSVIParams) -> float:
    ks, ivs, ts = surface
    err = np.concatenate([np.sqrt(ssvi.total_variance(k, i, p) / t) - iv
                          for i, (k, iv, t) in enumerate(zip(ks, ivs, ts, strict=True))])
    return float(np.sqrt(np.mean(err * err)))


def ssvi_rows() -> list[dict[str, Any]]:
    # eSSVI (ssvi.calibrate) cold and warm, and the pipeline's SSVI since issue 12's
    # natural slices (ssvi_surface.calibrate, always cold), on the same surfaces
    methods = ["ours_cold", "ours_cold_moved", "ours_warm", "natural_cold"]
    samples: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    errors: dict[str, list[float]] = {m: [] for m in methods}
    nfevs: dict[str, list[int]] = {m: [] for m in methods}
    for c in range(SSVI_CHAINS):
        surface, moved = ssvi_surface(3000 + c)
        previous = ssvi.calibrate(*surface).params
        outs: dict[str, Any] = {}

        def run(name: str, data: Surface, prev: ssvi.SSVIParams | None,
                outs: dict[str, Any] = outs) -> Callable[[], object]:
            def fn() -> None:
                outs[name] = (data, ssvi.calibrate(*data, previous=prev))
            return fn

        def natural(data: Surface, outs: dict[str, Any] = outs) -> Callable[[], object]:
            def fn() -> None:
                outs["natural_cold"] = (data, natural_ssvi.calibrate(*data))
            return fn

        timed = interleaved_timings_s({"ours_cold": run("ours_cold", surface, None),
                                       "ours_cold_moved": run("ours_cold_moved", moved, None),
                                       "ours_warm": run("ours_warm", moved, previous),
                                       "natural_cold": natural(surface)},
                                      SSVI_REPEAT)
        for name, s in timed.items():
            data, fit = outs[name]
            samples[name].append(s)
            errors[name].append(fit.rmse_vol if name == "natural_cold"
                                else ssvi_rmse(data, fit.params))
            nfevs[name].append(fit.nfev)
    baseline = {"ours_warm": "ours_cold_moved"}
    rows: list[dict[str, Any]] = []
    for name in methods:
        s = np.concatenate(samples[name])
        ref = np.median(np.concatenate(samples[baseline.get(name, name)]))
        pct = percentiles_ms(s)
        rows.append({"method": name, "chains": SSVI_CHAINS, "expiries": len(CHAIN_EXPIRIES),
                     "quotes": len(CHAIN_EXPIRIES) * SSVI_STRIKES, "p50_ms": pct["p50_ms"],
                     "p99_ms": pct["p99_ms"],
                     "speedup_vs_cold": float(ref / np.median(s)),
                     "rmse_vol_median": float(np.median(errors[name])),
                     "rmse_vol_max": float(np.max(errors[name])),
                     "median_nfev": float(np.median(nfevs[name]))})
    return rows


# ----------------------------------------------------------------------------- SABR

SABR_STRIKES = 50
SABR_CHAINS, SABR_REPEAT = 3, 6
SABR_SPOT = 60_000.0

Slice = tuple[float, np.ndarray, np.ndarray, float]  # forward, strikes, iv, t


def sabr_chain(seed: int) -> tuple[list[Slice], list[Slice]]:
    rng = np.random.default_rng(seed)
    chain, moved = [], []
    for t in (float(x) for x in CHAIN_EXPIRIES):
        forward = SABR_SPOT * (1.0 + 0.03 * t)
        p = sabr.SABRParams(alpha=atm_vol(t) + rng.uniform(-0.03, 0.03), beta=1.0,
                            rho=rng.uniform(-0.35, 0.05),
                            nu=rng.uniform(0.8, 1.2) * t**-0.3)
        sd = 0.6 * np.sqrt(t)
        k = np.linspace(max(-3.0 * sd, -1.5), min(2.5 * sd, 1.5), SABR_STRIKES)
        strikes = forward * np.exp(k)
        iv = sabr.implied_vol(forward, strikes, t, p) + rng.normal(0.0, CHAIN_NOISE, k.size)
        chain.append((forward, strikes, iv, t))
        moved.append((forward, strikes, iv + SHIFT + TILT * k, t))
    return chain, moved


def naive_sabr(forward: float, strikes: np.ndarray, iv: np.ndarray, t: float
               ) -> tuple[sabr.SABRParams, int]:
    """least_squares (trf, bounds, 2-point Jacobian) from alpha = ATM vol, rho 0, nu 1."""

    def residuals(x: np.ndarray) -> np.ndarray:
        p = sabr.SABRParams(alpha=float(x[0]), beta=1.0, rho=float(x[1]), nu=float(x[2]))
        model = sabr.implied_vol(forward, strikes, t, p)
        return np.where(np.isfinite(model), model - iv, 1.0)

    x0 = np.array([float(iv[np.argmin(np.abs(np.log(strikes / forward)))]), 0.0, 1.0])
    res = least_squares(residuals, x0, method="trf",
                        bounds=([1e-8, -0.999, 1e-8], [np.inf, 0.999, np.inf]))
    a, r, n = (float(v) for v in res.x)
    return sabr.SABRParams(alpha=a, beta=1.0, rho=r, nu=n), int(res.nfev)


def sabr_rmse(sl: Slice, p: sabr.SABRParams) -> float:
    forward, strikes, iv, t = sl
    err = sabr.implied_vol(forward, strikes, t, p) - iv
    return float(np.sqrt(np.mean(err * err)))


def sabr_rows() -> list[dict[str, Any]]:
    methods = ["ours_cold", "naive_lsq_cold", "ours_warm", "naive_lsq_moved"]
    samples: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    errors: dict[str, list[float]] = {m: [] for m in methods}
    nfevs: dict[str, list[int]] = {m: [] for m in methods}
    for c in range(SABR_CHAINS):
        chain, moved = sabr_chain(5000 + c)
        cold = [sabr.calibrate(f, k, v, t).params for f, k, v, t in chain]
        data = {"ours_cold": chain, "naive_lsq_cold": chain, "ours_warm": moved,
                "naive_lsq_moved": moved}
        outs: dict[str, list[tuple[sabr.SABRParams, int]]] = {}

        def ours(name: str, prev: list[sabr.SABRParams] | None,
                 outs: dict[str, Any] = outs, data: dict[str, list[Slice]] = data
                 ) -> Callable[[], object]:
            def fn() -> None:
                fits = [sabr.calibrate(f, k, v, t, previous=None if prev is None else prev[i])
                        for i, (f, k, v, t) in enumerate(data[name])]
                outs[name] = [(fit.params, fit.nfev) for fit in fits]
            return fn

        def naive(name: str, outs: dict[str, Any] = outs,
                  data: dict[str, list[Slice]] = data) -> Callable[[], object]:
            def fn() -> None:
                outs[name] = [naive_sabr(*sl) for sl in data[name]]
            return fn

        timed = interleaved_timings_s({"ours_cold": ours("ours_cold", None),
                                       "naive_lsq_cold": naive("naive_lsq_cold"),
                                       "ours_warm": ours("ours_warm", cold),
                                       "naive_lsq_moved": naive("naive_lsq_moved")},
                                      SABR_REPEAT)
        for name, s in timed.items():
            samples[name].append(s)
            errors[name] += [sabr_rmse(sl, p)
                             for sl, (p, _) in zip(data[name], outs[name], strict=True)]
            nfevs[name] += [n for _, n in outs[name]]
    baseline = {"ours_cold": "naive_lsq_cold", "ours_warm": "naive_lsq_moved"}
    rows: list[dict[str, Any]] = []
    for name in methods:
        s = np.concatenate(samples[name])
        ref = np.median(np.concatenate(samples[baseline.get(name, name)]))
        pct = percentiles_ms(s)
        rows.append({"method": name, "chains": SABR_CHAINS, "slices": len(CHAIN_EXPIRIES),
                     "quotes_per_chain": len(CHAIN_EXPIRIES) * SABR_STRIKES,
                     "p50_ms": pct["p50_ms"], "p99_ms": pct["p99_ms"],
                     "speedup_vs_naive": float(ref / np.median(s)),
                     "rmse_vol_median": float(np.median(errors[name])),
                     "rmse_vol_max": float(np.max(errors[name])),
                     "median_nfev_per_slice": float(np.median(nfevs[name]))})
    return rows


def main() -> None:
    record("heston_surface", heston_rows())
    record("ssvi_surface", ssvi_rows())
    record("sabr_chain", sabr_rows())


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.1f} s)")
