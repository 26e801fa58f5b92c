"""The offline pipeline: the bundled recording through decoder, engine and an in-memory sink.

The loop is ``streamer.app.file_replay.replay_file``'s, run synchronously so that each batch
can be timed (the first ``N_LINES`` lines, read into memory first; the default
``AppConfig``). Two runs on the same lines:

* ``warm_start``: the engine as shipped (each slice refits from its previous fit).
* ``cold_only``: the baseline, every slice fitted from scratch at every batch. The
  configuration has no switch for this, so the benchmark swaps the engine's model
  adapter for one that drops ``previous`` (the calibrator still labels such fits
  ``warm``, and still retries cold when a fit is rejected).

Per batch: the engine's own calibration time (``EngineReport.calibration_seconds``,
one entry per cut underlying) and the wall time of each ``on_timer`` call that cut;
``x_realtime`` is the recorded time span of the lines over the replay's wall time.

Run from the repo root: ``.venv/bin/python benchmarks/bench_pipeline.py``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import percentiles_ms, record

import streamer.pipeline.engine as engine_module
from streamer.config import AppConfig, load_config
from streamer.core.models.fit import Fit
from streamer.core.models.protocol import SliceModel
from streamer.core.models.svi import SVIModel
from streamer.pipeline.engine import Engine
from streamer.sinks.base import MemorySink
from streamer.sources.deribit.protocol import DeribitDecoder
from streamer.tickfile import TickLine, read_tickfile

SAMPLE = Path(__file__).resolve().parents[1] / "streamer" / "data" / "deribit_sample.ndjson.gz"
N_LINES = 8_000


@dataclass(frozen=True)
class ColdSVI(SVIModel):
    """Raw SVI that ignores the previous fit: a cold calibration every time."""

    def calibrate(self, k: Any, iv: Any, t: float, weights: Any, previous: Any | None,
                  **kw: Any) -> Fit[Any]:
        return super().calibrate(k, iv, t, weights, None, **kw)

    def calibrate_many(self, k: Any, iv: Any, t: Any, weights: Any, previous: Any,
                       **kw: Any) -> list[Fit[Any]]:
        # The engine fits a chain through this batched path: drop previous here too.
        return super().calibrate_many(k, iv, t, weights, [None] * len(previous), **kw)


@contextlib.contextmanager
def cold_only() -> Iterator[None]:
    """Make every Engine built inside the block use ``ColdSVI``."""
    original = engine_module.model_for

    def cold_model_for(name: str) -> SliceModel:
        return ColdSVI() if name == "svi" else original(name)

    engine_module.model_for = cold_model_for
    try:
        yield
    finally:
        engine_module.model_for = original


def replay(lines: list[TickLine], config: AppConfig) -> dict[str, Any]:
    """``replay_file`` without asyncio, timing every cut."""
    decoder = DeribitDecoder()
    # the live service's time budget, so the deferred slices it reports are the live ones
    engine = Engine(config.venues[0].name, config.calibration, config.batch,
                    budget_clock=time.perf_counter)
    sink = MemorySink()
    ticks, now_ns = 0, 0
    cut_s: list[float] = []
    calib_s: list[float] = []
    slices: Counter[str] = Counter()
    fallbacks = deferred = 0

    def drain() -> None:
        nonlocal fallbacks, deferred
        report = engine.drain_report()
        calib_s.extend(s for _, s in report.calibration_seconds)
        slices.update({status: n for (_, status), n in report.slices.items()})
        fallbacks += sum(report.fallbacks.values())
        deferred += report.deferred_slices

    start = time.perf_counter_ns()
    for now_ns, raw in lines:
        decoded = decoder.decode(raw, now_ns)
        for quote in decoded.quotes:
            engine.on_quote(quote)
        ticks += len(decoded.quotes)
        t0 = time.perf_counter_ns()
        updates = engine.on_timer(now_ns)
        if updates:
            cut_s.append((time.perf_counter_ns() - t0) / 1e9)
            drain()
        for update in updates:
            sink.publish(msgspec.structs.replace(update, published_ts_ns=now_ns))
    for update in engine.flush(now_ns):
        sink.publish(msgspec.structs.replace(update, published_ts_ns=now_ns))
    total_s = (time.perf_counter_ns() - start) / 1e9
    drain()
    rmse = [s.rmse_vol for u in sink.updates for s in u.slices if np.isfinite(s.rmse_vol)]
    return {"ticks": ticks, "total_s": total_s, "cut_s": np.asarray(cut_s),
            "calib_s": np.asarray(calib_s), "updates": len(sink.updates), "slices": slices,
            "fallbacks": fallbacks, "deferred": deferred, "rmse": np.asarray(rmse)}


def main() -> None:
    config = load_config(None, env={})  # the AppConfig defaults, whatever the environment
    lines = list(islice(read_tickfile(SAMPLE), N_LINES))
    span_s = (lines[-1].received_ts_ns - lines[0].received_ts_ns) / 1e9  # recorded time
    runs = {"warm_start": replay(lines, config)}
    with cold_only():
        runs["cold_only"] = replay(lines, config)
    base_rate = runs["cold_only"]["ticks"] / runs["cold_only"]["total_s"]
    rows: list[dict[str, Any]] = []
    for name, r in runs.items():
        rate = r["ticks"] / r["total_s"]
        calib, cut = percentiles_ms(r["calib_s"]), percentiles_ms(r["cut_s"])
        rows.append({"method": name, "lines": len(lines), "ticks": r["ticks"],
                     "ticks_per_s": rate, "speedup_vs_cold": rate / base_rate,
                     "x_realtime": span_s / r["total_s"],
                     "updates": r["updates"], "calib_p50_ms": calib["p50_ms"],
                     "calib_p99_ms": calib["p99_ms"], "calib_max_ms": calib["max_ms"],
                     "cut_p50_ms": cut["p50_ms"], "cut_p99_ms": cut["p99_ms"],
                     "slices_fitted": sum(r["slices"].values()),
                     "deferred_slices": r["deferred"], "fallbacks": r["fallbacks"],
                     "rmse_vol_median": float(np.median(r["rmse"])),
                     "rmse_vol_p99": float(np.percentile(r["rmse"], 99))})
    record("pipeline_replay", rows)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.1f} s)")
