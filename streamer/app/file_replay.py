"""``streamer replay``: a tick file through decoder and engine, on the file's own clock.

No sockets and no wall clock: the same file always publishes the same bytes (the
deterministic twin of ``streamer run`` over ``url: replay``).
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from streamer.config import AppConfig
from streamer.errors import ConfigError
from streamer.pipeline.calibrator import is_refusal
from streamer.pipeline.engine import Engine, EngineReport
from streamer.sinks.base import BackPressured, Sink
from streamer.sources.registry import guess_venue, make_decoder
from streamer.telemetry.progress import ProgressBar
from streamer.tickfile import TickFileReader
from streamer.types import Quote, SurfaceUpdate, VenueVolIndex

if TYPE_CHECKING:
    from streamer.app.replay_workers import Engines

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

    def add_report(self, report: EngineReport) -> None:
        """Take an engine's rejections and refused fits (a drained report)."""
        for (_, reason), n in report.rejects.items():
            self.rejected[reason] += n
        for (_, reason), n in report.fallbacks.items():
            if is_refusal(reason):
                self.fits_refused[reason] += n


#: A surface and the file time that cut it (its ``published_ts_ns``).
Stamped = tuple[int, SurfaceUpdate]


class FileClock:
    """An engine on a file's clock: what the live timer and ingest do, line by line.

    Before a line, every batch that fell due since the previous one is cut at the instant
    it fell due (as the live timer does, also across a gap with no lines, so a gap ages
    quotes as it would live); then the line's quotes go in, and the batches due at the
    line (by time or by count) are cut at its time. One home for the rule, whether one
    process replays every underlying or each process some (app.replay_workers).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def line(self, now_ns: int, quotes: Sequence[Quote] = (),
             indices: Sequence[VenueVolIndex] = ()) -> list[Stamped]:
        """The cuts before and at a line of file time ``now_ns`` carrying these."""
        engine = self.engine
        out: list[Stamped] = []
        while (due_ns := engine.next_due_ns()) is not None and due_ns < now_ns:
            out += [(due_ns, u) for u in engine.on_timer(due_ns)]
        for quote in quotes:
            engine.on_quote(quote)
        for index in indices:
            engine.on_vol_index(index)
        out += [(now_ns, u) for u in engine.on_timer(now_ns)]
        return out

    def end(self, now_ns: int) -> list[Stamped]:
        """Everything still pending, cut at the file's last instant."""
        return [(now_ns, u) for u in self.engine.flush(now_ns)]


def new_engine(config: AppConfig, venue: str) -> Engine:
    """A replay's engine: with no budget clock there is no time budget, since deferring
    slices by wall-clock time would make two replays of the same file differ with the
    machine's load."""
    return Engine(venue, config.calibration, config.batch, config.dynamics, config.analytics)


async def replay_file(path: Path, config: AppConfig, sink: Sink, *,
                      on_reject: Callable[[str], None] | None = None,
                      progress: ProgressBar | None = None,
                      stats: ReplayStats | None = None, workers: int | None = None) -> int:
    """Replay a tick file as fast as possible through decoder and engine into ``sink``.

    Time is the file's (:class:`FileClock`), and ``published_ts_ns`` is the instant of
    file time that cut a surface, so the same file always yields the same bytes. The
    venue is ``config.venues[0]``'s; a file without one quote of it is a ``ConfigError``
    naming the venue it looks like. ``workers`` processes calibrate (None:
    ``config.replay.workers``; ``app.replay_workers``), which changes no byte.
    """
    venue = config.venues[0].name
    reader = TickFileReader(path, max_bad_share=config.tickfile.max_bad_share,
                            max_line_bytes=config.tickfile.max_line_bytes)
    decoder = make_decoder(venue)
    count = workers_for(config.replay.workers if workers is None else workers)
    calibrate: LocalEngines | Engines = LocalEngines(config, venue)
    if count > 1:
        from streamer.app.replay_workers import Engines

        calibrate = Engines(config, venue, count)
    await sink.start()
    published = quotes = 0
    now_ns = 0
    try:
        for line in reader:
            now_ns = line.received_ts_ns
            decoded = decoder.decode(line.raw, now_ns)
            quotes += len(decoded.quotes)
            if stats is not None:
                stats.lines, stats.quotes = reader.lines, quotes
            if not quotes and reader.lines >= FOREIGN_AFTER_LINES:
                raise _foreign(path, venue)
            for reason in decoded.rejects:
                if on_reject is not None:
                    on_reject(reason)
            calibrate.line(now_ns, decoded.quotes, decoded.vol_indices)
            published += await _publish(calibrate.ready(), sink, calibrate, stats)
            if progress is not None and reader.lines % 256 == 0:
                progress.update(reader.fraction_read, f"{published} surfaces")
        if not quotes and reader.lines:
            raise _foreign(path, venue)
        calibrate.end(now_ns)
        published += await _publish(calibrate.ready(), sink, calibrate, stats)
        if stats is not None:
            stats.add_report(calibrate.report())
    finally:
        calibrate.close()
        if progress is not None:
            progress.close()
        await sink.stop()
    return published


def workers_for(setting: int | str) -> int:
    """Processes for a replay: ``auto`` is one per core this process may use."""
    if setting != "auto":
        return max(int(setting), 1)
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


class LocalEngines:
    """Every underlying's engine in this process (:class:`replay_workers.Engines`'s twin
    with one worker: no process, no merge)."""

    def __init__(self, config: AppConfig, venue: str) -> None:
        self._clock = FileClock(new_engine(config, venue))
        self._out: list[Stamped] = []

    def line(self, now_ns: int, quotes: Sequence[Quote],
             indices: Sequence[VenueVolIndex]) -> None:
        self._out += self._clock.line(now_ns, quotes, indices)

    def end(self, now_ns: int) -> None:
        self._out += self._clock.end(now_ns)

    def ready(self) -> list[Stamped]:
        """The surfaces cut since the last call, in publishing order."""
        out, self._out = self._out, []
        return out

    def report(self) -> EngineReport:
        """The engine's report since the last call."""
        return self._clock.engine.drain_report()

    def close(self) -> None:
        """Nothing to stop."""


async def _publish(updates: list[Stamped], sink: Sink, engines: LocalEngines | Engines,
                   stats: ReplayStats | None) -> int:
    """Hand surfaces to the sink, each stamped with the file time that cut it."""
    for now_ns, update in updates:
        sink.publish(msgspec.structs.replace(update, published_ts_ns=now_ns))
    if updates and stats is not None:
        stats.add_report(engines.report())
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
