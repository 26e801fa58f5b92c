"""Reading damaged recordings: read to the damage, skip bad lines with a reason, say so.

Real files: the shipped sample, cut short as a killed recorder leaves it, and copies of
its lines with garbage, bad timestamps and an over-long line in between.
"""

from __future__ import annotations

import gzip
import itertools
import logging
from pathlib import Path

import pytest

from streamer.devtools.exchanges import bundled_sample
from streamer.errors import TickFileError
from streamer.tickfile import TickFileReader, read_tickfile


def _sample_lines(n: int) -> list[bytes]:
    with gzip.open(bundled_sample(), "rb") as handle:
        return [line.rstrip(b"\n") for line in itertools.islice(handle, n)]


def truncated_sample(tmp_path: Path, share: float = 0.3) -> Path:
    """The bundled sample's gzip cut after ``share`` of its bytes (a killed recorder)."""
    data = bundled_sample().read_bytes()
    out = tmp_path / "killed.ndjson.gz"
    out.write_bytes(data[: int(len(data) * share)])
    return out


def with_bad_lines(tmp_path: Path, n: int, bad: dict[int, bytes], name: str = "bad.ndjson"
                   ) -> Path:
    """``n`` sample lines with ``bad[i]`` at line index ``i`` (0-based) of the result."""
    lines = _sample_lines(n)
    for index in sorted(bad):
        lines.insert(index, bad[index])
    out = tmp_path / name
    out.write_bytes(b"\n".join(lines) + b"\n")
    return out


def test_a_truncated_gzip_is_read_up_to_the_damage_naming_file_and_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = truncated_sample(tmp_path)
    reader = TickFileReader(path)
    with caplog.at_level(logging.WARNING, logger="streamer.tickfile"):
        lines = list(reader)
    assert len(lines) > 1000
    assert reader.truncated_at_line == len(lines) + 1
    # What was read is the file's own beginning, byte for byte.
    assert [line.raw for line in lines[:50]] == [
        line.raw for line in itertools.islice(read_tickfile(bundled_sample()), 50)]
    damaged = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert damaged == [f"{path} is damaged at line {len(lines) + 1} (Compressed file ended "
                       f"before the end-of-stream marker was reached): kept the {len(lines)} "
                       "lines before it"]


def test_bad_lines_are_skipped_counted_by_reason_and_named_with_their_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = with_bad_lines(tmp_path, 400, {10: b"this is not a tick line",
                                          20: b"2024-13-45T99:00:00Z {}", 30: b"garbage"})
    reader = TickFileReader(path)
    with caplog.at_level(logging.WARNING, logger="streamer.tickfile"):
        lines = list(reader)
    assert len(lines) == 400
    assert reader.bad == {"bad_timestamp": 2, "bad_tickfile_line": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert f"{path} line 11: bad_timestamp: this (skipped)" in messages
    assert f"{path} line 21: bad_timestamp: 2024-13-45T99:00:00Z (skipped)" in messages
    assert f"{path} line 31: bad_tickfile_line: garbage (skipped)" in messages
    assert messages[-1] == (f"{path}: 400 lines read, 3 bad lines skipped "
                            "(bad_tickfile_line 1, bad_timestamp 2)")


def test_reading_stops_past_the_configured_share_of_bad_lines(tmp_path: Path) -> None:
    path = with_bad_lines(tmp_path, 300, {i: b"junk" for i in range(0, 300, 10)})
    assert len(list(TickFileReader(path, max_bad_share=0.2))) == 300  # 30 of 330: under 20%
    with pytest.raises(TickFileError, match=r"more than 5% of the lines are bad "
                                            r"\(tickfile.max_bad_share\)"):
        list(TickFileReader(path, max_bad_share=0.05))


def test_an_over_long_line_is_skipped_and_counted(tmp_path: Path) -> None:
    huge = b"2024-11-24T13:00:00Z " + b"x" * 300_000
    path = with_bad_lines(tmp_path, 200, {50: huge}, name="long.ndjson.gz")
    path.write_bytes(gzip.compress(path.read_bytes()))
    reader = TickFileReader(path, max_line_bytes=100_000)
    lines = list(reader)
    assert len(lines) == 200
    assert reader.bad == {"line_too_long": 1}
    assert all(len(line.raw) < 100_000 for line in lines)
