"""Twenty browsers on /ui/events against none: does the service's tick→publish move?

``streamer run`` (in process, the bundled Deribit replay at the configured speed,
``--sink stdout`` to a discarded stream, the default ``config.yaml`` otherwise) runs
``SECONDS`` of wall time, alternately with no reader and with ``CLIENTS`` Server-Sent
Events readers in a separate process (as browsers are), ``ROUNDS`` times each. Every
run replays the same opening of the recording. Tick→publish is the service's own
per-surface figure (newest quote's receive time to the sink's delivery), taken after
``SETTLE_S`` so the readers are connected. The issue asks that 20 readers do not move
its p99 by more than 1 ms. A p99 of a hundred-odd surfaces per run moves by more than
that from run to run with no reader at all, so the table also gives the event-loop time
the streams take per surface (what the readers can add to any surface's latency) and
a bootstrap 90% interval of the p99 difference.

Run from the repo root: ``.venv/bin/python benchmarks/bench_ui_clients.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import percentiles_ms, record

from streamer.app.service import Service
from streamer.config import load_config
from streamer.ui.hub import SurfaceHub

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 20
SECONDS = 16.0
SETTLE_S = 2.0
ROUNDS = 4


# The readers' process imports nothing of ours: it starts in a fraction of a second.
READERS = """
import asyncio, contextlib, sys

async def read(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
    writer.write(b"GET /ui/events HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n")
    count = 0
    with contextlib.suppress(ConnectionError):
        while line := await reader.readline():
            count += line.startswith(b"event: surface")
    writer.close()
    return count

async def main(port, n):
    print(sum(await asyncio.gather(*(read(port) for _ in range(n)))))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


class LoopTime:
    """Event-loop time spent writing the streams: the hub's flush of each surface (its
    frames built once, the curves evaluated once, written to every reader) and the
    writes of a backed-up reader's own task."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._inside = False
        self.originals = {name: getattr(SurfaceHub, name) for name in ("flush", "write_pending")}
        for name, method in self.originals.items():
            setattr(SurfaceHub, name, self._timed(method))

    def _timed(self, method: Any) -> Any:
        def timed(*args: Any) -> None:
            if self._inside:  # write_pending inside flush: counted once
                return method(*args)  # type: ignore[no-any-return]
            self._inside, start = True, time.perf_counter()
            try:
                method(*args)
            finally:
                self.seconds += time.perf_counter() - start
                self._inside = False
        return timed

    def restore(self) -> None:
        for name, method in self.originals.items():
            setattr(SurfaceHub, name, method)


async def _run(clients: int) -> tuple[np.ndarray, int, float]:
    config = load_config(ROOT / "config.yaml", env={})
    config = msgspec.structs.replace(
        config, sink="stdout", metrics=msgspec.structs.replace(config.metrics, port=0))
    service = Service(config, duration_s=SECONDS, progress_stream=io.StringIO())
    service.ui.latencies_s = deque(maxlen=1_000_000)
    loop_time = LoopTime()
    task = asyncio.create_task(service.run())
    while service.http_port is None:
        await asyncio.sleep(0.01)
    readers = None
    if clients:
        readers = subprocess.Popen([sys.executable, "-c", READERS,
                                    str(service.http_port), str(clients)],
                                   stdout=subprocess.PIPE, text=True)
    await asyncio.sleep(SETTLE_S)
    for _ in range(100):  # on a loaded machine the readers may need longer
        if len(service.ui.clients) >= clients:
            break
        await asyncio.sleep(0.1)
    connected = len(service.ui.clients)
    start = len(service.ui.latencies_s)
    assert await task == 0
    if connected != clients:
        raise SystemExit(f"{connected} of {clients} readers connected after {SETTLE_S}s")
    events = 0
    if readers is not None:
        out, _ = await asyncio.to_thread(readers.communicate, timeout=60)
        events = int(out.strip() or 0)
    loop_time.restore()
    return np.array(list(service.ui.latencies_s)[start:]), events, loop_time.seconds


def main() -> None:
    samples: dict[int, list[np.ndarray]] = {0: [], CLIENTS: []}
    events, loop_s, published = 0, 0.0, 0
    with contextlib.redirect_stdout(io.StringIO()):
        for _ in range(ROUNDS):
            for clients in (0, CLIENTS):
                latencies, read, seconds = asyncio.run(_run(clients))
                samples[clients].append(latencies)
                events += read
                if clients:
                    loop_s += seconds
                    published += len(latencies)
                sys.stdout.seek(0)
                sys.stdout.truncate()
    rows: list[dict[str, Any]] = []
    for clients, runs in samples.items():
        all_s = np.concatenate(runs)
        pct = percentiles_ms(all_s)
        rows.append({"sse_readers": clients, "surfaces": len(all_s),
                     "tick_to_publish_p50_ms": pct["p50_ms"], "p99_ms": pct["p99_ms"],
                     "p99_per_run_ms": " ".join(f"{np.percentile(r, 99) * 1e3:.1f}"
                                                for r in runs),
                     "surface_events_read": events if clients else 0,
                     "stream_loop_ms_per_surface": loop_s / published * 1e3 if clients else 0.0})
    low, high = _p99_difference_interval(np.concatenate(samples[0]),
                                         np.concatenate(samples[CLIENTS]))
    rows.append({"sse_readers": f"{CLIENTS} - 0", "p99_ms": rows[1]["p99_ms"] - rows[0]["p99_ms"],
                 "tick_to_publish_p50_ms": rows[1]["tick_to_publish_p50_ms"]
                 - rows[0]["tick_to_publish_p50_ms"],
                 "p99_per_run_ms": f"90% interval {low:+.1f} to {high:+.1f}"})
    record("ui_clients", rows)


def _p99_difference_interval(without: np.ndarray, with_readers: np.ndarray,
                             draws: int = 2000) -> tuple[float, float]:
    """A bootstrap 90% interval of p99(with) - p99(without), in milliseconds."""
    rng = np.random.default_rng(0)
    diffs = [np.percentile(rng.choice(with_readers, with_readers.size), 99)
             - np.percentile(rng.choice(without, without.size), 99) for _ in range(draws)]
    low, high = np.percentile(diffs, [5, 95]) * 1e3
    return float(low), float(high)


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"({time.monotonic() - started:.0f}s)")
