"""`streamer replay`: the same file replayed twice yields identical surfaces."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

from streamer.app.file_replay import replay_file
from streamer.config import load_config
from streamer.devtools.exchanges import bundled_sample
from streamer.sinks.base import MemorySink
from streamer.sinks.codec import encode_surface
from streamer.tickfile import TickFileWriter, read_tickfile


def _head(tmp_path: Path, lines: int) -> Path:
    out = tmp_path / "head.ndjson.gz"
    with TickFileWriter(out) as writer:
        for line in itertools.islice(read_tickfile(bundled_sample()), lines):
            writer.write(line.received_ts_ns, line.raw)
    return out


async def test_replaying_the_same_file_twice_gives_identical_bytes(tmp_path: Path) -> None:
    path = _head(tmp_path, 6000)
    config = load_config(None, env={})
    first, second = MemorySink(), MemorySink()
    n1 = await replay_file(path, config, first)
    n2 = await replay_file(path, config, second)
    assert n1 == n2 > 0
    assert [encode_surface(u) for u in first.updates] == [encode_surface(u) for u in second.updates]
    fitted = [s for u in first.updates for s in u.slices if s.status in ("warm", "cold")]
    assert fitted, "the replay fitted no slice"
    assert {s.status for s in fitted} == {"warm", "cold"}


def test_replay_command_prints_one_surface_per_line(tmp_path: Path) -> None:
    path = _head(tmp_path, 3000)
    proc = subprocess.run([sys.executable, "-m", "streamer.cli", "replay", str(path),
                           "--sink", "stdout"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rows
    assert all(r["schema_version"] == 1 and r["venue"] == "deribit" for r in rows)
    assert {r["underlying"] for r in rows} == {"BTC", "ETH"}
