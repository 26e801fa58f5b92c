"""Implied vol of 100,000 crypto-like options: ours vs py_vollib vs a naive Newton.

Options: F = 1, log-moneyness ln(K/F) uniform in [-1.5, 1.5] (5 % in [-3, 3]),
t log-uniform from 1 hour to 2 years, vol uniform in [0.2, 2.0], calls and puts,
priced with our undiscounted Black-76. Errors are |implied - true| in decimal vol
over the options whose time value exceeds ``TIME_VALUE_FLOOR * F`` (the rest are
not invertible by construction and every method gets them wrong).

Run from the repo root: ``.venv/bin/python benchmarks/bench_implied_vol.py``.
"""

from __future__ import annotations

import os
import sys

# Figures are per core: OpenBLAS's worker threads, on a 2-core machine shared with other
# work, make the small matrix products of the calibrations up to 20x slower. Set before
# numpy loads OpenBLAS; the baselines (scipy, QuantLib, py_vollib) run under the same.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import interleaved_timings_s, percentiles_ms, record

from streamer.core import black76
from streamer.core.implied_vol import TIME_VALUE_FLOOR, implied_vol

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # py_vollib points to `vollib`
    from py_vollib.black.implied_volatility import implied_volatility as vollib_iv

N = 100_000
N_VOLLIB = 5_000
SEED = 20241129
HOUR = 1.0 / (365.0 * 24.0)
BAD_ERR = 1e-4


def make_options(n: int, seed: int) -> dict[str, np.ndarray]:
    """Forward 1, strikes, times, true vols, call flags and Black-76 prices."""
    rng = np.random.default_rng(seed)
    k = rng.uniform(-1.5, 1.5, n)
    tail = rng.random(n) < 0.05
    k[tail] = rng.uniform(-3.0, 3.0, int(tail.sum()))
    t = np.exp(rng.uniform(np.log(HOUR), np.log(2.0), n))
    vol = rng.uniform(0.2, 2.0, n)
    is_call = rng.random(n) < 0.5
    strike = np.exp(k)
    price = black76.price(1.0, strike, t, vol, is_call)
    intrinsic = np.maximum(np.where(is_call, 1.0 - strike, strike - 1.0), 0.0)
    return {"strike": strike, "t": t, "vol": vol, "is_call": is_call, "price": price,
            "valid": price - intrinsic > TIME_VALUE_FLOOR * 1.0, "otm": intrinsic == 0.0}


def naive_newton(price: np.ndarray, strike: np.ndarray, t: np.ndarray,
                 is_call: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Plain Newton on the price from vol 0.5, no bracketing or safeguards."""
    v = np.full_like(price, 0.5)
    with np.errstate(all="ignore"):
        for _ in range(iterations):
            v = v - (black76.price(1.0, strike, t, v, is_call) - price) / black76.vega(
                1.0, strike, t, v)
    return v


def vollib_loop(price: np.ndarray, strike: np.ndarray, t: np.ndarray,
                is_call: np.ndarray) -> np.ndarray:
    """py_vollib (Let's Be Rational) one option at a time, r = 0 (undiscounted)."""
    out = np.empty(price.size)
    flags = np.where(is_call, "c", "p")
    for i in range(price.size):
        try:
            out[i] = vollib_iv(float(price[i]), 1.0, float(strike[i]), 0.0, float(t[i]),
                               str(flags[i]))
        except Exception:  # its below-intrinsic / above-maximum exceptions
            out[i] = np.nan
    return out


def accuracy(est: np.ndarray, true: np.ndarray, valid: np.ndarray, otm: np.ndarray
             ) -> dict[str, float]:
    """Max/median error over finite results; NaN and > BAD_ERR counted as bad.

    The ``_otm`` columns leave out in-the-money options: their time value is a
    difference ``price - intrinsic`` that carries a rounding error of about
    ``eps * max(F, K)``, which alone moves the vol by up to ~1e-3 when the time
    value is near the 1e-14 floor; no solver can do better there.
    """
    err = np.abs(est - true)
    finite = np.isfinite(err)
    out: dict[str, float] = {}
    for suffix, mask in [("", valid), ("_otm", valid & otm)]:
        e, f = err[mask], finite[mask]
        out[f"max_abs_err{suffix}"] = float(e[f].max()) if f.any() else float("nan")
        if not suffix:
            out["median_abs_err"] = float(np.median(e[f])) if f.any() else float("nan")
        out[f"bad_fraction{suffix}"] = float(np.mean(~f | (e > BAD_ERR)))
    out["nan_fraction"] = float(np.mean(~finite[valid]))
    return out


def main() -> None:
    opt = make_options(N, SEED)
    args = (opt["price"], 1.0, opt["strike"], opt["t"], opt["is_call"])
    newton_args = (opt["price"], opt["strike"], opt["t"], opt["is_call"])
    sub = np.random.default_rng(SEED + 1).choice(N, N_VOLLIB, replace=False)
    sub_args = (opt["price"][sub], opt["strike"][sub], opt["t"][sub], opt["is_call"][sub])
    samples = interleaved_timings_s({"ours": lambda: implied_vol(*args),
                                     "newton": lambda: naive_newton(*newton_args),
                                     "vollib": lambda: vollib_loop(*sub_args)}, repeat=8)
    ours_s, newton_s, vollib_s = samples["ours"], samples["newton"], samples["vollib"]
    ours, newton = implied_vol(*args), naive_newton(*newton_args)
    vollib = vollib_loop(*sub_args)

    vollib_rate = N_VOLLIB / float(np.median(vollib_s))
    rows: list[dict[str, Any]] = []
    for method, n, samples, est, idx in [
        ("ours_vectorised", N, ours_s, ours, slice(None)),
        ("py_vollib_loop", N_VOLLIB, vollib_s, vollib, sub),
        ("naive_newton_20", N, newton_s, newton, slice(None)),
    ]:
        rate = n / float(np.median(samples))
        pct = percentiles_ms(samples)
        rows.append({"method": method, "n_options": n, "valid": int(opt["valid"][idx].sum()),
                     "options_per_s": rate, "speedup_vs_vollib": rate / vollib_rate,
                     "p50_ms": pct["p50_ms"], "p99_ms": pct["p99_ms"],
                     **accuracy(est, opt["vol"][idx], opt["valid"][idx], opt["otm"][idx])})
    # Same 5,000 options for all three, so the accuracy columns compare like with like.
    for method, est in [("ours_on_vollib_subsample", ours[sub]),
                        ("naive_newton_on_vollib_subsample", newton[sub])]:
        rows.append({"method": method, "n_options": N_VOLLIB,
                     "valid": int(opt["valid"][sub].sum()),
                     **accuracy(est, opt["vol"][sub], opt["valid"][sub], opt["otm"][sub])})
    record("implied_vol", rows)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.1f} s)")
