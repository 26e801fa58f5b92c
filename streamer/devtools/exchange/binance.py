"""Binance's European options streams, replayed (a combined-stream connection).

``{"method": "SUBSCRIBE", "params": [streams], "id": N}`` is answered
``{"result": null, "id": N}`` (Binance says nothing of streams that do not exist:
they simply stay silent), a refusal ``{"code": 2, "msg": ..., "id": N}``. Events go,
as recorded, ``{"stream": ..., "data": ...}``, to connections subscribed to their
stream. Heartbeats are websocket pings both ways: the client's are answered by the
websockets library (held back while heartbeats are stopped; see
``Client.watch_pongs``), and, like Binance, the server pings every 5 minutes and
closes a connection that sent no pong for 15 (``Client.ping_every``; the options
streams' figures, not the 3 and 10 minutes of Binance's spot and futures streams).
A staged listing or expiry takes the option out of the ``@optionMarkPrice`` arrays.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streamer.devtools.exchange.venue import Client, Refusal, VenueProtocol, listed_items

# https://developers.binance.com/docs/derivatives/options-trading/websocket-market-streams
PING_INTERVAL_S = 300.0  # "will send a ping frame every 5 minutes"
PONG_TIMEOUT_S = 900.0  # "does not receive a pong frame back ... within a 15 minute period"


class _Pushed(msgspec.Struct, frozen=True):
    stream: str = ""


class _Symbol(msgspec.Struct, frozen=True):
    s: str = ""


class _Request(msgspec.Struct, frozen=True):
    method: str = ""
    params: list[str] = msgspec.field(default_factory=list)
    id: int | str | None = None


_pushed = msgspec.json.Decoder(_Pushed)
_symbol = msgspec.json.Decoder(_Symbol)
_request = msgspec.json.Decoder(_Request)
_encoder = msgspec.json.Encoder()


def _reply(request_id: int | str | None, **fields: Any) -> str:
    return _encoder.encode({**fields, "id": request_id}).decode()


class BinanceReplay(VenueProtocol):
    """Binance ``/market/stream`` (and the older ``/eoptions/stream``): streams by name."""

    name = "binance"
    ping_interval_s = PING_INTERVAL_S
    pong_timeout_s = PONG_TIMEOUT_S

    @staticmethod
    def key_of(raw: bytes) -> str:
        try:
            return _pushed.decode(raw).stream
        except msgspec.DecodeError:
            return ""

    def listed_only(self, key: str, raw: bytes) -> bytes:
        if not key.endswith("@optionMarkPrice"):
            return raw
        return listed_items(raw, lambda item: _symbol.decode(item).s, self.replay.listed)

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
