"""`streamer record`: raw venue messages into a tick file, over a real websocket."""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path

import pytest

from streamer.app.record import record
from streamer.devtools.exchange import ReplayServer
from streamer.devtools.exchanges import bundled_sample
from streamer.sources.deribit.protocol import DeribitDecoder
from streamer.tickfile import read_tickfile

pytestmark = pytest.mark.integration


async def test_recording_the_replay_server_gives_a_replayable_tick_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = ReplayServer(bundled_sample(), speed=20.0)
    await server.start()
    out = tmp_path / "ticks.ndjson.gz"
    try:
        assert await record(server.url, ["BTC"], out, duration_s=3.0) == 0
    finally:
        await server.stop()
    # One closing line, as every command's: what was read, rejected by reason, where it went.
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("streamer record:")]
    assert re.fullmatch(rf"streamer record: read \d+ quotes from deribit; rejected \d+"
                        rf"( \([a-z_]+ \d+(, [a-z_]+ \d+)*\))?; published raw messages to "
                        rf"{re.escape(str(out))}", line), line
    lines = list(read_tickfile(out))
    assert len(lines) > 100
    stamps = [line.received_ts_ns for line in lines]
    assert stamps == sorted(stamps)
    decoder = DeribitDecoder()
    quotes = [q for line in lines for q in decoder.decode(line.raw, line.received_ts_ns).quotes]
    assert len(quotes) > 50
    assert {q.underlying for q in quotes} == {"BTC"}  # only what was subscribed


async def test_a_recording_past_its_size_rotates_into_files_that_replay_in_order(
        tmp_path: Path) -> None:
    server = ReplayServer(bundled_sample(), speed=20.0)
    await server.start()
    out = tmp_path / "ticks.ndjson"
    try:
        assert await record(server.url, ["BTC"], out, duration_s=3.0, max_bytes=50_000) == 0
    finally:
        await server.stop()
    files = sorted(tmp_path.iterdir(), key=lambda p: (len(p.name), p.name))
    assert len(files) >= 3, files
    assert files[0] == out  # then ticks.ndjson.1, .2, ...
    lines = [line for path in files for line in read_tickfile(path)]
    stamps = [line.received_ts_ns for line in lines]
    assert stamps == sorted(stamps)  # nothing lost or reordered across the cuts
    for path in files:  # cut at the first message past the bound (one may be bigger alone)
        *before_last, _ = path.read_bytes().splitlines(keepends=True)
        assert sum(map(len, before_last)) < 50_000, path


@pytest.mark.parametrize(("url", "names"), [
    ("ws://nonexistent.invalid/ws/api/v2", "cannot resolve host nonexistent.invalid"),
    ("ws://127.0.0.1:{port}/ws/api/v2", "127.0.0.1:{port} refused the connection"),
])
async def test_recording_with_no_connection_names_the_host_exits_1_and_leaves_no_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
        url: str, names: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url, names = url.format(port=port), names.format(port=port)
    out = tmp_path / "ticks.ndjson.gz"
    with caplog.at_level(logging.INFO):
        assert await record(url, ["BTC"], out, duration_s=1.5) == 1
    assert list(tmp_path.iterdir()) == []
    messages = [r.getMessage() for r in caplog.records]
    # The resolver's own words (after the host) differ between machines.
    assert messages[-1].startswith(f"recorded nothing (no file); {names}")
    assert messages[-1].endswith(f", for {url}")
    assert not [m for m in messages if "disconnected" in m or "connection lost" in m]
    assert any(m.startswith(f"deribit: {names}") for m in messages)
    assert "; FAILED: " + names in capsys.readouterr().err
