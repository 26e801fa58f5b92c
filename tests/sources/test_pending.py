"""PendingRequests: the futures a session waits on, settled by replies or failed together."""

from __future__ import annotations

import asyncio

import pytest

from streamer.errors import VenueDisconnected, VenueError
from streamer.sources.pending import PendingRequests


class SentFrames:
    """Stands in for the websocket: keeps what the session sends (pure bookkeeping test)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, text: str) -> None:
        self.sent.append(text)


async def test_ask_sends_the_request_with_a_fresh_id_and_returns_the_answer() -> None:
    requests, ws = PendingRequests(), SentFrames()
    task = asyncio.create_task(requests.ask(ws, lambda i: f"req {i}".encode()))
    await asyncio.sleep(0)
    assert ws.sent == ["req 1"]
    requests.answer(1, ["ticker.X"])
    assert await task == ["ticker.X"]
    assert requests.next_id() == 2


async def test_a_refused_request_raises_the_venues_error() -> None:
    requests, ws = PendingRequests(), SentFrames()
    task = asyncio.create_task(requests.ask(ws, lambda i: b"x"))
    await asyncio.sleep(0)
    requests.refuse(1, VenueError("subscribe refused"))
    with pytest.raises(VenueError, match="refused"):
        await task


async def test_replies_no_one_waits_on_are_ignored() -> None:
    requests = PendingRequests()
    future = requests.expect(7)
    requests.answer(8, "stray")
    requests.answer(None, "no id")
    requests.refuse(9, VenueError("stray"))
    assert not future.done()
    requests.answer(7, "ok")
    requests.answer(7, "twice")  # a duplicate reply is ignored, not an InvalidStateError
    assert future.result() == "ok"


async def test_oldest_is_the_first_request_still_waiting() -> None:
    requests = PendingRequests()
    assert requests.oldest() is None
    requests.expect(3)
    requests.expect("tickers:BTC-USD")
    assert requests.oldest() == 3
    requests.answer(3)
    assert requests.oldest() == "tickers:BTC-USD"


async def test_fail_all_fails_every_waiting_future_and_forgets_them() -> None:
    requests = PendingRequests()
    first, second = requests.expect(1), requests.expect(2)
    requests.fail_all(VenueDisconnected("connection closed"))
    for future in (first, second):
        with pytest.raises(VenueDisconnected):
            future.result()
    assert requests.oldest() is None
    requests.answer(1, "late")  # the reply to a failed request changes nothing
    assert isinstance(first.exception(), VenueDisconnected)
