"""OKX's v5 public websocket, replayed.

``{"op": "subscribe", "args": [...]}`` is answered with one ``subscribe`` event per
argument (an ``error`` event for one it does not confirm); the text ``ping`` with
``pong``. Pushes ``{"arg": {...}, "data": [...]}`` go to connections subscribed to
their argument: ``opt-summary`` by instrument family, ``index-tickers`` and
``tickers`` by ``instId``. Like OKX, a connection sent nothing for 30 s is closed.
A staged listing or expiry takes the option out of the ``opt-summary`` pushes (the
list the session subscribes ``tickers`` from) and silences its ``tickers``.
Subscription keys are the client's own ``channel:key`` (``okx.instruments.arg_key``).
"""

from __future__ import annotations

import msgspec

from streamer.devtools.exchange.venue import Client, Refusal, VenueProtocol, listed_items
from streamer.sources.okx.instruments import arg_key
from streamer.sources.okx.protocol import PING
from streamer.sources.okx.schema import Arg

PONG = "pong"  # OKX's answer to the text ``ping``
IDLE_CLOSE_S = 30.0  # "the connection will break ... if data has not been pushed for 30 s"


class _Pushed(msgspec.Struct, frozen=True):
    """A recorded frame: a push carries ``arg`` and no ``event``."""

    event: str | None = None
    arg: Arg | None = None


class _InstId(msgspec.Struct, frozen=True, rename="camel"):
    inst_id: str = ""


class _Request(msgspec.Struct, frozen=True):
    op: str = ""
    args: list[Arg] = msgspec.field(default_factory=list)


class _Event(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """OKX's answer to a request: ``subscribe``/``unsubscribe`` or ``error``."""

    event: str
    conn_id: str
    arg: Arg | None = None
    code: str | None = None
    msg: str | None = None


_pushed = msgspec.json.Decoder(_Pushed)
_inst_id = msgspec.json.Decoder(_InstId)
_request = msgspec.json.Decoder(_Request)
_encoder = msgspec.json.Encoder()


def _text(event: _Event) -> str:
    return _encoder.encode(event).decode()


class OkxReplay(VenueProtocol):
    """OKX ``/ws/v5/public``: JSON ops, text pings, pushes keyed by their argument."""

    name = "okx"
    idle_close_s = IDLE_CLOSE_S

    @staticmethod
    def key_of(raw: bytes) -> str:
        try:
            pushed = _pushed.decode(raw)
        except msgspec.DecodeError:
            return ""  # a recorded pong, say
        return arg_key(pushed.arg) if pushed.event is None and pushed.arg is not None else ""

    def instrument_of(self, key: str) -> str | None:
        channel, _, inst = key.partition(":")
        return inst if channel == "tickers" else None

    def listed_only(self, key: str, raw: bytes) -> bytes:
        if not key.startswith("opt-summary:"):
            return raw
        return listed_items(raw, lambda item: _inst_id.decode(item).inst_id, self.replay.listed)

    def answer(self, client: Client, frame: str | bytes) -> list[str]:
        conn_id = f"{id(client) & 0xFFFFFFFF:08x}"
        if frame in (PING, PING.encode()):
            if client.beats_stopped():
                client.stats.pings_unanswered += 1
                return []
            client.stats.pings_answered += 1
            return [PONG]
        try:
            request = _request.decode(frame)
        except msgspec.DecodeError:
            request = _Request()
        if request.op == "subscribe" and request.args:
            return [_text(e) for e in self._subscribe(client, request.args, conn_id)]
        if request.op == "unsubscribe" and request.args:
            self.replay.unsubscribe(client, [arg_key(a) for a in request.args])
            return [_text(_Event(event="unsubscribe", conn_id=conn_id, arg=a))
                    for a in request.args]
        return [_text(_Event(event="error", conn_id=conn_id, code="60012",
                             msg=f"Invalid request: {_as_text(frame)}"))]

    def _subscribe(self, client: Client, args: list[Arg], conn_id: str) -> list[_Event]:
        confirmed = self.replay.subscribe(client, [arg_key(a) for a in args])
        if confirmed is Refusal.RATE_LIMITED:
            return [_Event(event="error", conn_id=conn_id, code="60014",
                           msg="Requests too frequent.")]
        if confirmed is Refusal.REJECTED:
            return [_Event(event="error", conn_id=conn_id, code="60012",
                           msg=f"Invalid request: subscribe {len(args)} args")]
        return [_Event(event="subscribe", conn_id=conn_id, arg=arg)
                if arg_key(arg) in confirmed else
                _Event(event="error", conn_id=conn_id, code="60018",
                       msg=f"Wrong URL or channel:{arg.channel}, {arg_key(arg)} doesn't exist.")
                for arg in args]


def _as_text(frame: str | bytes) -> str:
    return frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
