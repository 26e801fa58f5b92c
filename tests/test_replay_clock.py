"""`streamer replay` cuts batches on the file's clock, also across a gap with no lines."""

from __future__ import annotations

import itertools
from pathlib import Path

from streamer.app.file_replay import ReplayStats, replay_file
from streamer.config import load_config
from streamer.sinks.base import MemorySink
from streamer.sinks.codec import encode_surface
from streamer.tickfile import TickFileWriter, read_tickfile

HOURLY = Path(__file__).parent / "data" / "real" / "deribit_btc_hourly_2026-01-23.ndjson.gz"
GAP_NS = 10 * 60 * 1_000_000_000  # the hourly chains: a burst of lines, then hours of nothing


def _first_snapshots(tmp_path: Path, n: int) -> tuple[Path, list[int]]:
    """The first ``n`` hourly snapshots of the real chain; returns the file and each
    snapshot's first receive time."""
    out, starts, last = tmp_path / "hourly.ndjson.gz", list[int](), -2 * GAP_NS
    with TickFileWriter(out) as writer:
        for line in read_tickfile(HOURLY):
            if line.received_ts_ns - last > GAP_NS:
                if len(starts) == n:
                    break
                starts.append(line.received_ts_ns)
            last = line.received_ts_ns
            writer.write(line.received_ts_ns, line.raw)
    return out, starts


async def test_a_gap_in_the_file_cuts_the_batch_before_it_ages(tmp_path: Path) -> None:
    path, starts = _first_snapshots(tmp_path, 3)
    config = load_config(None, env={})
    sink, stats = MemorySink(), ReplayStats()
    await replay_file(path, config, sink, stats=stats)
    # Every batch of a snapshot is cut on its own interval, before the next snapshot starts,
    # so none of its quotes has aged past stale_after_ms.
    interval_ns = config.batch.interval_ms * 1_000_000
    assert stats.rejected["stale"] == 0
    for start, end in itertools.pairwise([*starts, starts[-1] + GAP_NS]):
        cut = [u for u in sink.updates if start < u.published_ts_ns < end]
        assert cut
        assert cut[-1].published_ts_ns - start < 12 * interval_ns
        assert sum(s.status in ("warm", "cold") for s in cut[-1].slices) >= 8


async def test_replay_on_the_file_clock_is_deterministic(tmp_path: Path) -> None:
    path, _ = _first_snapshots(tmp_path, 2)
    config = load_config(None, env={})
    runs = [MemorySink(), MemorySink()]
    for sink in runs:
        await replay_file(path, config, sink)
    first, second = ([encode_surface(u) for u in sink.updates] for sink in runs)
    assert first
    assert first == second


def test_the_hourly_file_has_gaps() -> None:
    times = [line.received_ts_ns for line in itertools.islice(read_tickfile(HOURLY), 1000)]
    assert max(b - a for a, b in itertools.pairwise(times)) > GAP_NS
