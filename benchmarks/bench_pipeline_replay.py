"""``streamer replay`` speed (x real time) and determinism (the same bytes every run).

The bundled recording (``N_LINES`` lines of it, written to a temporary tick file: all
of it, 240 s of BTC and ETH, ~44k lines) is replayed by the real CLI in a subprocess,
to stdout (one JSON surface a line), by one process and by one per core (``--workers
auto``: the underlyings calibrated apart, app/replay_workers.py), interleaved, twice
each. ``x_realtime`` is the recorded span of those lines over the replay's wall time
(the baseline: the recording's own pace, 1x); ``identical`` says whether all four runs
wrote the same bytes (sha256).

Run from the repo root: ``.venv/bin/python benchmarks/bench_pipeline_replay.py``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import record

from streamer.devtools.exchanges import bundled_sample
from streamer.tickfile import TickFileWriter, read_tickfile

N_LINES = None  # the whole recording
STREAMER = Path(sys.executable).with_name("streamer")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        head = Path(tmp) / "head.ndjson.gz"
        lines = list(islice(read_tickfile(bundled_sample()), N_LINES))
        with TickFileWriter(head) as writer:
            for line in lines:
                writer.write(line.received_ts_ns, line.raw)
        span_s = (lines[-1].received_ts_ns - lines[0].received_ts_ns) / 1e9
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        rows: list[dict[str, Any]] = []
        digests = []
        # one process against one per core (replay.workers: auto), interleaved
        for run, workers in enumerate(("1", "auto", "1", "auto"), start=1):
            started = time.perf_counter()
            out = subprocess.run([str(STREAMER), "replay", str(head), "--quiet",
                                  "--workers", workers],
                                 capture_output=True, check=True, env=env).stdout
            wall_s = time.perf_counter() - started
            digests.append(hashlib.sha256(out).hexdigest())
            rows.append({"run": run, "workers": workers, "lines": len(lines),
                         "recorded_s": span_s, "wall_s": wall_s,
                         "x_realtime": span_s / wall_s, "surfaces": out.count(b"\n"),
                         "sha256": digests[-1][:16]})
        for row in rows:
            row["identical"] = len(set(digests)) == 1
    record("pipeline_replay_cli", rows)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.1f} s)")
