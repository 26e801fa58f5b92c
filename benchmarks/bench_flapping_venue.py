"""A flapping exchange: how much of a clean run's output survives a venue that drops
every connection every few seconds.

Real processes: ``streamer serve-replay`` serves the bundled Deribit recording on
loopback (at ``SPEED``), once clean and once closing every connection every ``DROP_S``
seconds (code 1012, as a venue restarting does), and ``streamer run --sink stdout``
reads it for ``SECONDS``. The surfaces each run published are counted from its stdout
(one JSON line each). Issue 14 asks for at least 60% of the clean run's surfaces with
drops every 3 s over 40 s. The rounds alternate clean and flapping, so a change of load
hits both alike.

Run from the repo root: ``.venv/bin/python benchmarks/bench_flapping_venue.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import record

from streamer.devtools.embedded_broker import free_port
from streamer.devtools.exchanges import bundled_sample

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 40
DROP_S = 3.0
SPEED = 2.0
ROUNDS = int(os.environ.get("ROUNDS", "2"))
SERVING = re.compile(r"on (ws://\S+)")


def _published(drop_s: float | None) -> int:
    port = free_port()
    server_args = [sys.executable, "-m", "streamer.cli", "serve-replay", str(bundled_sample()),
                   "--port", str(port), "--speed", str(SPEED), "--loop"]
    if drop_s is not None:
        server_args += ["--drop-every-s", str(drop_s)]
    server = subprocess.Popen(server_args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = SERVING.search(server.stdout.readline())
        if url is None:
            raise SystemExit("serve-replay did not say where it serves")
        run = subprocess.run(
            [sys.executable, "-m", "streamer.cli", "run", "--config", "config.yaml",
             "--sink", "stdout", "--quiet", "--duration", str(SECONDS),
             "--venue-url", f"deribit={url[1]}/ws/api/v2"],
            cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 120,
            env=dict(os.environ, STREAMER_METRICS__PORT="0"))
        return sum(1 for line in run.stdout.splitlines() if line.startswith("{"))
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    rows: list[dict[str, Any]] = []
    for n in range(ROUNDS):
        clean, flapping = _published(None), _published(DROP_S)
        rows.append({"round": n, "clean_surfaces": clean, "flapping_surfaces": flapping,
                     "share": flapping / clean if clean else float("nan")})
        print(rows[-1], flush=True)
    record("flapping_venue", rows)


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"({time.monotonic() - started:.0f}s)")
