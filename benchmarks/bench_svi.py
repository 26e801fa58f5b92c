"""Raw-SVI calibration of a whole BTC-like chain: our cold and warm fits vs naive least_squares.

A chain is 12 expiries from 2 days to 1.5 years with 50-70 strikes each, from
known raw-SVI parameters plus 1e-4 vol of noise. Several chains (different
seeds) are each fitted several times; the timings are per whole chain.

* ``ours_cold``: ``svi.calibrate(k, iv, t)`` on every slice (grid seed + LM).
* ``ours_warm``: the chain moves a little (parallel shift + tilt of the vols);
  ``svi.calibrate(k, iv_moved, t, previous=<cold fit>)`` on every slice.
* ``ours_cold_chain`` / ``ours_warm_chain``: the same fits through
  ``svi.calibrate_chain`` (every slice of the chain in one batched solver).
* ``naive_lsq_*``: ``scipy.optimize.least_squares`` (trf, bounds, 2-point Jacobian,
  default tolerances) on the 5 raw parameters per slice from a generic start,
  minimising vol residuals, on the same data as the row it is compared with.

RMSE is in decimal vol over each slice's points (median over slices, and max).

Run from the repo root: ``.venv/bin/python benchmarks/bench_svi.py``.
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
from scipy.optimize import least_squares

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import percentiles_ms, record

from streamer.core.models import svi

N_CHAINS = 6
REPEAT = 8
NOISE_VOL = 1e-4
SHIFT, TILT = 0.004, -0.01  # the "small move": +0.4 vol points, -1 point per unit of k
EXPIRIES = np.geomspace(2.0 / 365.0, 1.5, 12)

Slice = tuple[np.ndarray, np.ndarray, float]  # k, iv, t


def true_params(t: float, rng: np.random.Generator) -> svi.SVIParams:
    """BTC-like smile: ATM vol ~50-65 %, mild negative skew, convex wings."""
    atm_vol = 0.5 + 0.1 * np.exp(-t / 0.25) + rng.uniform(-0.03, 0.03)
    rho = rng.uniform(-0.35, 0.05)
    m = rng.uniform(-0.03, 0.05) * np.sqrt(t)
    sigma = rng.uniform(0.3, 0.6) * atm_vol * np.sqrt(t)
    b = rng.uniform(0.6, 1.0) * atm_vol * np.sqrt(t)
    theta = atm_vol * atm_vol * t
    a = theta - b * (rho * (-m) + np.sqrt(m * m + sigma * sigma))
    return svi.SVIParams(a=float(a), b=float(b), rho=float(rho), m=float(m), sigma=float(sigma))


def make_chain(seed: int) -> tuple[list[Slice], list[Slice]]:
    """A chain and the same chain after the small move (same strikes)."""
    rng = np.random.default_rng(seed)
    chain, moved = [], []
    for t in EXPIRIES:
        p = true_params(float(t), rng)
        sd = 0.6 * np.sqrt(t)
        k = np.linspace(max(-3.0 * sd, -1.5), min(2.5 * sd, 1.5), int(rng.integers(50, 71)))
        iv = svi.implied_vol(k, float(t), p) + rng.normal(0.0, NOISE_VOL, k.size)
        chain.append((k, iv, float(t)))
        moved.append((k, iv + SHIFT + TILT * k, float(t)))
    return chain, moved


def naive_fit(k: np.ndarray, iv: np.ndarray, t: float) -> tuple[svi.SVIParams, int]:
    """least_squares from a=0.5 min w, b=0.1, rho=-0.3, m=0, sigma=0.1, with bounds."""
    w = iv * iv * t

    def residuals(x: np.ndarray) -> np.ndarray:
        a, b, rho, m, sigma = x
        tv = a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + sigma * sigma))
        return np.sqrt(np.maximum(tv, 1e-12) / t) - iv

    x0 = np.array([0.5 * w.min(), 0.1, -0.3, 0.0, 0.1])
    lower = [-float(w.max()), 1e-6, -0.999, -2.0, 1e-4]
    upper = [float(w.max()), 5.0, 0.999, 2.0, 5.0]
    res = least_squares(residuals, x0, bounds=(lower, upper))
    a, b, rho, m, sigma = (float(v) for v in res.x)
    return svi.SVIParams(a=a, b=b, rho=rho, m=m, sigma=sigma), int(res.nfev)


def rmse(sl: Slice, p: svi.SVIParams) -> float:
    """Unweighted RMS of model minus market vol."""
    k, iv, t = sl
    err = svi.implied_vol(k, t, p) - iv
    return float(np.sqrt(np.mean(err * err)))


def timed(fn: Callable[[], list[Any]]) -> tuple[float, list[Any]]:
    start = time.perf_counter_ns()
    out = fn()
    return (time.perf_counter_ns() - start) / 1e9, out


def main() -> None:
    methods = ["ours_cold", "ours_cold_chain", "naive_lsq_cold", "ours_warm", "ours_warm_chain",
               "naive_lsq_moved"]
    samples: dict[str, list[float]] = {m: [] for m in methods}
    errors: dict[str, list[float]] = {m: [] for m in methods}
    evals: dict[str, list[int]] = {m: [] for m in methods}
    not_converged = dict.fromkeys(methods, 0)
    n_quotes = 0
    for seed in range(N_CHAINS):
        chain, moved = make_chain(1000 + seed)
        n_quotes = sum(k.size for k, _, _ in chain)
        cold_fits = [svi.calibrate(k, iv, t) for k, iv, t in chain]  # warm-up, and the seeds
        runs: dict[str, tuple[list[Slice], Callable[[], list[Any]]]] = {
            "ours_cold": (chain, lambda c=chain: [svi.calibrate(*s) for s in c]),
            "naive_lsq_cold": (chain, lambda c=chain: [naive_fit(*s) for s in c]),
            "ours_cold_chain": (chain, lambda c=chain: svi.calibrate_chain(*zip(*c, strict=True))),
            "ours_warm": (moved, lambda c=moved, f=cold_fits: [
                svi.calibrate(k, iv, t, previous=fit.params)
                for (k, iv, t), fit in zip(c, f, strict=True)]),
            "ours_warm_chain": (moved, lambda c=moved, f=cold_fits: svi.calibrate_chain(
                *zip(*c, strict=True), previous=[fit.params for fit in f])),
            "naive_lsq_moved": (moved, lambda c=moved: [naive_fit(*s) for s in c]),
        }
        outs: dict[str, list[Any]] = {}
        for _ in range(REPEAT):  # methods in turn, so load changes hit them alike
            for name, (_, run) in runs.items():
                seconds, outs[name] = timed(run)
                samples[name].append(seconds)
        for name, (data, _) in runs.items():
            out = outs[name]
            if name.startswith("ours"):
                errors[name] += [rmse(s, f.params) for s, f in zip(data, out, strict=True)]
                evals[name] += [f.nfev for f in out]
                not_converged[name] += sum(f.status != "converged" for f in out)
            else:
                errors[name] += [rmse(s, p) for s, (p, _) in zip(data, out, strict=True)]
                evals[name] += [nfev for _, nfev in out]

    baseline = {"ours_cold": "naive_lsq_cold", "ours_cold_chain": "naive_lsq_cold",
                "ours_warm": "naive_lsq_moved", "ours_warm_chain": "naive_lsq_moved"}
    rows: list[dict[str, Any]] = []
    for name in methods:
        s = np.asarray(samples[name])
        ref = np.median(samples[baseline.get(name, name)])
        pct = percentiles_ms(s)
        rows.append({"method": name, "chains": N_CHAINS, "slices": len(EXPIRIES),
                     "quotes_per_chain": n_quotes, "p50_ms": pct["p50_ms"],
                     "p99_ms": pct["p99_ms"], "speedup_vs_naive": float(ref / np.median(s)),
                     "rmse_vol_median": float(np.median(errors[name])),
                     "rmse_vol_max": float(np.max(errors[name])),
                     "median_nfev_per_slice": float(np.median(evals[name])),
                     "slices_not_converged": not_converged[name]})
    record("svi_chain", rows)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.1f} s)")
