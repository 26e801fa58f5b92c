"""Shared by the venue tests: golden files, a recording sink, polling, stopping a session.

The golden files in tests/data are read without touching their bytes: every message
is a ``msgspec.Raw`` slice of the file, handed to the decoder as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from streamer.types import Quote

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
        self.connection_no: Callable[[], int] = lambda: 0
        self.quotes_per_connection: Counter[int] = Counter()
        self.events: list[str] = []  # "quote" or the reject reason, in arrival order

    def on_quote(self, quote: Quote) -> None:
        assert quote.venue == self.venue
        self.quotes.append(quote)
        self.quotes_per_connection[self.connection_no()] += 1
        self.events.append("quote")

    def on_reject(self, venue: str, reason: str) -> None:
        assert venue == self.venue
        self.rejects[reason] += 1
        self.events.append(reason)

    def on_reconnect(self, venue: str) -> None:
        self.reconnects += 1

    def on_connected(self, venue: str, connected: bool) -> None:
        self.connected.append(connected)


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Poll ``condition``; fail with ``what`` if it is still false at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


async def stop_session_after_server(task: asyncio.Task[None], sink: RecordingSink,
                                    reconnects_before: int) -> None:
    """Cancel a session whose server has just gone: once it backs off, if it does soon.

    Cancelled in its backoff sleep a session stops at once; cancelled while still
    taking in the lost connection, the cancel can be lost (see ``stop_session``).
    """
    with contextlib.suppress(AssertionError):  # no reconnect coming: cancel anyway
        await wait_until(lambda: sink.reconnects > reconnects_before,
                         "the session backing off", timeout_s=1.0)
    await stop_session(task)


async def stop_session(task: asyncio.Task[None]) -> None:
    """Cancel the session, again if the first cancel was lost.

    A cancel that lands while a session awaits its just-cancelled reader (in the
    ``finally`` after a failed connection) is swallowed by that await's
    ``suppress(CancelledError)`` and the session reconnects on; rather than hang
    the test for its timeout, cancel until it stops. Each wait outlasts websockets'
    10 s close timeout, so a slow closing handshake is never cut short (that would
    leave its socket open).
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=12.0)
    with contextlib.suppress(asyncio.CancelledError):
        await task
