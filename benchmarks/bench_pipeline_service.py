"""``streamer run --speed 20`` on the bundled recording and the embedded broker, the
engine inline on the event loop (the baseline), on its worker thread and in its worker
process, side by side.

Each run is the real service in-process (replay server on loopback, websocket session,
Tansu broker, Kafka producer); the figures come from its own histograms, read from its
registry at the end: event-loop lag (``streamer_event_loop_lag_seconds``, sampled every
100 ms) and tick to publish (``streamer_tick_to_publish_seconds{stage="receive"}``, the
newest tick of a batch to the producer's ack). Percentiles are interpolated inside the
histogram's buckets, so they are as coarse as the buckets.

Run from the repo root: ``.venv/bin/python benchmarks/bench_pipeline_service.py``;
``--workers process --models svi,sabr`` runs only those (printed, not recorded: the
recorded rows are the whole table).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import print_table, record

from streamer.app.service import Service
from streamer.config import load_config

SPEED = 20.0
DURATION_S = 14.0  # the bundled 240 s at 20x, and the last batches
MODELS = ("svi", "sabr", "ssvi")
WORKERS = ("inline", "thread", "process")


def _histogram(registry: Any, name: str, labels: dict[str, str] | None = None
               ) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of one histogram series."""
    out = []
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name != f"{name}_bucket":
                continue
            extra = {k: v for k, v in sample.labels.items() if k != "le"}
            if extra == (labels or {}):
                out.append((float(sample.labels["le"]), sample.value))
    return sorted(out)


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    total = buckets[-1][1] if buckets else 0.0
    if total == 0:
        return float("nan")
    want, lo_edge, lo_count = q * total, 0.0, 0.0
    for edge, count in buckets:
        if count >= want:
            if edge == float("inf"):
                return lo_edge
            share = (want - lo_count) / max(count - lo_count, 1e-12)
            return lo_edge + share * (edge - lo_edge)
        lo_edge, lo_count = edge, count
    return lo_edge


def run(worker: str, model: str) -> dict[str, Any]:
    config = load_config(None, env={})
    config = msgspec.structs.replace(
        config, replay=msgspec.structs.replace(config.replay, speed=SPEED),
        calibration=msgspec.structs.replace(config.calibration, worker=worker, model=model),
        metrics=msgspec.structs.replace(config.metrics, port=0))
    service = Service(config, duration_s=DURATION_S, progress_stream=io.StringIO())
    asyncio.run(service.run())
    registry = service.metrics.registry
    lag = _histogram(registry, "streamer_event_loop_lag_seconds")
    t2p = _histogram(registry, "streamer_tick_to_publish_seconds", {"stage": "receive"})
    return {"worker": worker, "model": model, "lag_samples": int(lag[-1][1]) if lag else 0,
            "lag_p50_ms": _quantile(lag, 0.5) * 1e3, "lag_p99_ms": _quantile(lag, 0.99) * 1e3,
            "surfaces": int(t2p[-1][1]) if t2p else 0,
            "tick_to_publish_p50_ms": _quantile(t2p, 0.5) * 1e3,
            "tick_to_publish_p99_ms": _quantile(t2p, 0.99) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default=",".join(WORKERS))
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    workers, models = args.workers.split(","), args.models.split(",")
    rows = [run(worker, model) for model in models for worker in workers]
    if (tuple(workers), tuple(models)) == (WORKERS, MODELS):
        record("pipeline_service", rows)
    else:
        print_table("pipeline_service", rows)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.1f} s)")
