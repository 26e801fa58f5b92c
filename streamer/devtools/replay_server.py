"""A local stand-in for Deribit: serves a tick file over websocket in Deribit's protocol.

It answers ``public/get_instruments`` (built from the file's ticker channels),
``public/subscribe``/``unsubscribe`` (only subscribed channels are then sent),
``public/set_heartbeat`` (then sends ``test_request`` every interval and closes a
connection that stops answering) and ``public/test``. The file plays on one shared
timeline like a live exchange: the clock starts at the first subscription and
message i is due ``(recv_i - recv_0) / speed`` later; a client connecting later
joins at the current position. Faults can be injected for tests.
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
    """Misbehaviour to inject: periodic drops, a stall, garbage frames, refused subscribes."""

    drop_every_s: float | None = None
    stall_after_s: float | None = None
    garbage_rate: float = 0.0
    reject_subscribe: bool = False
    seed: int = 0


@dataclass
class ReplayStats:
    """What the server did, for tests."""

    connections: int = 0
    messages_sent: int = 0
    drops: int = 0
    test_requests_answered: int = 0
    subscriptions: Counter[str] = field(default_factory=Counter)


class _ChannelOnly(msgspec.Struct):
    class _Params(msgspec.Struct):
        channel: str = ""

    params: _Params = msgspec.field(default_factory=_Params)


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    channels: set[str] = field(default_factory=set)
    connected_at: float = field(default_factory=time.monotonic)
    heartbeat_task: asyncio.Task[None] | None = None
    last_test_reply: float = field(default_factory=time.monotonic)


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
        self._started = asyncio.Event()
        self._rng = random.Random(faults.seed)
        self._lines: list[tuple[int, bytes, str]] = []
        self._instruments: dict[str, list[dict[str, Any]]] = {}

    @property
    def port(self) -> int:
        """The listening port (resolved after start when 0 was asked)."""
        return self._port

    @property
    def url(self) -> str:
        """``ws://host:port``."""
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        """Load the file and start listening."""
        self._lines, self._instruments = await asyncio.to_thread(_load, self.path)
        self._server = await serve(self._handle, self.host, self._port, max_size=2**20)
        self._port = next(iter(self._server.sockets)).getsockname()[1]
        self._player = asyncio.create_task(self._play(), name="replay-player")
        if self.faults.drop_every_s:
            self._dropper = asyncio.create_task(self._drop_loop(self.faults.drop_every_s))

    async def stop(self) -> None:
        """Stop playing and close every connection."""
        for task in (self._player, self._dropper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
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
        for client in list(self._clients):
            if channel not in client.channels or self._stalled(client):
                continue
            frame = raw
            if self.faults.garbage_rate and self._rng.random() < self.faults.garbage_rate:
                frame = GARBAGE
            with contextlib.suppress(ConnectionClosed):
                await client.ws.send(frame.decode())
                self.stats.messages_sent += 1

    def _stalled(self, client: _Client) -> bool:
        stall = self.faults.stall_after_s
        return stall is not None and time.monotonic() - client.connected_at > stall

    async def _drop_loop(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            for client in list(self._clients):
                self.stats.drops += 1
                await client.ws.close(1012, "replay server drop (fault injection)")

    # -- protocol ------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        client = _Client(ws)
        self._clients.add(client)
        self.stats.connections += 1
        try:
            async for frame in ws:
                request = _parse(frame)
                if request is not None and not self._stalled(client):
                    await ws.send(json.dumps(self._answer(client, request)))
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)
            if client.heartbeat_task is not None:
                client.heartbeat_task.cancel()

    def _answer(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        method, params = request.get("method"), request.get("params") or {}
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id"),
                                 "usIn": time.time_ns() // 1000, "testnet": False}
        if method == "public/get_instruments":
            reply["result"] = self._instruments.get(str(params.get("currency")), [])
        elif method == "public/subscribe":
            if self.faults.reject_subscribe:
                reply["error"] = {"code": 11050, "message": "bad_request"}
                return reply
            channels = [c for c in params.get("channels", []) if isinstance(c, str)]
            client.channels.update(channels)
            self.stats.subscriptions.update(channels)
            self._started.set()
            reply["result"] = channels
        elif method == "public/unsubscribe":
            channels = [c for c in params.get("channels", []) if isinstance(c, str)]
            client.channels.difference_update(channels)
            reply["result"] = channels
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

    async def _heartbeats(self, client: _Client, interval_s: float) -> None:
        message = json.dumps({"jsonrpc": "2.0", "method": "heartbeat",
                              "params": {"type": "test_request"}})
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(interval_s)
                if time.monotonic() - client.last_test_reply > 2.5 * interval_s:
                    await client.ws.close(1000, "heartbeat not answered")
                    return
                if not self._stalled(client):
                    await client.ws.send(message)


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
