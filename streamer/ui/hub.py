"""The latest surface per key and the browsers following them, conflated per key.

``SurfaceHub.publish`` is called for every delivered surface and never blocks: it
stores the surface, marks its key pending on every connected client, and schedules
one ``flush`` on the event loop. The flush frames each new surface once and writes the
same bytes straight to every client whose socket keeps up: no task of a client wakes
for a surface, so twenty browsers cost twenty socket writes. A client whose socket
is backed up (past its transport's high-water mark) is skipped and woken instead:
its own task waits for the socket to drain, then writes its pending keys; a key
marked again before that is written once, with the newest surface
(``Client.conflated`` counts the skipped ones). So a slow browser sees fewer surfaces,
never older ones, and never slows the publisher.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from streamer.sinks.codec import encode_surface
from streamer.types import Quote, SurfaceUpdate
from streamer.ui.curves import surface_curves
from streamer.ui.sse import sse_frame

HealthSource = Callable[[], dict[str, Any]]
QuotesSource = Callable[[SurfaceUpdate], "list[Quote] | None"]


class Client:
    """One /ui/events reader: its socket, and the keys it has not been sent the newest
    surface of. ``wake`` calls its own task (a backed-up socket, a closed one, the end)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.pending: dict[str, None] = {}
        self.wake = asyncio.Event()
        self.conflated = 0

    def backed_up(self) -> bool:
        """The socket is past its high-water mark, or closing: the client's task writes."""
        transport = self.writer.transport
        return (transport.is_closing() or transport.get_write_buffer_size()
                > transport.get_write_buffer_limits()[1])

    def offer(self, key: str) -> None:
        """Mark ``key`` as having a newer surface than the one last sent."""
        if key in self.pending:
            self.conflated += 1
        self.pending[key] = None

    def take(self) -> list[str]:
        """The pending keys, oldest first; clears them."""
        keys = list(self.pending)
        self.pending.clear()
        return keys


class SurfaceHub:
    """Latest surfaces by key, their encodings, and the connected clients."""

    def __init__(self, health: HealthSource | None = None,
                 quotes: QuotesSource | None = None, window: int = 4096) -> None:
        self.latest: dict[str, SurfaceUpdate] = {}
        self.clients: set[Client] = set()
        self.closed = False
        self._health = health
        self._quotes = quotes
        self._encoded: dict[str, tuple[int, bytes]] = {}
        self._curves: dict[str, tuple[int, bytes]] = {}
        self._frames: dict[str, tuple[int, bytes]] = {}
        self._health_json: tuple[float, bytes] = (-1.0, b"")
        self._flush_due = False
        #: tick→publish seconds of the last ``window`` delivered surfaces (health event)
        self.latencies_s: deque[float] = deque(maxlen=window)

    def publish(self, update: SurfaceUpdate, latency_s: float | None = None) -> None:
        """Store a delivered surface and tell every client; never blocks."""
        self.latest[update.key] = update
        if latency_s is not None:
            self.latencies_s.append(latency_s)
        for client in self.clients:
            client.offer(update.key)
        if self.clients and not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write every client's pending surfaces, or wake its task when its socket is
        backed up (it writes them once the socket drains)."""
        self._flush_due = False
        for client in self.clients:
            if client.backed_up():
                client.wake.set()
            else:
                self.write_pending(client)

    def write_pending(self, client: Client) -> None:
        """The client's pending keys, newest surface of each, framed once for all."""
        for key in client.take():
            frames = self.frames(key)
            if frames is not None:
                client.writer.write(frames)

    def subscribe(self, writer: asyncio.StreamWriter) -> Client:
        """A new client, with every known key pending (it starts from the latest)."""
        client = Client(writer)
        for key in sorted(self.latest):
            client.offer(key)
        self.clients.add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        """Forget a client that went away."""
        self.clients.discard(client)

    def close(self) -> None:
        """Wake every client so its stream ends (the server is stopping)."""
        self.closed = True
        for client in self.clients:
            client.wake.set()

    def encoded(self, key: str) -> bytes | None:
        """The ``vol.surface.v1`` JSON of the latest surface of ``key`` (encoded once)."""
        update = self.latest.get(key)
        if update is None:
            return None
        cached = self._encoded.get(key)
        if cached is None or cached[0] != update.seq:
            cached = self._encoded[key] = (update.seq, encode_surface(update))
        return cached[1]

    def curves(self, key: str) -> bytes | None:
        """The fitted smiles (and quotes, when known) of the latest surface, as JSON."""
        update = self.latest.get(key)
        if update is None:
            return None
        cached = self._curves.get(key)
        if cached is None or cached[0] != update.seq:
            quotes = self._quotes(update) if self._quotes is not None else None
            cached = self._curves[key] = (update.seq, surface_curves(update, quotes))
        return cached[1]

    def frames(self, key: str) -> bytes | None:
        """The ``surface`` and ``curves`` events of the latest surface of ``key``, framed once
        and written as the same bytes to every client."""
        update = self.latest.get(key)
        if update is None:
            return None
        cached = self._frames.get(key)
        if cached is None or cached[0] != update.seq:
            surface, curves = self.encoded(key), self.curves(key)
            assert surface is not None
            assert curves is not None
            cached = self._frames[key] = (update.seq, sse_frame(
                "surface", surface, f"{key}@{update.seq}") + sse_frame("curves", curves))
        return cached[1]

    def health_json(self, max_age_s: float = 0.5) -> bytes:
        """:meth:`health` as JSON, computed at most every ``max_age_s`` for all clients (a
        rate is over the time since the previous computation, not per client)."""
        when, body = self._health_json
        now = time.monotonic()
        if now - when >= max_age_s or not body:
            self._health_json = (now, body := json.dumps(self.health()).encode())
        return body

    def health(self) -> dict[str, Any]:
        """The health figures of the page: the source's, plus our own latency percentiles."""
        body: dict[str, Any] = dict(self._health()) if self._health is not None else {}
        if self.latencies_s:
            p50, p99 = np.percentile(np.fromiter(self.latencies_s, float), [50, 99]) * 1e3
            body.setdefault("latency_ms", {"p50": round(float(p50), 3),
                                           "p99": round(float(p99), 3)})
        body["keys"] = sorted(self.latest)
        body["clients"] = len(self.clients)
        return body
