"""`--loop`: each pass of the replay server is re-timed, so quotes stay fresh.

Real parts: the replay server looping a real 30-second Deribit capture on loopback, a
Deribit session reading it over a real websocket.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from streamer.devtools.exchange.timeline import Tick, pass_shift_ms, retime
from streamer.sources.deribit.protocol import DeribitDecoder
from streamer.tickfile import read_tickfile
from tests.sources.deribit_replay import running, wait_until
from tests.sources.golden import write_capture_tickfile

pytestmark = pytest.mark.integration


async def test_every_pass_of_a_loop_moves_exchange_time_on_by_the_recordings_span(
        tmp_path: Path) -> None:
    path = tmp_path / "capture.ndjson"
    rows = write_capture_tickfile(path)
    decoder = DeribitDecoder()
    recorded = [q.exchange_ts_ms for line in read_tickfile(path)
                for q in decoder.decode(line.raw, line.received_ts_ns).quotes]
    per_pass = len(recorded)
    async with running(path, loop=True, speed=50.0) as (_, _, sink):
        await wait_until(lambda: len(sink.quotes) >= 3 * per_pass, "three passes")
        quotes = list(sink.quotes[:3 * per_pass])
    step = pass_shift_ms([Tick(line.received_ts_ns, line.raw, "")
                          for line in read_tickfile(path)])
    assert step > max(recorded) - min(recorded)
    first = min(range(per_pass), key=lambda i: quotes[i].exchange_ts_ms)
    # The session may join after the first few messages: compare pass to pass by instrument.
    by_instrument: dict[str, list[int]] = defaultdict(list)
    for quote in quotes:
        by_instrument[quote.instrument].append(quote.exchange_ts_ms)
    for instrument, stamps in by_instrument.items():
        assert stamps == sorted(stamps), instrument  # never back in time
    assert quotes[-1].exchange_ts_ms > quotes[first].exchange_ts_ms + step
    assert len(rows) > 0


def test_retime_moves_each_venues_exchange_timestamp_and_nothing_else() -> None:
    deribit = b'{"params":{"data":{"timestamp":1732881600123,"strike":90000}}}'
    okx = b'{"data":[{"ts":"1732881600123","px":"0.05"}]}'
    binance = b'[{"E":1732881600123,"s":"BTC-241129-90000-C","T":1732867200000}]'
    assert retime(deribit, 877) == b'{"params":{"data":{"timestamp":1732881601000,"strike":90000}}}'
    assert retime(okx, 1) == b'{"data":[{"ts":"1732881600124","px":"0.05"}]}'
    assert retime(binance, 2) == (
        b'[{"E":1732881600125,"s":"BTC-241129-90000-C","T":1732867200000}]')
    assert retime(okx, 0) is okx
