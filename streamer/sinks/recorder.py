"""Every raw venue message into a tick file, rotated by size or time (what
``streamer record`` writes: :mod:`streamer.app.record`).

A file is created with its first message, so a recording that never connected leaves none.
"""

from __future__ import annotations

import time
from pathlib import Path

from streamer.tickfile import TickFileWriter

DEFAULT_MAX_BYTES = 512 * 2**20
DEFAULT_MAX_AGE_S = 3600.0


class RotatingRecorder:
    """Writes tick lines to ``out``; past ``max_bytes`` or ``max_age_s`` starts ``out.N``."""

    def __init__(self, out: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_age_s: float = DEFAULT_MAX_AGE_S,
                 clock_s: object = time.monotonic) -> None:
        self.out = out
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._clock = clock_s
        self.part = 0
        self.files: list[Path] = []
        self._writer: TickFileWriter | None = None  # opened by the first message

    def _path(self) -> Path:
        if self.part == 0:
            return self.out
        suffixes = "".join(self.out.suffixes)
        stem = self.out.name.removesuffix(suffixes)
        return self.out.with_name(f"{stem}.{self.part}{suffixes}")

    def _open(self) -> TickFileWriter:
        path = self._path()
        self.files.append(path)
        self._opened_s: float = self._clock()  # type: ignore[operator]
        return TickFileWriter(path)

    def write(self, received_ts_ns: int, raw: bytes) -> None:
        """Append one message, rotating first when the current file is full or old."""
        if self._writer is None:
            self._writer = self._open()
        age = self._clock() - self._opened_s  # type: ignore[operator]
        if self._writer.bytes_written >= self.max_bytes or age >= self.max_age_s:
            self._writer.close()
            self.part += 1
            self._writer = self._open()
        self._writer.write(received_ts_ns, raw)

    def close(self) -> None:
        """Flush and close the current file."""
        if self._writer is not None:
            self._writer.close()
