"""What a venue protocol is to the replay server, and what the server offers it.

The server (``server.py``) owns the tick file, the shared timeline, the connections
and the faults; a venue protocol (``deribit.py``, ``okx.py``, ``bybit.py``,
``binance.py``) owns the wire format: which subscription key a recorded data message
belongs to, and how to answer a client's frame (subscribe acknowledgements or
errors, pings). Venues that need them add an idle limit (``idle_close_s``), notices
during maintenance (``notice``) and HTTP endpoints on the same port (``http``).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import time
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, cast

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from streamer.devtools.exchange.faults import Faults
from streamer.devtools.exchange.stats import ConnectionStats, ReplayStats


def _past(opened_at: float, after_s: float | None) -> bool:
    return after_s is not None and time.monotonic() - opened_at > after_s


@dataclass(eq=False)
class Client:
    """One websocket connection: what it subscribed, what it was sent, its own tasks."""

    ws: ServerConnection
    faults: Faults
    keys: set[str] = field(default_factory=set)  # confirmed subscription keys
    stats: ConnectionStats = field(default_factory=ConnectionStats)
    last_sent_at: float = field(default_factory=time.monotonic)
    heartbeat_s: float | None = None  # server heartbeats asked for (Deribit set_heartbeat)
    last_heartbeat_reply_at: float = field(default_factory=time.monotonic)
    last_pong_at: float = field(default_factory=time.monotonic)  # answering our pings
    close_after_reply: tuple[int, str] | None = None  # (code, reason)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def stalled(self) -> bool:
        """Whether the ``stall_after_s`` fault has this connection silent now."""
        return _past(self.stats.opened_at, self.faults.stall_after_s)

    def beats_stopped(self) -> bool:
        """Whether the ``stop_heartbeats_after_s`` fault holds back heartbeats and pongs."""
        return _past(self.stats.opened_at, self.faults.stop_heartbeats_after_s)

    async def send(self, frame: str) -> bool:
        """Send a text frame; False if the connection is already closed."""
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(frame)
            self.last_sent_at = time.monotonic()
            return True
        return False

    def watch_pongs(self) -> None:
        """Count the pongs answering websocket pings, and hold them back while stalled or
        while heartbeats are stopped (Binance's heartbeat is the websocket ping).

        websockets answers a ping inside its sans-IO protocol, before any handler sees
        it, so the frame it sends is the one place to intercept the pong.
        """
        send_frame = self.ws.protocol.send_frame

        def send(frame: Frame) -> None:
            if frame.opcode is Opcode.PONG:
                if self.stalled() or self.beats_stopped():
                    self.stats.pings_unanswered += 1
                    return
                self.stats.pings_answered += 1
            send_frame(frame)

        self.ws.protocol.send_frame = send  # type: ignore[method-assign]

    async def ping_every(self, interval_s: float, timeout_s: float) -> None:
        """Send a websocket ping every ``interval_s``; close the connection once no pong
        came for ``timeout_s`` (since it opened or since the last pong), like Binance.

        Silent while stalled or while heartbeats are stopped: nothing asked, so nothing
        is left unanswered.
        """
        def ponged(waiter: asyncio.Future[float]) -> None:
            if not waiter.cancelled() and waiter.exception() is None:
                self.last_pong_at = time.monotonic()
                self.stats.server_pongs += 1

        while True:
            await asyncio.sleep(interval_s)
            if self.stalled() or self.beats_stopped():
                continue
            if time.monotonic() - self.last_pong_at > timeout_s:
                self.stats.closed_by = "pong_timeout"
                await self.ws.close(1008, f"no pong for {timeout_s:g}s")
                return
            with contextlib.suppress(ConnectionClosed):
                waiter = cast("asyncio.Future[float]", await self.ws.ping())
                self.stats.server_pings += 1
                waiter.add_done_callback(ponged)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` for as long as the connection lasts."""
        self.tasks.append(asyncio.create_task(work))

    def cancel_tasks(self) -> None:
        """The connection closed: stop its tasks."""
        for task in self.tasks:
            task.cancel()


class Refusal(enum.Enum):
    """Why the server refused a whole subscribe request (the venue words the error)."""

    REJECTED = "rejected"  # the reject_subscribe fault
    RATE_LIMITED = "rate_limited"  # the rate_limit_subscribes fault; closed after the reply


class Replay(Protocol):
    """The server as a venue protocol sees it."""

    faults: Faults
    stats: ReplayStats

    def listed(self, instrument: str) -> bool:
        """False before a staged listing and after a staged expiry."""

    def in_maintenance(self) -> bool:
        """Whether the ``maintenance`` fault has the platform (or its index) locked now."""

    def subscribe(self, client: Client, keys: list[str]) -> list[str] | Refusal:
        """Count a request; the keys confirmed (refused and delisted ones left out)."""

    def unsubscribe(self, client: Client, keys: list[str]) -> None:
        """Stop sending ``keys`` to the client."""


class VenueProtocol(abc.ABC):
    """One exchange's wire protocol, served from a recorded tick file."""

    name: ClassVar[str]
    idle_close_s: ClassVar[float | None] = None  # close a connection sent nothing this long
    ping_interval_s: ClassVar[float | None] = None  # websocket pings of the venue's own
    pong_timeout_s: ClassVar[float] = float("inf")  # then closed without a pong this long

    def __init__(self, replay: Replay) -> None:
        self.replay = replay

    @staticmethod
    @abc.abstractmethod
    def key_of(raw: bytes) -> str:
        """The subscription key of a recorded message ("" if none: never sent)."""

    @abc.abstractmethod
    def answer(self, client: Client, frame: str | bytes) -> list[str]:
        """The replies to one client frame, in order (none for what the venue ignores)."""

    def instrument_of(self, key: str) -> str | None:
        """The one instrument a key streams, if it streams one (listings and expiries)."""
        return None

    def listed_only(self, key: str, raw: bytes) -> bytes:
        """A recorded push without its items of unlisted instruments (staged listings
        and expiries), for pushes that carry a whole chain; others are sent as recorded."""
        return raw

    def load(self, keys: Collection[str]) -> None:
        """Learn the instruments from every key of the file (instrument lists)."""
        return None

    def notice(self, locked: bool) -> tuple[str, str] | None:
        """A maintenance notice (lock or unlock) and the key it is sent on, if any."""
        return None

    def http(self, path: str) -> bytes | None:
        """The JSON body answering ``GET path`` on the same port; None: not ours."""
        return None


_object = msgspec.json.Decoder(dict[str, msgspec.Raw])
_array = msgspec.json.Decoder(list[msgspec.Raw])
_encoder = msgspec.json.Encoder()


def listed_items(raw: bytes, name_of: Callable[[msgspec.Raw], str],
                 listed: Callable[[str], bool]) -> bytes:
    """``{..., "data": [item, ...]}`` without the items whose instrument (``name_of``)
    is not ``listed``; what is kept keeps its recorded bytes."""
    try:
        message = _object.decode(raw)
        items = _array.decode(message["data"])
        kept = [item for item in items if listed(name_of(item))]
    except (msgspec.DecodeError, KeyError):
        return raw  # not a push of items: as recorded
    if len(kept) == len(items):
        return raw
    message["data"] = msgspec.Raw(_encoder.encode(kept))
    return _encoder.encode(message)
