"""Recorded tick files: one message per line, ``<receive time ISO-8601> <raw message>``.

The layout tardis.dev uses for raw replays, optionally gzip-compressed (by the
``.gz`` suffix). The receive time is UTC with nanosecond digits kept when
present (``2024-11-24T13:00:00.123456789Z``). Recording and replay share this
module, so a file recorded live replays bit for bit.

Reading is forgiving where a recording is damaged, and says so: a bad line (no
timestamp, a bad timestamp, longer than ``max_line_bytes``) is counted by reason
and skipped, naming the file and the line; a gzip cut short (what a killed recorder
leaves) is read up to the damage. Only when more than ``max_bad_share`` of the lines
are bad does reading stop, with a ``TickFileError``.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NamedTuple

from streamer.errors import DecodeError, TickFileError

log = logging.getLogger(__name__)

#: Defaults of the ``tickfile`` config section (streamer/config.py).
DEFAULT_MAX_BAD_SHARE = 0.05
DEFAULT_MAX_LINE_BYTES = 4 * 2**20
#: The share of bad lines is judged from this many lines on (and at the end of the file):
#: two bad lines among the first ten do not condemn a recording.
JUDGE_SHARE_AFTER_LINES = 100
#: Bad lines named one by one in the log; the rest are only counted.
LOGGED_BAD_LINES = 5


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
        raise DecodeError("bad_tickfile_line", line.strip()[:80].decode("utf-8", "replace"))
    return TickLine(parse_ts_ns(stamp.decode("ascii", "replace")), raw)


def _open(path: Path, mode: str) -> IO[bytes]:
    if path.suffix == ".gz":
        # mtime=0: the same messages always give the same bytes (reproducible synth).
        return gzip.GzipFile(path, mode, mtime=0)  # type: ignore[return-value]
    return open(path, mode)


class TickFileReader:
    """Iterate a tick file's good lines, counting the bad ones by reason.

    After (or during) iteration: ``lines`` good lines, ``bad`` by reason,
    ``truncated_at_line`` when the gzip stream ended early, ``fraction_read`` of
    the file's bytes (for a progress bar).
    """

    def __init__(self, path: str | Path, *, max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, quiet: bool = False) -> None:
        self.path = Path(path)
        self.quiet = quiet
        self.max_bad_share = max_bad_share
        self.max_line_bytes = max_line_bytes
        self.lines = 0
        self.bad: Counter[str] = Counter()
        self.truncated_at_line: int | None = None
        self._raw: IO[bytes] | None = None
        self._size = 0

    @property
    def fraction_read(self) -> float:
        """Share of the file's (compressed) bytes read so far, 0 to 1."""
        if self._raw is None or self._raw.closed or not self._size:
            return 0.0 if self.lines == 0 else 1.0
        return min(1.0, self._raw.tell() / self._size)

    def summary(self) -> str:
        """One line: what was read and what was skipped."""
        text = f"{self.path}: {self.lines} lines read"
        if self.bad:
            reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(self.bad.items()))
            text += f", {sum(self.bad.values())} bad lines skipped ({reasons})"
        if self.truncated_at_line is not None:
            text += f", truncated at line {self.truncated_at_line}"
        return text

    def __iter__(self) -> Iterator[TickLine]:
        try:
            self._raw = open(self.path, "rb")  # noqa: SIM115 (closed below, after the yields)
        except OSError as exc:
            raise TickFileError(f"cannot read tick file {self.path}: {exc.strerror}") from exc
        self._size = self.path.stat().st_size
        try:
            handle: IO[bytes] = self._raw
            if self.path.suffix == ".gz":
                handle = gzip.GzipFile(fileobj=self._raw, mode="rb")  # type: ignore[assignment]
            yield from self._lines(handle)
        finally:
            self._raw.close()
        self._judge(final=True)
        if self.bad and not self.quiet:
            log.warning("%s", self.summary())

    def _lines(self, handle: IO[bytes]) -> Iterator[TickLine]:
        number = 0
        while True:
            number += 1
            try:
                line = handle.readline(self.max_line_bytes + 1)
                if len(line) > self.max_line_bytes and not line.endswith(b"\n"):
                    _skip_to_newline(handle, self.max_line_bytes)
                    self._bad(number, "line_too_long", f"longer than {self.max_line_bytes} bytes")
                    continue
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                self.truncated_at_line = number
                if not self.quiet:
                    log.warning("%s is damaged at line %d (%s): kept the %d lines before it",
                                self.path, number, exc, self.lines)
                return
            if not line:
                return
            if not line.strip():
                continue
            try:
                tick = parse_line(line)
            except DecodeError as exc:
                self._bad(number, exc.reason, str(exc))
                continue
            self.lines += 1
            yield tick

    def _bad(self, number: int, reason: str, detail: str) -> None:
        self.bad[reason] += 1
        count = sum(self.bad.values())
        if self.quiet:
            pass
        elif count <= LOGGED_BAD_LINES:
            log.warning("%s line %d: %s (skipped)", self.path, number, detail[:160])
        elif count == LOGGED_BAD_LINES + 1:
            log.warning("%s: more bad lines; counting them without naming each", self.path)
        self._judge(final=False)

    def _judge(self, *, final: bool) -> None:
        bad = sum(self.bad.values())
        seen = bad + self.lines
        if not bad or (not final and seen < JUDGE_SHARE_AFTER_LINES):
            return
        if bad > self.max_bad_share * seen:
            raise TickFileError(
                f"{self.summary()}: more than {self.max_bad_share:.0%} of the lines are bad "
                "(tickfile.max_bad_share); is this a tick file?")


def _skip_to_newline(handle: IO[bytes], chunk: int) -> None:
    """Read past the rest of an over-long line without holding it in memory."""
    while True:
        part = handle.readline(chunk)
        if not part or part.endswith(b"\n"):
            return


def read_tickfile(path: str | Path, *, max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
                  max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[TickLine]:
    """Yield every good line of a tick file in order (see ``TickFileReader``)."""
    return iter(TickFileReader(path, max_bad_share=max_bad_share,
                               max_line_bytes=max_line_bytes))


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
