"""The cost of one underlying's batch (snapshot, implied vols, fit, acceptance,
analytics, dynamics, message) in yardsticks, warm against cold and against the path
before the chain-level passes, on two worlds.

Worlds: the head of the bundled recording (BTC and ETH, 9-11 expiries), and a
14-expiry, ~830-instrument BTC chain shaped like Deribit's (``streamer synth``'s market
with 14 expiries and finer strike steps, generated in-process into a temporary file).

Yardstick: one naive ``scipy.optimize.least_squares`` raw-SVI fit of one 40-quote slice
from scratch with bounds, timed once after every few batches of the same run, so a
change of load on the shared machine moves both. Every batch is ``Engine._cut`` of
one underlying, timed around the call (decode excluded).

Paths, each replaying the same lines with a fresh engine:

* ``warm``: the engine as shipped (each slice refits from its previous fit).
* ``cold``: every slice fitted from scratch every batch (the model adapter drops the
  previous fit); ``warm_speedup`` is cold p50 over warm p50.
* ``before``: warm, with the per-expiry snapshots and the bisection-only delta
  strikes this branch replaced (patched back in for the run).

Run from the repo root: ``.venv/bin/python benchmarks/bench_pipeline_batch.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import contextlib
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import record

import streamer.pipeline.engine as engine_module
from streamer.config import load_config
from streamer.core import smile
from streamer.core.models.fit import Fit
from streamer.core.models.protocol import SliceModel
from streamer.core.models.svi import SVIModel
from streamer.devtools import synth_market
from streamer.devtools.exchanges import bundled_sample
from streamer.devtools.synth import synthesise
from streamer.pipeline.engine import Engine
from streamer.pipeline.snapshot import SliceSnapshot, build_slice, count_rejects
from streamer.sources.registry import make_decoder
from streamer.tickfile import TickLine, read_tickfile

BUNDLED_LINES = 6_000
CHAIN14_SECONDS = 40.0
YARDSTICK_EVERY = 4  # batches
CHAIN14_DAYS = (1, 2, 3, 4, 7, 14, 21, 28, 56, 84, 112, 175, 266, 357)
CHAIN14_STEPS = (250, 250, 500, 500, 500, 1000, 1000, 1000, 2500, 2500, 2500, 2500, 5000,
                 5000)


# -- the yardstick ---------------------------------------------------------------------

def _yardstick_slice() -> tuple[np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(40)
    t = 30 / 365
    k = np.linspace(-0.45, 0.35, 40)
    a, b, rho, m, sig = 0.004, 0.05, -0.3, 0.02, 0.12
    w = a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + sig * sig))
    return k, np.sqrt(w / t) + rng.normal(0, 1e-3, k.size), t


def yardstick(k: np.ndarray, iv: np.ndarray, t: float) -> float:
    """One naive raw-SVI least_squares fit from scratch; returns its wall seconds."""
    def residual(x: np.ndarray) -> np.ndarray:
        a, b, rho, m, sig = x
        w = a + b * (rho * (k - m) + np.sqrt((k - m) ** 2 + sig * sig))
        return np.sqrt(np.maximum(w, 1e-12) / t) - iv

    start = time.perf_counter_ns()
    least_squares(residual, [0.01, 0.1, 0.0, 0.0, 0.1],
                  bounds=([-1.0, 1e-6, -0.999, -1.0, 1e-4], [1.0, 5.0, 0.999, 1.0, 5.0]))
    return (time.perf_counter_ns() - start) / 1e9


# -- the worlds ------------------------------------------------------------------------

def bundled_lines() -> list[TickLine]:
    return list(islice(read_tickfile(bundled_sample()), BUNDLED_LINES))


def chain14_lines() -> list[TickLine]:
    """A 14-expiry BTC chain from synth's market (its SPECS patched for the call)."""
    spec = dataclasses.replace(synth_market.SPECS["BTC"], expiry_days=CHAIN14_DAYS,
                               strike_steps=CHAIN14_STEPS)
    original = synth_market.SPECS["BTC"]
    synth_market.SPECS["BTC"] = spec
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "chain14.ndjson"
            synthesise(out, Path(tmp) / "truth.json", seed=14, duration_s=CHAIN14_SECONDS,
                       underlyings=("BTC",))
            return list(read_tickfile(out))
    finally:
        synth_market.SPECS["BTC"] = original


# -- the paths -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ColdSVI(SVIModel):
    """Raw SVI that ignores the previous fit: a cold calibration every time."""

    def calibrate(self, k: Any, iv: Any, t: float, weights: Any, previous: Any | None,
                  **kw: Any) -> Fit[Any]:
        return super().calibrate(k, iv, t, weights, None, **kw)

    def calibrate_many(self, k: Any, iv: Any, t: Any, weights: Any, previous: Any,
                       **kw: Any) -> list[Fit[Any]]:
        return super().calibrate_many(k, iv, t, weights, [None] * len(previous), **kw)


@contextlib.contextmanager
def cold() -> Iterator[None]:
    original = engine_module.model_for

    def cold_model_for(name: str) -> SliceModel:
        return ColdSVI() if name == "svi" else original(name)

    engine_module.model_for = cold_model_for  # type: ignore[assignment]
    try:
        yield
    finally:
        engine_module.model_for = original


@contextlib.contextmanager
def before() -> Iterator[None]:
    """Snapshots one expiry at a time and delta strikes by bisection only."""
    def per_expiry(self: Engine, state: Any, expiries: list[int], now_ms: int
                   ) -> list[SliceSnapshot]:
        snaps = []
        for expiry in expiries:
            snap, codes, quotes = build_slice(
                state.book.quotes(expiry), expiry, now_ms,
                stale_after_ms=self.calibration.stale_after_ms,
                max_rel_spread=self.calibration.max_rel_spread)
            for reason, n in count_rejects(codes, quotes, state.last_cut_ns).items():
                self._report.rejects[(self.venue, reason)] += n
            if snap is not None:
                snaps.append(snap)
        return snaps

    saved = Engine._snapshots, smile._newton_delta_strikes
    Engine._snapshots = per_expiry  # type: ignore[method-assign]
    def bisection_only(vol_rows: Any, sqrt_t: Any, s_atm: np.ndarray, deltas: np.ndarray,
                       half: Any, s_skew: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((s_atm.size, 2 * deltas.size)), np.zeros(s_atm.size, bool)

    smile._newton_delta_strikes = bisection_only  # type: ignore[assignment]
    try:
        yield
    finally:
        Engine._snapshots, smile._newton_delta_strikes = saved  # type: ignore[method-assign]


PATHS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "warm": contextlib.nullcontext, "cold": cold, "before": before}


def run(lines: list[TickLine], yard: list[float]) -> dict[str, Any]:
    """Replay ``lines`` through a fresh engine, timing every cut of one underlying."""
    config = load_config(None, env={})
    # no budget clock: no time budget, every cut fits all its slices
    engine = Engine("deribit", config.calibration, config.batch, config.dynamics,
                    config.analytics)
    decoder = make_decoder("deribit")
    cut_s: list[float] = []
    k, iv, t = _yardstick_slice()
    original_cut = engine._cut

    def timed_cut(name: str, state: Any) -> Any:
        start = time.perf_counter_ns()
        out = original_cut(name, state)
        cut_s.append((time.perf_counter_ns() - start) / 1e9)
        if len(cut_s) % YARDSTICK_EVERY == 0:
            yard.append(yardstick(k, iv, t))
        return out

    engine._cut = timed_cut  # type: ignore[method-assign]
    surfaces = 0
    started = time.perf_counter_ns()
    for now_ns, raw in lines:
        for quote in decoder.decode(raw, now_ns).quotes:
            engine.on_quote(quote)
        surfaces += len(engine.on_timer(now_ns))
    wall_s = (time.perf_counter_ns() - started) / 1e9
    slices = engine.drain_report().slices
    return {"cut_s": np.asarray(cut_s), "surfaces": surfaces, "wall_s": wall_s,
            "slices": sum(slices.values())}


def main() -> None:
    worlds = {"bundled": bundled_lines(), "chain14": chain14_lines()}
    rows: list[dict[str, Any]] = []
    for world, lines in worlds.items():
        yard: list[float] = []
        for _ in range(10):
            yard.append(yardstick(*_yardstick_slice()))
        results = {}
        for path, ctx in PATHS.items():
            with ctx():
                results[path] = run(lines, yard)
        y50 = float(np.median(yard))
        cold50 = float(np.median(results["cold"]["cut_s"]))
        before50 = float(np.median(results["before"]["cut_s"]))
        for path, r in results.items():
            p50, p99 = np.percentile(r["cut_s"], [50, 99])
            rows.append({
                "world": world, "path": path, "batches": r["cut_s"].size,
                "slices_per_batch": r["slices"] / max(r["cut_s"].size, 1),
                "batch_p50_ms": p50 * 1e3, "batch_p99_ms": p99 * 1e3,
                "yardstick_p50_ms": y50 * 1e3,
                "p50_yardsticks": p50 / y50, "p99_yardsticks": p99 / y50,
                "cold_over_this_p50": cold50 / p50, "before_over_this_p50": before50 / p50})
    record("pipeline_batch", rows)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.1f} s)")
