"""A local stand-in for Deribit: serves a tick file over websocket in Deribit's protocol.

It answers ``public/get_instruments`` (built from the file's ticker channels),
``public/subscribe``/``unsubscribe`` (only subscribed channels are then sent; the
reply lists the channels subscribed, leaving out unlisted instruments),
``public/set_heartbeat`` (then sends ``test_request`` every interval and closes a
connection that stops answering), ``public/status`` and ``public/test``, and sends
``platform_state`` notifications. The file plays on one shared timeline like a live
exchange: the clock starts at the first subscription and message i is due
``(recv_i - recv_0) / speed`` later; a client connecting later joins at the current
position. Faults and market events (listings, expiries, maintenance) can be
injected for tests, and :class:`ReplayStats` tells per connection what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from streamer.sources.deribit.protocol import parse_instrument_name
from streamer.tickfile import read_tickfile

log = logging.getLogger(__name__)

GARBAGE = b'{"jsonrpc":"2.0","method":"subscription","params":{"chan'


@dataclass(frozen=True)
class Faults:
    """Misbehaviour and market events to inject.

    ``drop_every_s`` counts from the server's start; ``stall_after_s`` and
    ``stop_heartbeats_after_s`` from each connection's opening; ``maintenance``,
    ``new_listing`` and ``expiry`` from the start of playback (the first subscribe).
    """

    drop_every_s: float | None = None  # close every connection (1012) this often
    stall_after_s: float | None = None  # then silent: no data, heartbeats or replies
    garbage_rate: float = 0.0  # share of data frames replaced by a truncated one
    reject_subscribe: bool = False  # answer every public/subscribe with error 11050
    seed: int = 0
    rate_limit_subscribes: int = 0  # answer the first N subscribes 10028, then close
    refuse_channels: frozenset[str] = frozenset()  # left out of every subscribe reply
    stop_heartbeats_after_s: float | None = None  # then no heartbeats; data goes on
    maintenance: tuple[float, float] | None = None  # (start, length): locked, no data
    maintenance_index: str | None = None  # lock this price index, not the platform
    new_listing: tuple[str, float] | None = None  # (instrument, at): listed from then
    expiry: tuple[str, float] | None = None  # (instrument, at): delisted, silent from then


@dataclass
class ConnectionStats:
    """One connection as the server saw it; times are ``time.monotonic()``."""

    opened_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None
    closed_by: str = ""  # client, drop, heartbeat, rate_limit or server_stop
    requested: Counter[str] = field(default_factory=Counter)  # asked for in subscribes
    subscriptions: Counter[str] = field(default_factory=Counter)  # confirmed
    unsubscriptions: Counter[str] = field(default_factory=Counter)
    messages_sent: int = 0
    heartbeats_sent: int = 0
    last_heartbeat_at: float | None = None
    rate_limited_at: float | None = None


@dataclass
class ReplayStats:
    """What the server did, for tests."""

    connections: int = 0
    messages_sent: int = 0
    drops: int = 0
    test_requests_answered: int = 0
    subscriptions: Counter[str] = field(default_factory=Counter)  # confirmed
    unsubscriptions: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    heartbeat_closes: int = 0
    platform_notices: int = 0
    per_connection: list[ConnectionStats] = field(default_factory=list)


class _ChannelOnly(msgspec.Struct):
    class _Params(msgspec.Struct):
        channel: str = ""

    params: _Params = msgspec.field(default_factory=_Params)


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    channels: set[str] = field(default_factory=set)
    stats: ConnectionStats = field(default_factory=ConnectionStats)
    heartbeat_task: asyncio.Task[None] | None = None
    last_test_reply: float = field(default_factory=time.monotonic)
    close_after_reply: tuple[int, str] | None = None


class ReplayServer:
    """Serve a recorded tick file to any number of websocket clients."""

    def __init__(self, path: str | Path, *, venue: str = "deribit", host: str = "127.0.0.1",
                 port: int = 0, speed: float = 1.0, loop: bool = False,
                 faults: Faults = Faults()) -> None:
        if venue != "deribit":
            raise ValueError(f"the replay server speaks deribit only, not {venue!r}")
        self.path, self.host, self._port = Path(path), host, port
        self.speed, self.loop, self.faults = speed, loop, faults
        self.finished = asyncio.Event()
        self.stats = ReplayStats()
        self._clients: set[_Client] = set()
        self._server: Server | None = None
        self._player: asyncio.Task[None] | None = None
        self._dropper: asyncio.Task[None] | None = None
        self._notices: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._started_at: float | None = None
        self._rate_limits_left = faults.rate_limit_subscribes
        self._rng = random.Random(faults.seed)
        self._lines: list[tuple[int, bytes, str]] = []
        self._instruments: dict[str, list[dict[str, Any]]] = {}
        self._known: set[str] = set()

    @property
    def port(self) -> int:
        """The listening port (resolved after start when 0 was asked)."""
        return self._port

    @property
    def url(self) -> str:
        """``ws://host:port``."""
        return f"ws://{self.host}:{self.port}"

    @property
    def platform_locked(self) -> bool:
        """Whether the ``maintenance`` fault has the platform (or its index) locked now."""
        return self._in_maintenance()

    async def start(self) -> None:
        """Load the file and start listening."""
        self._lines, self._instruments = await asyncio.to_thread(_load, self.path)
        self._known = {i["instrument_name"] for listed in self._instruments.values()
                       for i in listed}
        self._server = await serve(self._handle, self.host, self._port, max_size=2**20)
        self._port = next(iter(self._server.sockets)).getsockname()[1]
        self._player = asyncio.create_task(self._play(), name="replay-player")
        if self.faults.drop_every_s:
            self._dropper = asyncio.create_task(self._drop_loop(self.faults.drop_every_s))
        if self.faults.maintenance:
            self._notices = asyncio.create_task(self._maintenance(*self.faults.maintenance))

    async def stop(self) -> None:
        """Stop playing and close every connection."""
        for task in (self._player, self._dropper, self._notices):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
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

    # -- playback ----------------------------------------------------------------
    async def _play(self) -> None:
        await self._started.wait()
        while True:
            origin_wall, origin_file = time.monotonic(), self._lines[0][0] if self._lines else 0
            for received_ns, raw, channel in self._lines:
                due = origin_wall + (received_ns - origin_file) / 1e9 / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._broadcast(channel, raw)
            if not self.loop:
                self.finished.set()
                return

    async def _broadcast(self, channel: str, raw: bytes) -> None:
        if self._in_maintenance() or not self._channel_listed(channel):
            return  # no trading, and an expired instrument's ticker falls silent
        for client in list(self._clients):
            if channel not in client.channels or self._stalled(client):
                continue
            frame = raw
            if self.faults.garbage_rate and self._rng.random() < self.faults.garbage_rate:
                frame = GARBAGE
            with contextlib.suppress(ConnectionClosed):
                await client.ws.send(frame.decode())
                self.stats.messages_sent += 1
                client.stats.messages_sent += 1

    def _stalled(self, client: _Client) -> bool:
        stall = self.faults.stall_after_s
        return stall is not None and time.monotonic() - client.stats.opened_at > stall

    def _beats_stopped(self, client: _Client) -> bool:
        stop = self.faults.stop_heartbeats_after_s
        return stop is not None and time.monotonic() - client.stats.opened_at > stop

    async def _drop_loop(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            for client in list(self._clients):
                self.stats.drops += 1
                client.stats.closed_by = "drop"
                await client.ws.close(1012, "replay server drop (fault injection)")

    # -- market events ---------------------------------------------------------------
    def _elapsed(self) -> float:
        """Seconds since playback started (0 before)."""
        return 0.0 if self._started_at is None else time.monotonic() - self._started_at

    def _listed(self, instrument: str) -> bool:
        new, gone = self.faults.new_listing, self.faults.expiry
        if new is not None and new[0] == instrument and self._elapsed() < new[1]:
            return False
        return not (gone is not None and gone[0] == instrument and self._elapsed() >= gone[1])

    def _channel_listed(self, channel: str) -> bool:
        """False for the ticker of a known instrument that is not (or no longer) listed."""
        if self.faults.new_listing is None and self.faults.expiry is None:
            return True
        parts = channel.split(".")
        return not (len(parts) == 3 and parts[0] == "ticker" and parts[1] in self._known
                    and not self._listed(parts[1]))

    def _in_maintenance(self) -> bool:
        window = self.faults.maintenance
        return (window is not None and self._started_at is not None
                and window[0] <= self._elapsed() < window[0] + window[1])

    async def _maintenance(self, start_s: float, length_s: float) -> None:
        """Lock notices at the start and every 0.5 s of the window (Deribit repeats
        states), then one unlock notice."""
        await self._started.wait()
        await asyncio.sleep(start_s)
        while self._in_maintenance():
            await self._notify_platform(locked=True)
            await asyncio.sleep(min(0.5, max(start_s + length_s - self._elapsed(), 0.001)))
        await self._notify_platform(locked=False)

    async def _notify_platform(self, *, locked: bool) -> None:
        index = self.faults.maintenance_index
        data: dict[str, Any] = ({"maintenance": locked} if index is None
                                else {"price_index": index, "locked": locked})
        message = json.dumps({"jsonrpc": "2.0", "method": "subscription",
                              "params": {"channel": "platform_state", "data": data}})
        for client in list(self._clients):
            if "platform_state" in client.channels and not self._stalled(client):
                with contextlib.suppress(ConnectionClosed):
                    await client.ws.send(message)
                    self.stats.platform_notices += 1

    def _status(self) -> dict[str, Any]:
        if not self._in_maintenance():
            return {"locked": "false", "locked_indices": []}
        index = self.faults.maintenance_index
        return ({"locked": "true", "locked_indices": []} if index is None
                else {"locked": "partial", "locked_indices": [index]})

    # -- protocol ------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        client = _Client(ws)
        self._clients.add(client)
        self.stats.connections += 1
        self.stats.per_connection.append(client.stats)
        try:
            async for frame in ws:
                request = _parse(frame)
                if request is not None and not self._stalled(client):
                    await ws.send(json.dumps(self._answer(client, request)))
                    if client.close_after_reply is not None:
                        await ws.close(*client.close_after_reply)
        except ConnectionClosed:
            pass
        finally:
            client.stats.closed_at = time.monotonic()
            client.stats.closed_by = client.stats.closed_by or "client"
            self._clients.discard(client)
            if client.heartbeat_task is not None:
                client.heartbeat_task.cancel()

    def _answer(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        method, params = request.get("method"), request.get("params") or {}
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id"),
                                 "usIn": time.time_ns() // 1000, "testnet": False}
        if method == "public/get_instruments":
            reply["result"] = [i for i in self._instruments.get(str(params.get("currency")), [])
                               if self._listed(i["instrument_name"])]
        elif method == "public/subscribe":
            return self._subscribe(client, params, reply)
        elif method == "public/unsubscribe":
            channels = [c for c in params.get("channels", []) if isinstance(c, str)]
            client.channels.difference_update(channels)
            client.stats.unsubscriptions.update(channels)
            self.stats.unsubscriptions.update(channels)
            reply["result"] = channels
        elif method == "public/status":
            reply["result"] = self._status()
        elif method == "public/set_heartbeat":
            interval = float(params.get("interval", 0))
            if interval < 1:
                reply["error"] = {"code": 11029, "message": "invalid_arguments"}
                return reply
            if client.heartbeat_task is None:
                client.heartbeat_task = asyncio.create_task(self._heartbeats(client, interval))
            reply["result"] = "ok"
        elif method == "public/test":
            client.last_test_reply = time.monotonic()
            self.stats.test_requests_answered += 1
            reply["result"] = {"version": "replay"}
        else:
            reply["error"] = {"code": -32601, "message": "Method not found"}
        return reply

    def _subscribe(self, client: _Client, params: dict[str, Any],
                   reply: dict[str, Any]) -> dict[str, Any]:
        channels = [c for c in params.get("channels", []) if isinstance(c, str)]
        client.stats.requested.update(channels)
        if self._rate_limits_left > 0:
            self._rate_limits_left -= 1
            self.stats.rate_limited += 1
            client.stats.rate_limited_at = time.monotonic()
            client.stats.closed_by = "rate_limit"
            client.close_after_reply = (1008, "too_many_requests")
            reply["error"] = {"code": 10028, "message": "too_many_requests"}
            return reply
        if self.faults.reject_subscribe:
            reply["error"] = {"code": 11050, "message": "bad_request"}
            return reply
        if self._started_at is None:
            self._started_at = time.monotonic()
            self._started.set()
        # Like Deribit, the reply lists what was subscribed: unknown channels are left out.
        channels = [c for c in channels
                    if c not in self.faults.refuse_channels and self._channel_listed(c)]
        client.channels.update(channels)
        client.stats.subscriptions.update(channels)
        self.stats.subscriptions.update(channels)
        reply["result"] = channels
        return reply

    async def _heartbeats(self, client: _Client, interval_s: float) -> None:
        message = json.dumps({"jsonrpc": "2.0", "method": "heartbeat",
                              "params": {"type": "test_request"}})
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(interval_s)
                if self._beats_stopped(client):
                    continue  # nothing asked, so nothing left unanswered
                if time.monotonic() - client.last_test_reply > 2.5 * interval_s:
                    client.stats.closed_by = "heartbeat"
                    self.stats.heartbeat_closes += 1
                    await client.ws.close(1000, "heartbeat not answered")
                    return
                if not self._stalled(client):
                    await client.ws.send(message)
                    client.stats.heartbeats_sent += 1
                    client.stats.last_heartbeat_at = time.monotonic()


def _parse(frame: str | bytes) -> dict[str, Any] | None:
    with contextlib.suppress(ValueError):
        request = json.loads(frame)
        if isinstance(request, dict):
            return request
    return None


def _load(path: Path) -> tuple[list[tuple[int, bytes, str]], dict[str, list[dict[str, Any]]]]:
    """Tick lines with their channel, and get_instruments results per currency."""
    decoder = msgspec.json.Decoder(_ChannelOnly)
    lines, names = [], set()
    for line in read_tickfile(path):
        try:
            channel = decoder.decode(line.raw).params.channel
        except msgspec.DecodeError:
            channel = ""
        lines.append((line.received_ts_ns, line.raw, channel))
        if channel.startswith("ticker."):
            names.add(channel.split(".")[1])
    instruments: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(names):
        info = parse_instrument_name(name)
        if info is None:
            continue
        instruments.setdefault(name.split("-")[0].split("_")[0], []).append({
            "instrument_name": name, "kind": "option", "is_active": True,
            "expiration_timestamp": info.expiry_ts_ms, "strike": info.strike,
            "option_type": "call" if info.is_call else "put",
            "base_currency": info.underlying, "quote_currency": info.underlying,
            "settlement_currency": "USDC" if info.linear else info.underlying,
            "settlement_period": "week", "tick_size": 0.0001, "contract_size": 1.0})
    return lines, instruments


async def serve_replay(path: str | Path, *, venue: str = "deribit", host: str = "127.0.0.1",
                       port: int = 8765, speed: float = 1.0, loop: bool = False,
                       faults: Faults = Faults()) -> None:
    """``streamer serve-replay``: serve until cancelled (or the end, without --loop)."""
    server = ReplayServer(path, venue=venue, host=host, port=port, speed=speed, loop=loop,
                          faults=faults)
    await server.start()
    print(f"serving {path} as {venue} on {server.url} (speed ×{speed:g})", flush=True)
    try:
        await asyncio.Future()
    finally:
        await server.stop()
