"""Shared by the venue tests: golden files, a recording sink, polling, stopping a session.

The golden files in tests/data are read without touching their bytes: every message
is a ``msgspec.Raw`` slice of the file, handed to the decoder as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from streamer.sources.decoded import Decoded
from streamer.types import Quote, VenueVolIndex

DATA = Path(__file__).parents[1] / "data"


def raw_messages(filename: str, key: str = "messages") -> list[bytes]:
    """The messages under ``key`` of a golden file, each exactly as written there."""
    top = msgspec.json.decode((DATA / filename).read_bytes(), type=dict[str, msgspec.Raw])
    return [bytes(m) for m in msgspec.json.decode(top[key], type=list[msgspec.Raw])]


def parsed(raw: bytes) -> Any:
    """A message parsed by the standard library, independently of the decoder under test."""
    return json.loads(raw)


class RecordingSink:
    """A QuoteSink that keeps everything it is told, per connection of the session."""

    def __init__(self, venue: str) -> None:
        self.venue = venue
        self.quotes: list[Quote] = []
        self.rejects: Counter[str] = Counter()
        self.reconnects = 0
        self.connected: list[bool] = []
        self.vol_indices: list[VenueVolIndex] = []
        self.connection_no: Callable[[], int] = lambda: 0
        self.quotes_per_connection: Counter[int] = Counter()
        self.events: list[str] = []  # "quote" or the reject reason, in arrival order
        self.arrivals: list[tuple[int, float]] = []  # per quote: (connection, monotonic s)

    def on_quote(self, quote: Quote) -> None:
        assert quote.venue == self.venue
        self.quotes.append(quote)
        self.quotes_per_connection[self.connection_no()] += 1
        self.arrivals.append((self.connection_no(), time.monotonic()))
        self.events.append("quote")

    def on_reject(self, venue: str, reason: str) -> None:
        assert venue == self.venue
        self.rejects[reason] += 1
        self.events.append(reason)

    def on_reconnect(self, venue: str) -> None:
        self.reconnects += 1

    def on_connected(self, venue: str, connected: bool) -> None:
        self.connected.append(connected)

    def on_vol_index(self, index: VenueVolIndex) -> None:
        self.vol_indices.append(index)


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Poll ``condition``; fail with ``what`` if it is still false at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


async def stop_session(task: asyncio.Task[None]) -> None:
    """Cancel the session; it must have stopped within 5 s, whatever it was doing.

    A cancel may land at any point (streaming, backing off, taking in a lost
    connection); it must never be lost, and the close handshake is bounded (1 s).
    """
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5.0)
    assert done, "the session did not stop when cancelled"
    with contextlib.suppress(asyncio.CancelledError):
        await task


def assert_sane(decoded: Decoded, reasons: set[str]) -> None:
    """What any decoded frame must satisfy, whatever the input (the fuzz tests' check)."""
    assert isinstance(decoded, Decoded)
    assert set(decoded.rejects) <= reasons
    for q in decoded.quotes:
        assert isinstance(q, Quote)
        assert math.isfinite(q.underlying_price)
        assert q.underlying_price > 0
        for value in (q.bid_price, q.ask_price, q.bid_iv, q.ask_iv, q.mark_iv, q.bid_size,
                      q.ask_size):
            assert math.isnan(value) or (math.isfinite(value) and value >= 0)
        assert not q.bid_price > q.ask_price
        assert 0 <= q.exchange_ts_ms < q.expiry_ts_ms
