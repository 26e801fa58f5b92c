"""``streamer replay``: a tick file through decoder and engine, on the file's own clock.

No sockets and no wall clock: the same file always publishes the same bytes (the
deterministic twin of ``streamer run`` over ``url: replay``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import msgspec

from streamer.config import AppConfig
from streamer.pipeline.engine import Engine
from streamer.sinks.base import Sink
from streamer.sources.registry import make_decoder
from streamer.tickfile import read_tickfile


async def replay_file(path: Path, config: AppConfig, sink: Sink, *,
                      on_reject: Callable[[str], None] | None = None) -> int:
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
            for quote in decoded.quotes:
                engine.on_quote(quote)
            for index in decoded.vol_indices:
                engine.on_vol_index(index)
            for reason in decoded.rejects:
                if on_reject is not None:
                    on_reject(reason)
            for update in engine.on_timer(now_ns):
                sink.publish(msgspec.structs.replace(update, published_ts_ns=now_ns))
                count += 1
            if count and count % 64 == 0:
                await asyncio.sleep(0)  # let an async sink drain
        for update in engine.flush(now_ns):
            sink.publish(msgspec.structs.replace(update, published_ts_ns=now_ns))
            count += 1
    finally:
        await sink.stop()
    return count
