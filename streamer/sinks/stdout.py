"""One JSON SurfaceUpdate per line on standard output (``--sink stdout``)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from streamer.sinks.base import OnDelivered
from streamer.sinks.codec import encode_surface
from streamer.types import SurfaceUpdate


class StdoutSink:
    """Writes and flushes each update as a line of JSON."""

    def __init__(self, stream: TextIO | None = None, on_delivered: OnDelivered | None = None
                 ) -> None:
        self._stream = stream
        self._on_delivered = on_delivered

    async def start(self) -> None:
        return None

    def publish(self, update: SurfaceUpdate) -> None:
        stream = self._stream or sys.stdout
        stream.write(encode_surface(update).decode() + "\n")
        stream.flush()
        if self._on_delivered is not None:
            self._on_delivered(update, time.time_ns())

    async def stop(self) -> None:
        (self._stream or sys.stdout).flush()
