"""Deribit's JSON-RPC protocol, replayed.

Answers ``public/get_instruments`` (built from the file's ticker channels),
``public/subscribe``/``unsubscribe`` (the reply lists the channels subscribed,
leaving out unlisted instruments), ``public/set_heartbeat`` (then sends
``test_request`` every interval and closes a connection that stops answering),
``public/status`` and ``public/test``, and sends ``platform_state`` notifications
during maintenance. Subscription keys are Deribit's channel names.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection
from typing import Any

import msgspec

from streamer.devtools.exchange.venue import Client, Refusal, Replay, VenueProtocol
from streamer.sources.deribit.protocol import parse_instrument_name

HEARTBEAT_MISSES = 2.5  # intervals without a public/test before Deribit hangs up


class _Channel(msgspec.Struct, frozen=True):
    channel: str = ""


class _Notification(msgspec.Struct, frozen=True):
    """A recorded notification, as far as its channel."""

    params: _Channel = msgspec.field(default_factory=_Channel)


class _Params(msgspec.Struct, frozen=True):
    channels: list[str] = msgspec.field(default_factory=list)
    currency: str = ""
    interval: float = 0.0


class _Request(msgspec.Struct, frozen=True):
    """A client's JSON-RPC request, as far as the replay needs it."""

    method: str = ""
    id: int | str | None = None
    params: _Params = msgspec.field(default_factory=_Params)


_notification = msgspec.json.Decoder(_Notification)
_request = msgspec.json.Decoder(_Request)


class DeribitReplay(VenueProtocol):
    """Deribit's ``/ws/api/v2``: JSON-RPC requests, ``subscription`` notifications."""

    name = "deribit"

    def __init__(self, replay: Replay) -> None:
        super().__init__(replay)
        self._instruments: dict[str, list[dict[str, Any]]] = {}

    @staticmethod
    def key_of(raw: bytes) -> str:
        try:
            return _notification.decode(raw).params.channel
        except msgspec.DecodeError:
            return ""

    def instrument_of(self, key: str) -> str | None:
        parts = key.split(".")
        return parts[1] if len(parts) == 3 and parts[0] == "ticker" else None

    def load(self, keys: Collection[str]) -> None:
        """``get_instruments`` results per currency, from the file's ticker channels."""
        for name in sorted({i for i in map(self.instrument_of, keys) if i is not None}):
            info = parse_instrument_name(name)
            if info is None:
                continue
            self._instruments.setdefault(name.split("-")[0].split("_")[0], []).append({
                "instrument_name": name, "kind": "option", "is_active": True,
                "expiration_timestamp": info.expiry_ts_ms, "strike": info.strike,
                "option_type": "call" if info.is_call else "put",
                "base_currency": info.underlying, "quote_currency": info.underlying,
                "settlement_currency": "USDC" if info.linear else info.underlying,
                "settlement_period": "week", "tick_size": 0.0001, "contract_size": 1.0})

    def answer(self, client: Client, frame: str | bytes) -> list[str]:
        try:
            request = _request.decode(frame)
        except msgspec.DecodeError:
            return []
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request.id,
                                 "usIn": time.time_ns() // 1000, "testnet": False}
        reply.update(self._result(client, request))
        return [json.dumps(reply)]

    def _result(self, client: Client, request: _Request) -> dict[str, Any]:
        """``{"result": ...}`` or ``{"error": ...}`` of one request."""
        method, params = request.method, request.params
        if method == "public/get_instruments":
            return {"result": [i for i in self._instruments.get(params.currency, [])
                               if self.replay.listed(i["instrument_name"])]}
        if method == "public/subscribe":
            confirmed = self.replay.subscribe(client, params.channels)
            if confirmed is Refusal.RATE_LIMITED:
                return {"error": {"code": 10028, "message": "too_many_requests"}}
            if confirmed is Refusal.REJECTED:
                return {"error": {"code": 11050, "message": "bad_request"}}
            return {"result": confirmed}  # like Deribit: unknown channels are left out
        if method == "public/unsubscribe":
            self.replay.unsubscribe(client, params.channels)
            return {"result": params.channels}
        if method == "public/status":
            return {"result": self._status()}
        if method == "public/set_heartbeat":
            return self._set_heartbeat(client, params.interval)
        if method == "public/test":
            client.last_heartbeat_reply_at = time.monotonic()
            self.replay.stats.test_requests_answered += 1
            return {"result": {"version": "replay"}}
        return {"error": {"code": -32601, "message": "Method not found"}}

    def _status(self) -> dict[str, Any]:
        if not self.replay.in_maintenance():
            return {"locked": "false", "locked_indices": []}
        index = self.replay.faults.maintenance_index
        return ({"locked": "true", "locked_indices": []} if index is None
                else {"locked": "partial", "locked_indices": [index]})

    def _set_heartbeat(self, client: Client, interval_s: float) -> dict[str, Any]:
        if interval_s < 1:
            return {"error": {"code": 11029, "message": "invalid_arguments"}}
        if client.heartbeat_s is None:  # asked again: the first interval stays
            client.heartbeat_s = interval_s
            client.spawn(self._heartbeats(client, interval_s))
        return {"result": "ok"}

    async def _heartbeats(self, client: Client, interval_s: float) -> None:
        message = json.dumps({"jsonrpc": "2.0", "method": "heartbeat",
                              "params": {"type": "test_request"}})
        while True:
            await asyncio.sleep(interval_s)
            if client.beats_stopped():
                continue  # nothing asked, so nothing left unanswered
            if time.monotonic() - client.last_heartbeat_reply_at > HEARTBEAT_MISSES * interval_s:
                client.stats.closed_by = "heartbeat"
                self.replay.stats.heartbeat_closes += 1
                await client.ws.close(1000, "heartbeat not answered")
                return
            sent_at = time.monotonic()  # before the send: no client can have it earlier
            if not client.stalled() and await client.send(message):
                client.stats.heartbeats_sent += 1
                client.stats.last_heartbeat_at = sent_at

    def notice(self, locked: bool) -> tuple[str, str] | None:
        index = self.replay.faults.maintenance_index
        data: dict[str, Any] = ({"maintenance": locked} if index is None
                                else {"price_index": index, "locked": locked})
        return "platform_state", json.dumps({"jsonrpc": "2.0", "method": "subscription",
                                             "params": {"channel": "platform_state",
                                                        "data": data}})
