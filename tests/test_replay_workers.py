"""`streamer replay` on several processes: the same bytes as one, and failures said."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from multiprocessing import Pipe
from pathlib import Path

import msgspec
import pytest

from streamer.app import replay_workers
from streamer.app.file_replay import replay_file, workers_for
from streamer.config import AppConfig, BatchConfig, load_config
from streamer.devtools import synth_market
from streamer.devtools.synth import synthesise
from streamer.sinks.base import MemorySink
from streamer.sinks.codec import encode_surface
from streamer.sources.registry import make_decoder
from streamer.tickfile import format_line, read_tickfile


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


async def _replay(path: Path, workers: int, config: AppConfig | None = None) -> list[bytes]:
    sink = MemorySink()
    await replay_file(path, config or load_config(None, env={}), sink, workers=workers)
    return [encode_surface(u) for u in sink.updates]


@pytest.mark.parametrize("workers", [2, 3, 5])
async def test_any_number_of_workers_publishes_the_bytes_of_one(three_underlyings: Path,
                                                                 workers: int) -> None:
    # 2: BTC here, ETH in a child, SOL here again (round-robin); 3: one each; 5: more
    # workers than underlyings (no idle child is started)
    one = await _replay(three_underlyings, 1)
    assert len({b.split(b'"underlying":')[1][:5] for b in one}) == 3
    assert await _replay(three_underlyings, workers) == one


@pytest.mark.parametrize("clock", ["ties", "backwards"])
async def test_lines_of_one_instant_or_a_clock_going_back_keep_one_processs_order(
        three_underlyings: Path, tmp_path: Path, clock: str) -> None:
    # Batches cut by count (40 quotes) on lines that share a time (stamps rounded down to
    # 100 ms), or on a clock that steps back 300 ms every seventh line: the surfaces of
    # one line, and of lines of one instant, must come out as one process orders them
    lines = list(read_tickfile(three_underlyings))
    path = tmp_path / f"{clock}.ndjson"
    with path.open("wb") as out:
        for i, line in enumerate(lines):
            ts = (line.received_ts_ns // 100_000_000 * 100_000_000 if clock == "ties"
                  else line.received_ts_ns - (300_000_000 if i % 7 == 3 else 0))
            out.write(format_line(ts, line.raw))
    config = msgspec.structs.replace(load_config(None, env={}),
                                     batch=BatchConfig(interval_ms=10**6, max_quotes=40))
    one = await _replay(path, 1, config)
    assert len(one) > 20
    assert await _replay(path, 2, config) == one


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


async def test_a_worker_that_failed_is_reported_with_its_own_error(
        three_underlyings: Path) -> None:
    # the child says why and exits; the parent learns it on its next send (a broken
    # pipe), and must still say the child's error, not only that it exited
    engines = replay_workers.Engines(load_config(None, env={}), "deribit", 2)
    decoder = make_decoder("deribit")
    try:
        for line in read_tickfile(three_underlyings):
            decoded = decoder.decode(line.raw, line.received_ts_ns)
            engines.line(line.received_ts_ns, decoded.quotes, decoded.vol_indices)
            if engines._children:
                break
        child = engines._children[0]
        child.send(("chunk", b"\xc1 not msgpack"))
        child.process.join(60)

        def send_until_broken() -> None:
            for _ in range(100):
                child.send(("chunk", b"\x90" * 100_000))

        with pytest.raises(replay_workers.WorkerError, match="DecodeError"):
            send_until_broken()
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
