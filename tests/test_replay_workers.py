"""`streamer replay` on several processes: the same bytes as one, and failures said."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from multiprocessing import Pipe
from pathlib import Path

import pytest

from streamer.app import replay_workers
from streamer.app.file_replay import replay_file, workers_for
from streamer.config import load_config
from streamer.devtools import synth_market
from streamer.devtools.synth import synthesise
from streamer.sinks.base import MemorySink
from streamer.sinks.codec import encode_surface
from streamer.sources.registry import make_decoder
from streamer.tickfile import read_tickfile


@pytest.fixture(scope="module")
def three_underlyings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BTC, ETH and a third underlying (ETH's market renamed SOL), 12 s of quotes."""
    spec = synth_market.SPECS["ETH"]
    name = dataclasses.fields(spec)[0].name
    synth_market.SPECS["SOL"] = dataclasses.replace(spec, **{name: "SOL"})
    try:
        out = tmp_path_factory.mktemp("three") / "three.ndjson"
        synthesise(out, out.with_suffix(".truth.json"), seed=3, duration_s=12.0,
                   underlyings=("BTC", "ETH", "SOL"))
    finally:
        del synth_market.SPECS["SOL"]
    return out


async def _replay(path: Path, workers: int) -> list[bytes]:
    sink = MemorySink()
    await replay_file(path, load_config(None, env={}), sink, workers=workers)
    return [encode_surface(u) for u in sink.updates]


@pytest.mark.parametrize("workers", [2, 3, 5])
async def test_any_number_of_workers_publishes_the_bytes_of_one(three_underlyings: Path,
                                                                 workers: int) -> None:
    # 2: BTC here, ETH in a child, SOL here again (round-robin); 3: one each; 5: more
    # workers than underlyings (no idle child is started)
    one = await _replay(three_underlyings, 1)
    assert len({b.split(b'"underlying":')[1][:5] for b in one}) == 3
    assert await _replay(three_underlyings, workers) == one


async def test_a_worker_that_dies_is_an_error_not_a_hang(three_underlyings: Path) -> None:
    engines = replay_workers.Engines(load_config(None, env={}), "deribit", 2)
    decoder = make_decoder("deribit")
    lines = list(read_tickfile(three_underlyings))

    def feed() -> None:
        for i, line in enumerate(lines):
            decoded = decoder.decode(line.raw, line.received_ts_ns)
            engines.line(line.received_ts_ns, decoded.quotes, decoded.vol_indices)
            engines.ready()
            if i == 2 * replay_workers.CHUNK_LINES:
                engines._children[0].process.kill()
        engines.end(lines[-1].received_ts_ns)

    try:
        with pytest.raises(replay_workers.WorkerError, match="exited"):
            feed()
    finally:
        engines.close()


def test_a_worker_says_why_it_failed() -> None:
    ours, theirs = Pipe()
    child = threading.Thread(target=replay_workers.serve, daemon=True,
                             args=(theirs, load_config(None, env={}), "deribit"))
    child.start()
    ours.send(("chunk", b"\xc1 not msgpack", 0))
    assert ours.poll(60)
    answer = ours.recv()
    child.join(10)
    assert isinstance(answer, str)
    assert answer.startswith("DecodeError")


def test_workers_setting() -> None:
    assert workers_for(3) == 3
    assert workers_for("auto") >= 1
    proc = subprocess.run([sys.executable, "-m", "streamer.cli", "replay", "bundled",
                           "--workers", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--workers: must be a whole number >= 1 or auto" in proc.stderr
