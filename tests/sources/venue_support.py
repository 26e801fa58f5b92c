"""Shared by the OKX, Bybit and Binance tests: golden files, a recording sink, a loopback server.

The golden files in tests/data are read without touching their bytes: every message
is a ``msgspec.Raw`` slice of the file, handed to the decoder as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

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

    def on_quote(self, quote: Quote) -> None:
        assert quote.venue == self.venue
        self.quotes.append(quote)
        self.quotes_per_connection[self.connection_no()] += 1

    def on_reject(self, venue: str, reason: str) -> None:
        assert venue == self.venue
        self.rejects[reason] += 1

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


class Runnable(Protocol):
    """A venue session."""

    async def run(self) -> None:
        """Stream until cancelled."""


@contextlib.asynccontextmanager
async def running(session: Runnable) -> AsyncIterator[None]:
    """Run a session in the background; it must still be running at the end."""
    task = asyncio.create_task(session.run())
    try:
        yield
        assert not task.done(), task.exception() if task.done() else "the session must run"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


Handler = Callable[[ServerConnection, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def loopback(handler: Handler, **serve_kwargs: Any) -> AsyncIterator[Server]:
    """A websocket server on 127.0.0.1; ``handler(ws, n)`` runs for the n-th connection."""
    connections = 0

    async def serve_one(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(ConnectionClosed):
            await handler(ws, connections)

    server = await serve(serve_one, "127.0.0.1", 0, ping_interval=None, **serve_kwargs)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


def url_of(server: Server, path: str = "/") -> str:
    """``ws://127.0.0.1:<port><path>`` of a loopback server."""
    port = next(iter(server.sockets)).getsockname()[1]
    return f"ws://127.0.0.1:{port}{path}"


def drop(ws: ServerConnection) -> None:
    """Cut the TCP connection without a closing handshake, as a network failure does."""
    ws.transport.abort()
