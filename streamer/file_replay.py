"""``streamer replay``: a tick file through decoder and engine, on the file's own clock.

No sockets and no wall clock: the same file always publishes the same bytes (the
deterministic twin of ``streamer run`` over ``url: replay``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from streamer.config import AppConfig
from streamer.pipeline.engine import Engine
from streamer.sinks.base import BackPressured, Sink
from streamer.sources.registry import make_decoder
from streamer.tickfile import read_tickfile


@dataclass
class ReplayStats:
    """What a replay read, for its closing line."""

    lines: int = 0
    quotes: int = 0
    #: The engine's rejected quotes by reason (the decoder's go to ``on_reject``).
    rejected: Counter[str] = field(default_factory=Counter)

    def add_report(self, engine: Engine) -> None:
        """Take the engine's rejections since the previous call."""
        for (_, reason), n in engine.drain_report().rejects.items():
            self.rejected[reason] += n


async def replay_file(path: Path, config: AppConfig, sink: Sink, *,
                      on_reject: Callable[[str], None] | None = None,
                      stats: ReplayStats | None = None) -> int:
    """Replay a tick file as fast as possible through decoder and engine into ``sink``.

    Time is the file's: batches are cut by receive times and ``published_ts_ns``
    is the receive time of the line that triggered the batch, so the same file
    always yields the same bytes.
    """
    venue = config.venues[0].name
    decoder = make_decoder(venue)
    # No time budget: deferring slices by wall-clock time would make two replays of
    # the same file differ with the machine's load.
    unbudgeted = msgspec.structs.replace(config.calibration, budget_ms=1e12)
    engine = Engine(venue, unbudgeted, config.batch, config.dynamics, config.analytics)
    await sink.start()
    count = 0
    now_ns = 0
    try:
        for line in read_tickfile(path):
            now_ns = line.received_ts_ns
            decoded = decoder.decode(line.raw, now_ns)
            if stats is not None:
                stats.lines += 1
                stats.quotes += len(decoded.quotes)
            for quote in decoded.quotes:
                engine.on_quote(quote)
            for index in decoded.vol_indices:
                engine.on_vol_index(index)
            for reason in decoded.rejects:
                if on_reject is not None:
                    on_reject(reason)
            updates = engine.on_timer(now_ns)
            for update in updates:
                sink.publish(msgspec.structs.replace(update, published_ts_ns=now_ns))
                count += 1
            if updates and stats is not None:
                stats.add_report(engine)
            if updates and isinstance(sink, BackPressured):
                await sink.drain()  # every surface delivered, in order: wait, never conflate
        for update in engine.flush(now_ns):
            sink.publish(msgspec.structs.replace(update, published_ts_ns=now_ns))
            count += 1
        if stats is not None:
            stats.add_report(engine)
    finally:
        await sink.stop()
    return count
