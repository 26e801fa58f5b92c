"""``streamer replay``: a tick file through decoder and engine, on the file's own clock.

No sockets and no wall clock: the same file always publishes the same bytes (the
deterministic twin of ``streamer run`` over ``url: replay``).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from streamer.config import AppConfig
from streamer.errors import ConfigError
from streamer.pipeline.calibrator import is_refusal
from streamer.pipeline.engine import Engine
from streamer.sinks.base import BackPressured, Sink
from streamer.sources.registry import guess_venue, make_decoder
from streamer.telemetry.progress import ProgressBar
from streamer.tickfile import TickFileReader
from streamer.types import SurfaceUpdate

#: Lines read without one quote of the venue before the file is taken for another venue's.
FOREIGN_AFTER_LINES = 5000


@dataclass
class ReplayStats:
    """What a replay read, for its closing line."""

    lines: int = 0
    quotes: int = 0
    #: The engine's rejected quotes by reason (the decoder's go to ``on_reject``).
    rejected: Counter[str] = field(default_factory=Counter)
    #: Fits the calibrator refused (slices or whole surfaces kept at the last good fit,
    #: or left out when there was none), by reason; slices too thin to fit are not here.
    fits_refused: Counter[str] = field(default_factory=Counter)

    def add_report(self, engine: Engine) -> None:
        """Take the engine's rejections and refused fits since the previous call."""
        report = engine.drain_report()
        for (_, reason), n in report.rejects.items():
            self.rejected[reason] += n
        for (_, reason), n in report.fallbacks.items():
            if is_refusal(reason):
                self.fits_refused[reason] += n


async def replay_file(path: Path, config: AppConfig, sink: Sink, *,
                      on_reject: Callable[[str], None] | None = None,
                      progress: ProgressBar | None = None,
                      stats: ReplayStats | None = None) -> int:
    """Replay a tick file as fast as possible through decoder and engine into ``sink``.

    Time is the file's: a batch is cut when ``batch.interval_ms`` of receive time has
    passed since its first quote (as the live timer does, also across a gap with no
    lines) or when a line fills it, and ``published_ts_ns`` is that instant of file
    time, so the same file always yields the same bytes. The venue is ``config.venues[0]``'s; a file
    without one quote of it is a ``ConfigError`` naming the venue it looks like.
    """
    venue = config.venues[0].name
    reader = TickFileReader(path, max_bad_share=config.tickfile.max_bad_share,
                            max_line_bytes=config.tickfile.max_line_bytes)
    decoder = make_decoder(venue)
    # No budget clock, so no time budget: deferring slices by wall-clock time would make
    # two replays of the same file differ with the machine's load.
    engine = Engine(venue, config.calibration, config.batch, config.dynamics, config.analytics)
    await sink.start()
    count = quotes = 0
    now_ns = 0
    try:
        for line in reader:
            now_ns = line.received_ts_ns
            # The live timer cuts a batch when its interval is up whether or not a line
            # arrives: do the same on the file's clock, so a gap ages quotes as it would live.
            while (due_ns := engine.next_due_ns()) is not None and due_ns < now_ns:
                count += await _publish(engine.on_timer(due_ns), due_ns, sink, engine, stats)
            decoded = decoder.decode(line.raw, now_ns)
            quotes += len(decoded.quotes)
            if stats is not None:
                stats.lines, stats.quotes = reader.lines, quotes
            if not quotes and reader.lines >= FOREIGN_AFTER_LINES:
                raise _foreign(path, venue)
            for quote in decoded.quotes:
                engine.on_quote(quote)
            for index in decoded.vol_indices:
                engine.on_vol_index(index)
            for reason in decoded.rejects:
                if on_reject is not None:
                    on_reject(reason)
            count += await _publish(engine.on_timer(now_ns), now_ns, sink, engine, stats)
            if progress is not None and reader.lines % 256 == 0:
                progress.update(reader.fraction_read, f"{count} surfaces")
        if not quotes and reader.lines:
            raise _foreign(path, venue)
        for update in engine.flush(now_ns):
            sink.publish(msgspec.structs.replace(update, published_ts_ns=now_ns))
            count += 1
        if stats is not None:
            stats.add_report(engine)
    finally:
        if progress is not None:
            progress.close()
        await sink.stop()
    return count


async def _publish(updates: list[SurfaceUpdate], now_ns: int, sink: Sink, engine: Engine,
                   stats: ReplayStats | None) -> int:
    """Hand a batch's surfaces to the sink, stamped with the file time that cut it."""
    for update in updates:
        sink.publish(msgspec.structs.replace(update, published_ts_ns=now_ns))
    if updates and stats is not None:
        stats.add_report(engine)
    if updates and isinstance(sink, BackPressured):
        await sink.drain()  # every surface delivered, in order: wait, never conflate
    return len(updates)


def _foreign(path: Path, venue: str) -> ConfigError:
    """The error of a file holding no market data of ``venue``, naming the one it looks like."""
    head = [line.raw for line in itertools.islice(TickFileReader(path, quiet=True), 500)]
    other = guess_venue(head)
    hint = (f": it looks like a {other} recording (--venue {other})" if other and other != venue
            else ": is it a recording of another venue? (--venue)")
    return ConfigError(f"{path} holds no {venue} market data{hint}")
