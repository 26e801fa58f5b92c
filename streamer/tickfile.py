"""Recorded tick files: one message per line, ``<receive time ISO-8601> <raw message>``.

The layout tardis.dev uses for raw replays, optionally gzip-compressed (by the
``.gz`` suffix). The receive time is UTC with nanosecond digits kept when
present (``2024-11-24T13:00:00.123456789Z``). Recording and replay share this
module, so a file recorded live replays bit for bit.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NamedTuple

from streamer.errors import DecodeError


class TickLine(NamedTuple):
    """One recorded message: when it was received and its raw bytes."""

    received_ts_ns: int
    raw: bytes


def format_ts_ns(ts_ns: int) -> str:
    """Render ns since the epoch as ISO-8601 UTC with 9 fractional digits."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def parse_ts_ns(text: str) -> int:
    """Parse ISO-8601 UTC (``Z`` or ``+00:00``, 0 to 9 fractional digits) to ns."""
    body = text.removesuffix("Z").removesuffix("+00:00")
    whole, _, frac = body.partition(".")
    if not frac.isdigit() and frac:
        raise DecodeError("bad_timestamp", text)
    try:
        dt = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError as exc:
        raise DecodeError("bad_timestamp", text) from exc
    nanos = int((frac + "000000000")[:9]) if frac else 0
    return int(dt.timestamp()) * 1_000_000_000 + nanos


def format_line(received_ts_ns: int, raw: bytes) -> bytes:
    """One tick-file line (with the newline) for a raw message."""
    return format_ts_ns(received_ts_ns).encode() + b" " + raw.strip() + b"\n"


def parse_line(line: bytes) -> TickLine:
    """Split a tick-file line into its receive time and raw message."""
    stamp, sep, raw = line.strip().partition(b" ")
    if not sep or not raw:
        raise DecodeError("bad_tickfile_line", line[:80].decode("utf-8", "replace"))
    return TickLine(parse_ts_ns(stamp.decode("ascii", "replace")), raw)


def _open(path: Path, mode: str) -> IO[bytes]:
    if path.suffix == ".gz":
        # mtime=0: the same messages always give the same bytes (reproducible synth).
        return gzip.GzipFile(path, mode, mtime=0)  # type: ignore[return-value]
    return open(path, mode)


def read_tickfile(path: str | Path) -> Iterator[TickLine]:
    """Yield every line of a tick file in order; blank lines are skipped."""
    with _open(Path(path), "rb") as handle:
        for line in handle:
            if line.strip():
                yield parse_line(line)


class TickFileWriter:
    """Append messages to a tick file; gzip when the name ends in ``.gz``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = _open(self.path, "wb")
        self.bytes_written = 0
        self.lines_written = 0

    def write(self, received_ts_ns: int, raw: bytes) -> None:
        """Append one message."""
        line = format_line(received_ts_ns, raw)
        self._handle.write(line)
        self.bytes_written += len(line)
        self.lines_written += 1

    def close(self) -> None:
        """Flush and close the file."""
        self._handle.close()

    def __enter__(self) -> TickFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
