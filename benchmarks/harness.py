"""Small shared harness for the benchmark scripts.

Each script measures a hot path and its baseline in the same run, prints a table
and calls :func:`record`, which merges its rows into ``benchmarks/results.json``
under the script's name together with a note of the machine.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

RESULTS = Path(__file__).with_name("results.json")


def timings_s(fn: Callable[[], object], repeat: int, warmup: int = 3) -> np.ndarray:
    """Wall-clock seconds of ``repeat`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = np.empty(repeat)
    for i in range(repeat):
        start = time.perf_counter_ns()
        fn()
        out[i] = (time.perf_counter_ns() - start) / 1e9
    return out


def interleaved_timings_s(fns: Mapping[str, Callable[[], object]], repeat: int,
                          warmup: int = 1) -> dict[str, np.ndarray]:
    """:func:`timings_s` of several functions called in turn, round after round.

    A change of load on the machine during the run then hits every function alike,
    which keeps their ratios meaningful on a shared machine.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {name: np.empty(repeat) for name in fns}
    for i in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter_ns()
            fn()
            out[name][i] = (time.perf_counter_ns() - start) / 1e9
    return out


def percentiles_ms(samples_s: np.ndarray) -> dict[str, float]:
    """p50/p90/p99/max of a timing sample, in milliseconds."""
    p50, p90, p99 = np.percentile(samples_s, [50, 90, 99]) * 1e3
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "max_ms": float(samples_s.max() * 1e3)}


def machine() -> dict[str, Any]:
    """What the figures were taken on."""
    return {"python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "numpy": np.__version__}


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    """Print rows as an aligned text table."""
    print(f"\n== {title}")
    if not rows:
        return
    cols = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_fmt(row.get(c, "")) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def record(name: str, rows: list[dict[str, Any]]) -> None:
    """Print the rows and merge them into results.json under ``name``."""
    print_table(name, rows)
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data["machine"] = machine()
    data[name] = rows
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


Lines = list[tuple[int, bytes]]


def _json_loads_only(lines: Lines) -> int:
    loads = json.loads
    return sum(len(loads(raw)) for _, raw in lines)


def decoder_rows(label: Mapping[str, str], lines: Lines,
                 ours: Mapping[str, Callable[[Lines], list[Any]]],
                 baseline: Callable[[Lines], list[Any]], repeat: int) -> list[dict[str, Any]]:
    """Our decoders (by name), the ``json.loads`` + dicts baseline and ``json.loads`` alone.

    Every decoder must produce the baseline's quotes (compared encoded: NaN as null)
    before anything is timed; then all are timed in turn. Each row starts with ``label``.
    """
    n_bytes = sum(len(raw) for _, raw in lines)
    baseline_quotes = baseline(lines)
    expected, quotes = msgspec.json.encode(baseline_quotes), len(baseline_quotes)
    for name, decode in ours.items():
        if msgspec.json.encode(decode(lines)) != expected or not quotes:
            raise SystemExit(f"{dict(label)}: baseline and {name} disagree: fix the baseline")
    fns: dict[str, Callable[[], object]] = {
        name: (lambda decode=decode: decode(lines)) for name, decode in ours.items()}
    fns["baseline_json_loads"] = lambda: baseline(lines)
    fns["json_loads_only"] = lambda: _json_loads_only(lines)
    samples = interleaved_timings_s(fns, repeat=repeat)
    base_rate = len(lines) / float(np.median(samples["baseline_json_loads"]))
    rows: list[dict[str, Any]] = []
    for name, s in samples.items():
        rate = len(lines) / float(np.median(s))
        pct = percentiles_ms(s)
        decoded = name != "json_loads_only"
        rows.append({**label, "method": name, "messages": len(lines),
                     "quotes": quotes if decoded else "",
                     "messages_per_s": rate, "MB_per_s": rate * n_bytes / len(lines) / 1e6,
                     "speedup_vs_json_loads": rate / base_rate,
                     "batch_p50_ms": pct["p50_ms"], "batch_p99_ms": pct["p99_ms"],
                     "same_quotes": True if decoded else ""})
    return rows
