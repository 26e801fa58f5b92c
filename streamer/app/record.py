"""``streamer record``: every raw venue message into a tick file, rotated by size or time.

A recording that recorded no quote exits 1 saying why (naming the host it could not reach).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from streamer.app.summary import closing_line
from streamer.config import venue_config
from streamer.sinks.recorder import DEFAULT_MAX_AGE_S, DEFAULT_MAX_BYTES, RotatingRecorder
from streamer.sources.registry import LIVE, make_session, resolve_url
from streamer.types import Quote, VenueVolIndex

log = logging.getLogger(__name__)


class _CountingSink:
    """Recording needs no pipeline: count what the decoder makes of the stream."""

    def __init__(self) -> None:
        self.quotes = 0
        self.rejects = Counter[str]()
        self.up = False

    def on_quote(self, quote: Quote) -> None:
        self.quotes += 1

    def on_reject(self, venue: str, reason: str) -> None:
        self.rejects[reason] += 1

    def on_reconnect(self, venue: str) -> None:
        """The session logs its own reconnects (with the delay)."""

    def on_connected(self, venue: str, connected: bool) -> None:
        if connected != self.up:  # a change only: never "disconnected" before a connection
            self.up = connected
            log.info("%s: %s", venue, "connected" if connected else "disconnected")

    def on_vol_index(self, index: VenueVolIndex) -> None:
        """Recorded raw with its frame, like everything else."""


async def record(url: str | None, currencies: Sequence[str], out: Path, *,
                 venue: str = "deribit", duration_s: float | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_age_s: float = DEFAULT_MAX_AGE_S,
                 ) -> int:
    """Record until cancelled or for ``duration_s``; returns the exit code.

    ``url`` None is the venue's public endpoint. A file past ``max_bytes`` or
    ``max_age_s`` is closed and the next one started (``out.1``, ``out.2``, ...).
    """
    recorder = RotatingRecorder(out, max_bytes=max_bytes, max_age_s=max_age_s)
    counts = _CountingSink()
    config = venue_config(venue, url=url or LIVE,  # type: ignore[arg-type]
                          currencies=tuple(currencies))
    session = make_session(config, resolve_url(config), counts, on_raw=recorder.write)
    try:
        await asyncio.wait_for(session.run(), timeout=duration_s)
    except TimeoutError:
        pass
    finally:
        recorder.close()
    where = ", ".join(map(str, recorder.files)) or "no file"
    problem = None
    if counts.quotes == 0:
        problem = getattr(session, "last_error", None) or f"no quote arrived from {config.url}"
        log.error("recorded nothing (%s); %s", where, problem)
    print(closing_line("record", read=f"{counts.quotes} quotes from {venue}",
                       rejected=counts.rejects, published=f"raw messages to {where}",
                       problem=problem), file=sys.stderr, flush=True)
    return 1 if problem else 0
