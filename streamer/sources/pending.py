"""Requests a venue session sent and still waits on: a future each, settled by the reply.

Keys are whatever the venue's replies carry to say what they answer: a request id
(Bybit, Binance) or a channel key (OKX). A request not answered within
``REQUEST_TIMEOUT_S`` times out; one still waiting when the connection ends is
failed, so nothing waits on a dead connection. (Deribit's one request at a time is
its pure ``DeribitConnection``'s, with the same timeout.)
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection

REQUEST_TIMEOUT_S = 10.0

Key = int | str


class PendingRequests:
    """Futures by key, settled by the venue's replies or failed together."""

    def __init__(self) -> None:
        self._futures: dict[Key, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        """A fresh request id (also for messages no one waits on, such as pings)."""
        return next(self._ids)

    def expect(self, key: Key) -> asyncio.Future[Any]:
        """A future for the reply to ``key``; the caller sends the request."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[key] = future
        return future

    async def ask(self, ws: ClientConnection, build: Callable[[int], bytes]) -> Any:
        """Send the request ``build(id)`` and return its answer (or raise its error)."""
        request_id = self.next_id()
        future = self.expect(request_id)
        await ws.send(build(request_id).decode())
        return await asyncio.wait_for(future, timeout=REQUEST_TIMEOUT_S)

    def oldest(self) -> Key | None:
        """The key waited on longest (for replies that do not say what they answer)."""
        return next(iter(self._futures), None)

    def answer(self, key: Key | None, result: Any = None) -> None:
        """Settle ``key`` with ``result``; a reply no one waits on is ignored."""
        future = self._take(key)
        if future is not None:
            future.set_result(result)

    def refuse(self, key: Key | None, error: Exception) -> None:
        """Fail ``key`` with the venue's ``error``; a reply no one waits on is ignored."""
        future = self._take(key)
        if future is not None:
            future.set_exception(error)

    def fail_all(self, error: Exception) -> None:
        """Fail everything still waiting (the connection ended, or the venue said no)."""
        for future in self._futures.values():
            if not future.done():
                future.set_exception(error)
                future.exception()  # mark retrieved: no one may be left awaiting it
        self._futures.clear()

    def _take(self, key: Key | None) -> asyncio.Future[Any] | None:
        future = self._futures.pop(key, None) if key is not None else None
        return None if future is None or future.done() else future
