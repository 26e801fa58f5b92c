"""A local stand-in for an exchange: serves a tick file over websocket in the venue's protocol.

The server is venue-blind: it loads the file (each message keyed by the venue
protocol), plays it on one shared timeline (``timeline.py``), sends each message
only to connections subscribed to its key, answers client frames through the venue
protocol, and injects the faults of :class:`Faults` (drops, stalls, garbage frames,
refused or rate-limited subscribes, silenced heartbeats or streams, maintenance,
listings and expiries), and pings clients as the venue does (Binance).
:class:`ReplayStats` tells per connection what happened. ``streamer serve-replay``
runs one from the command line (``command.py``).
"""

from __future__ import annotations

import asyncio
import http
import random
import time
from pathlib import Path

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from streamer.config import TICKFILE_DEFAULTS, TickFileConfig
from streamer.devtools.exchange.binance import BinanceReplay
from streamer.devtools.exchange.bybit import BybitReplay
from streamer.devtools.exchange.deribit import DeribitReplay
from streamer.devtools.exchange.faults import Faults
from streamer.devtools.exchange.okx import OkxReplay
from streamer.devtools.exchange.stats import ReplayStats
from streamer.devtools.exchange.timeline import Tick, Timeline, load_ticks
from streamer.devtools.exchange.venue import Client, Refusal, VenueProtocol
from streamer.errors import ConfigError, listen_error
from streamer.tasks import cancel_and_wait

NO_FAULTS = Faults()
VENUES: dict[str, type[VenueProtocol]] = {
    v.name: v for v in (DeribitReplay, OkxReplay, BybitReplay, BinanceReplay)}


class ReplayServer:
    """Serve a recorded tick file to any number of websocket clients; ``ping_interval_s``
    and ``pong_timeout_s`` override the venue's own websocket pings (Binance's)."""

    def __init__(self, path: str | Path, *, venue: str = "deribit", host: str = "127.0.0.1",
                 port: int = 0, speed: float = 1.0, loop: bool = False,
                 faults: Faults = NO_FAULTS, ping_interval_s: float | None = None,
                 pong_timeout_s: float | None = None,
                 tickfile: TickFileConfig = TICKFILE_DEFAULTS) -> None:
        if venue not in VENUES:
            raise ValueError(f"the replay server speaks {sorted(VENUES)}, not {venue!r}")
        self.path, self.host, self._port = Path(path), host, port
        self.faults = faults
        self.tickfile = tickfile
        self.stats = ReplayStats()
        self.timeline = Timeline(speed, loop, faults)
        self.venue = VENUES[venue](self)
        self.venue_name = venue
        self.ping_interval_s = (self.venue.ping_interval_s if ping_interval_s is None
                                else ping_interval_s)
        self.pong_timeout_s = (self.venue.pong_timeout_s if pong_timeout_s is None
                               else pong_timeout_s)
        self._staged = faults.new_listing is not None or faults.expiry is not None
        self._clients: set[Client] = set()
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._rate_limits_left = faults.rate_limit_subscribes
        self._subscribes = 0  # subscribe requests so far, every connection's
        self._rng = random.Random(faults.seed)
        self._ticks: list[Tick] = []
        self._known: set[str] = set()  # instruments with a key of their own in the file

    @property
    def port(self) -> int:
        """The listening port (resolved after start when 0 was asked)."""
        return self._port

    @property
    def url(self) -> str:
        """``ws://host:port``."""
        return f"ws://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        """``http://host:port``: the venue's REST endpoints, if it has any (Bybit)."""
        return f"http://{self.host}:{self.port}"

    @property
    def finished(self) -> asyncio.Event:
        """Set when the file has played to its end (never, with ``loop``)."""
        return self.timeline.finished

    @property
    def platform_locked(self) -> bool:
        """Whether the ``maintenance`` fault has the platform (or its index) locked now."""
        return self.timeline.in_maintenance()

    async def start(self) -> None:
        """Load the file and start listening."""
        self._ticks = await asyncio.to_thread(load_ticks, self.path, self.venue.key_of,
                                             self.tickfile)
        keys = {tick.key for tick in self._ticks}
        self.venue.load(keys)
        self._known = {i for i in map(self.venue.instrument_of, keys) if i is not None}
        if not keys - {""}:  # no channel of this venue: e.g. OKX on Deribit's recording
            raise ConfigError(f"{self.path} holds no {self.venue_name} market data: "
                              "is it a recording of another venue?")
        # No library keepalive: only the venue's own pings (Binance's), as live.
        try:
            self._server = await serve(self._handle, self.host, self._port, max_size=2**20,
                                       process_request=self._http, ping_interval=None)
        except OSError as exc:
            raise listen_error(exc, "the replay server", self.host, self._port,
                               "--port") from exc
        self._port = next(iter(self._server.sockets)).getsockname()[1]
        self._tasks = [asyncio.create_task(self.timeline.play(self._ticks, self._broadcast)),
                       asyncio.create_task(self.timeline.maintenance(self._notify))]
        if self.faults.drop_every_s:
            self._tasks.append(asyncio.create_task(self._drop_loop(self.faults.drop_every_s)))

    async def stop(self) -> None:
        """Stop playing and close every connection."""
        for task in self._tasks:
            await cancel_and_wait(task)
        for client in self._clients:
            client.stats.closed_by = client.stats.closed_by or "server_stop"
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> ReplayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what venue protocols ask of the server (venue.Replay) ----------------------------
    def listed(self, instrument: str) -> bool:
        """False before a staged listing and after a staged expiry."""
        return self.timeline.listed(instrument)

    def in_maintenance(self) -> bool:
        """Whether the maintenance window is open now."""
        return self.timeline.in_maintenance()

    def subscribe(self, client: Client, keys: list[str]) -> list[str] | Refusal:
        """Count a request; the keys confirmed (refused and delisted ones left out)."""
        client.stats.requested.update(keys)
        self._subscribes += 1
        every = self.faults.rate_limit_every
        if self._rate_limits_left > 0 or (every and self._subscribes % every == 0):
            self._rate_limits_left = max(0, self._rate_limits_left - 1)
            self.stats.rate_limited += 1
            client.stats.rate_limited_at = time.monotonic()
            client.stats.closed_by = "rate_limit"
            client.close_after_reply = (1008, "too_many_requests")
            return Refusal.RATE_LIMITED
        if self.faults.reject_subscribe:
            client.stats.subscribes_rejected += 1
            self.stats.subscribes_rejected += 1
            return Refusal.REJECTED
        self.timeline.start()
        confirmed = [k for k in keys if k not in self.faults.refuse_channels and self._live(k)]
        client.keys.update(confirmed)
        client.stats.subscriptions.update(confirmed)
        self.stats.subscriptions.update(confirmed)
        return confirmed

    def unsubscribe(self, client: Client, keys: list[str]) -> None:
        """Stop sending ``keys`` to the client."""
        client.keys.difference_update(keys)
        client.stats.unsubscriptions.update(keys)
        self.stats.unsubscriptions.update(keys)

    # -- playback --------------------------------------------------------------------------
    def _live(self, key: str) -> bool:
        """False for the key of a known instrument that is not (or no longer) listed."""
        instrument = self.venue.instrument_of(key)
        return instrument not in self._known or self.listed(instrument)

    async def _broadcast(self, tick: Tick) -> None:
        if self.in_maintenance() or not self._live(tick.key) or self.timeline.silenced(tick.key):
            return  # no trading, an expired instrument falls silent, a dead stream too
        listed = self.venue.listed_only(tick.key, tick.raw) if self._staged else tick.raw
        for client in list(self._clients):
            if tick.key not in client.keys or client.stalled():
                continue
            garbage = bool(self.faults.garbage_rate) and (
                self._rng.random() < self.faults.garbage_rate)
            raw = listed[:len(listed) // 2] if garbage else listed  # never valid JSON
            if await client.send(raw.decode("utf-8", "replace")):
                self.stats.messages_sent += 1
                self.stats.garbage_sent += garbage
                client.stats.messages_sent += 1

    async def _notify(self, locked: bool) -> None:
        notice = self.venue.notice(locked)
        if notice is None:
            return
        key, message = notice
        for client in list(self._clients):
            if key in client.keys and not client.stalled() and await client.send(message):
                self.stats.platform_notices += 1

    async def _drop_loop(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            for client in list(self._clients):
                self.stats.drops += 1
                client.stats.closed_by = "drop"
                await client.ws.close(1012, "replay server drop (fault injection)")

    # -- connections -----------------------------------------------------------------------
    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        body = self.venue.http(request.path)
        if body is None:
            return None  # a websocket handshake
        self.stats.http_requests += 1
        response = connection.respond(http.HTTPStatus.OK, body.decode())
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    async def _handle(self, ws: ServerConnection) -> None:
        client = Client(ws, self.faults)
        self._clients.add(client)
        self.stats.connections += 1
        self.stats.per_connection.append(client.stats)
        client.watch_pongs()
        if self.venue.idle_close_s is not None:
            client.spawn(self._close_when_idle(client, self.venue.idle_close_s))
        if self.ping_interval_s:  # None or 0: no pings of the server's own
            client.spawn(client.ping_every(self.ping_interval_s, self.pong_timeout_s))
        try:
            async for frame in ws:
                if client.stalled():
                    continue
                for reply in self.venue.answer(client, frame):
                    await client.send(reply)
                if client.close_after_reply is not None:
                    await ws.close(*client.close_after_reply)
        except ConnectionClosed:
            pass
        finally:
            client.stats.closed_at = time.monotonic()
            client.stats.closed_by = client.stats.closed_by or "client"
            self._clients.discard(client)
            client.cancel_tasks()

    async def _close_when_idle(self, client: Client, idle_s: float) -> None:
        """Like OKX: a connection that was sent nothing for ``idle_s`` is closed."""
        while (quiet := time.monotonic() - client.last_sent_at) < idle_s:
            await asyncio.sleep(idle_s - quiet)
        client.stats.closed_by = "idle"
        self.stats.idle_closes += 1
        await client.ws.close(1000, f"no data for {idle_s:g}s")

