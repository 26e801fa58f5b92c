"""Binance's European options streams, replayed (a combined-stream connection).

``{"method": "SUBSCRIBE", "params": [streams], "id": N}`` is answered
``{"result": null, "id": N}`` (Binance says nothing of streams that do not exist:
they simply stay silent), a refusal ``{"code": 2, "msg": ..., "id": N}``. Events go,
as recorded, ``{"stream": ..., "data": ...}``, to connections subscribed to their
stream. Heartbeats are websocket pings, answered by the websockets library (the
server holds the pongs back while heartbeats are stopped; see ``Client.watch_pongs``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from streamer.devtools.replay.venue import Client, Refusal, VenueProtocol


class _Pushed(msgspec.Struct, frozen=True):
    stream: str = ""


class _Request(msgspec.Struct, frozen=True):
    method: str = ""
    params: list[str] = msgspec.field(default_factory=list)
    id: int | str | None = None


_pushed = msgspec.json.Decoder(_Pushed)
_request = msgspec.json.Decoder(_Request)
_encoder = msgspec.json.Encoder()


def _reply(request_id: int | str | None, **fields: Any) -> str:
    return _encoder.encode({**fields, "id": request_id}).decode()


class BinanceReplay(VenueProtocol):
    """Binance ``/market/stream`` (and the older ``/eoptions/stream``): streams by name."""

    name = "binance"

    @staticmethod
    def key_of(raw: bytes) -> str:
        try:
            return _pushed.decode(raw).stream
        except msgspec.DecodeError:
            return ""

    def answer(self, client: Client, frame: str | bytes) -> list[str]:
        try:
            request = _request.decode(frame)
        except msgspec.DecodeError:
            return [_reply(None, code=3, msg="Invalid JSON")]
        if request.method == "SUBSCRIBE":
            confirmed = self.replay.subscribe(client, request.params)
            if confirmed is Refusal.RATE_LIMITED:
                return [_reply(request.id, code=-1003, msg="Too many requests")]
            if confirmed is Refusal.REJECTED:
                return [_reply(request.id, code=2, msg="Invalid request: subscription refused")]
            return [_reply(request.id, result=None)]
        if request.method == "UNSUBSCRIBE":
            self.replay.unsubscribe(client, request.params)
            return [_reply(request.id, result=None)]
        if request.method == "LIST_SUBSCRIPTIONS":
            return [_reply(request.id, result=sorted(client.keys))]
        return [_reply(request.id, code=2, msg=f"Invalid request: unknown variant "
                                               f"{request.method!r}")]
