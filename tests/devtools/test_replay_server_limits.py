"""The replay server reads its file within the configured ``tickfile`` limits, as
``streamer replay`` does: ``run`` on a recording with some bad lines serves the good ones,
and stops with the same clear error past ``tickfile.max_bad_share``."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from streamer.config import TickFileConfig
from streamer.devtools.exchange import ReplayServer
from streamer.devtools.exchanges import bundled_sample
from streamer.errors import StreamerError
from streamer.tickfile import TickFileWriter, read_tickfile


def _file_with_bad_lines(path: Path, good: int, bad_every: int) -> None:
    writer = TickFileWriter(path)
    for line in itertools.islice(read_tickfile(bundled_sample()), good):
        writer.write(line.received_ts_ns, line.raw)
    writer.close()
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(line + (b"not a tick line\n" if i % bad_every == 0 else b"")
                              for i, line in enumerate(lines)))


async def test_the_replay_server_keeps_to_the_configured_share_of_bad_lines(
        tmp_path: Path) -> None:
    path = tmp_path / "ticks.ndjson"
    _file_with_bad_lines(path, good=2000, bad_every=10)  # one line in eleven is bad
    lenient = ReplayServer(path, tickfile=TickFileConfig(max_bad_share=0.2))
    await lenient.start()
    await lenient.stop()
    strict = ReplayServer(path, tickfile=TickFileConfig(max_bad_share=0.05))
    with pytest.raises(StreamerError, match=r"tickfile.max_bad_share"):
        await strict.start()
    await strict.stop()
