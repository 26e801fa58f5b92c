"""Scale: the CPU one process needs for every venue's chains at once, on one core.

Issue 13's goal 7: one process keeps up with Deribit's BTC + ETH + SOL chains and OKX,
Bybit and Binance BTC and ETH at their full rates, every underlying's surface at
<= 250 ms intervals. Each venue's market is synthesised (``streamer synth``, one seed,
every instrument requoted every ``REQUOTE_S``; Binance sends its one array a second, its
real rate; SOL is ETH's market at SOL's price) and replayed through that venue's real
decoder and engine on the file's clock, as ``streamer replay`` does, timing the CPU
(``time.process_time``) of the decoding and of the batches.

Reported per venue and in total: messages and quotes per second of market, CPU seconds
per second of market (``cpu_share``: 1.0 is one core), ``headroom`` (its inverse: how
many times this load one core could carry), and per underlying the file-time interval
between its surfaces (p50 / max, ms). Not included: the websocket frames and inflation
(README, "Scaling out": measured live against the replay server), and Kafka sends.

Run from the repo root: ``.venv/bin/python benchmarks/bench_scale.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dataclasses
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import record

from streamer.config import load_config
from streamer.devtools import synth_market
from streamer.devtools.synth import synthesise
from streamer.pipeline.engine import Engine
from streamer.sources.registry import make_decoder
from streamer.tickfile import read_tickfile

DURATION_S = 30.0
REQUOTE_S = 0.25
WORLD = {"deribit": ("BTC", "ETH", "SOL"), "okx": ("BTC", "ETH"), "bybit": ("BTC", "ETH"),
         "binance": ("BTC", "ETH")}


def _with_sol() -> dict[str, Any]:
    """synth's SPECS with a SOL market (ETH's smiles and strikes scaled to SOL's spot)."""
    eth = synth_market.SPECS["ETH"]
    scale = 200.0 / eth.spot
    sol = dataclasses.replace(eth, name="SOL", spot=200.0, strike_steps=tuple(
        max(1.0, round(s * scale)) for s in eth.strike_steps))
    return {**synth_market.SPECS, "SOL": sol}


def _synthesise(tmp: Path) -> dict[str, Path]:
    saved = dict(synth_market.SPECS)
    synth_market.SPECS.update(_with_sol())
    try:
        files = {}
        for venue, underlyings in WORLD.items():
            out = tmp / f"{venue}.ndjson"
            synthesise(out, tmp / f"{venue}.truth.json", seed=13, duration_s=DURATION_S,
                       underlyings=underlyings, venue=venue,
                       requote_s=None if venue == "binance" else REQUOTE_S)
            files[venue] = out
        return files
    finally:
        synth_market.SPECS.clear()
        synth_market.SPECS.update(saved)


def _replay(venue: str, path: Path) -> dict[str, Any]:
    config = load_config(None, env={})
    engine = Engine(venue, config.calibration, config.batch, config.dynamics, config.analytics)
    decoder = make_decoder(venue)
    lines = list(read_tickfile(path))
    decode_s = engine_s = 0.0
    quotes = 0
    stamps: dict[str, list[int]] = defaultdict(list)
    for now_ns, raw in lines:
        start = time.process_time()
        decoded = decoder.decode(raw, now_ns)
        mid = time.process_time()
        for quote in decoded.quotes:
            engine.on_quote(quote)
        for update in engine.on_timer(now_ns):
            stamps[update.underlying].append(update.exchange_ts_ms)
        decode_s += mid - start
        engine_s += time.process_time() - mid
        quotes += len(decoded.quotes)
    span_s = (lines[-1].received_ts_ns - lines[0].received_ts_ns) / 1e9
    gaps = {u: np.diff(ts[len(ts) // 10:]) for u, ts in stamps.items()}  # after warm-up
    return {"span_s": span_s, "messages": len(lines), "quotes": quotes, "decode_s": decode_s,
            "engine_s": engine_s, "gaps": gaps}


def main() -> None:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        files = _synthesise(Path(tmp))
        runs = {venue: _replay(venue, path) for venue, path in files.items()}
    total_cpu = sum(r["decode_s"] + r["engine_s"] for r in runs.values())
    span = max(r["span_s"] for r in runs.values())
    for venue, r in runs.items():
        cpu = r["decode_s"] + r["engine_s"]
        for underlying, gaps in sorted(r["gaps"].items()):
            rows.append({
                "venue": venue, "underlying": underlying,
                "msgs_per_s": r["messages"] / r["span_s"],
                "quotes_per_s": r["quotes"] / r["span_s"],
                "venue_cpu_share": cpu / r["span_s"],
                "venue_decode_share": r["decode_s"] / r["span_s"],
                "surface_gap_p50_ms": float(np.median(gaps)) if gaps.size else float("nan"),
                "surface_gap_max_ms": float(gaps.max()) if gaps.size else float("nan")})
    rows.append({"venue": "all", "underlying": "all",
                 "msgs_per_s": sum(r["messages"] for r in runs.values()) / span,
                 "quotes_per_s": sum(r["quotes"] for r in runs.values()) / span,
                 "venue_cpu_share": total_cpu / span,
                 "venue_decode_share": sum(r["decode_s"] for r in runs.values()) / span,
                 "headroom": span / total_cpu})
    record("scale", rows)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.1f} s)")
