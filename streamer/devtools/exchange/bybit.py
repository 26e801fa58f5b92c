"""Bybit's v5 public option websocket, replayed, with its REST instrument list.

``{"op": "subscribe", "args": ["tickers.SYMBOL"], "req_id": ...}`` is answered the
way the option endpoint does, ``{"success", "conn_id", "data": {"successTopics",
"failTopics"}, "type": "COMMAND_RESP"}`` (no ``req_id`` echoed); ``{"op": "ping"}``
with ``{"args": [ms], "op": "pong"}``. Pushes go to connections subscribed to their
``topic``. ``GET /v5/market/instruments-info?category=option&baseCoin=...`` lists the
file's options, paged by ``limit`` and ``cursor``, on the same port.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import msgspec

from streamer.devtools.exchange.venue import Client, Refusal, Replay, VenueProtocol
from streamer.sources.bybit.protocol import INSTRUMENTS_PATH, parse_instrument_name

MAX_PAGE = 1000  # Bybit's cap on ``limit``
DEFAULT_PAGE = 500


class _Pushed(msgspec.Struct, frozen=True):
    topic: str = ""


class _Request(msgspec.Struct, frozen=True):
    op: str = ""
    args: list[str] = msgspec.field(default_factory=list)
    req_id: str | None = None


_pushed = msgspec.json.Decoder(_Pushed)
_request = msgspec.json.Decoder(_Request)
_encoder = msgspec.json.Encoder()


def _command_resp(conn_id: str, done: list[str], failed: list[str], ret_msg: str = "") -> str:
    reply: dict[str, Any] = {"success": not ret_msg, "conn_id": conn_id,
                             "data": {"failTopics": failed, "successTopics": done},
                             "type": "COMMAND_RESP"}
    if ret_msg:
        reply["ret_msg"] = ret_msg
    return _encoder.encode(reply).decode()


class BybitReplay(VenueProtocol):
    """Bybit ``/v5/public/option``: JSON ops and pings, ``tickers.{symbol}`` topics."""

    name = "bybit"
    max_page: ClassVar[int] = MAX_PAGE

    def __init__(self, replay: Replay) -> None:
        super().__init__(replay)
        self._by_coin: dict[str, list[str]] = {}

    @staticmethod
    def key_of(raw: bytes) -> str:
        try:
            return _pushed.decode(raw).topic
        except msgspec.DecodeError:
            return ""

    def instrument_of(self, key: str) -> str | None:
        channel, _, symbol = key.partition(".")
        return symbol if channel == "tickers" else None

    def load(self, keys: Collection[str]) -> None:
        for symbol in sorted({s for s in map(self.instrument_of, keys) if s is not None}):
            if parse_instrument_name(symbol) is not None:
                self._by_coin.setdefault(symbol.split("-")[0], []).append(symbol)

    def answer(self, client: Client, frame: str | bytes) -> list[str]:
        conn_id = f"{id(client) & 0xFFFFFFFF:08x}"
        try:
            request = _request.decode(frame)
        except msgspec.DecodeError:
            request = _Request()
        if request.op == "ping":
            if client.beats_stopped():
                client.stats.pings_unanswered += 1
                return []
            client.stats.pings_answered += 1
            return [_encoder.encode({"args": [str(time.time_ns() // 1_000_000)],
                                     "op": "pong"}).decode()]
        if request.op == "subscribe":
            confirmed = self.replay.subscribe(client, request.args)
            if isinstance(confirmed, Refusal):
                message = ("too many requests" if confirmed is Refusal.RATE_LIMITED
                           else "subscribe refused")
                return [_command_resp(conn_id, [], request.args, message)]
            failed = [t for t in request.args if t not in confirmed]
            return [_command_resp(conn_id, confirmed, failed)]
        if request.op == "unsubscribe":
            self.replay.unsubscribe(client, request.args)
            return [_command_resp(conn_id, request.args, [])]
        return [_encoder.encode({"success": False, "ret_msg": "error:handler not found",
                                 "conn_id": conn_id, "op": request.op}).decode()]

    def http(self, path: str) -> bytes | None:
        url = urlsplit(path)
        if url.path != INSTRUMENTS_PATH:
            return None
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if query.get("category") != "option":
            return _encoder.encode({"retCode": 10001, "retMsg": "params error: category",
                                    "result": {}})
        try:
            start = int(query.get("cursor") or 0)
            size = min(int(query.get("limit") or DEFAULT_PAGE), self.max_page)
        except ValueError:
            return _encoder.encode({"retCode": 10001, "retMsg": "params error", "result": {}})
        listed = [s for s in self._by_coin.get(query.get("baseCoin", ""), [])
                  if self.replay.listed(s)]
        page = listed[start:start + max(size, 1)]
        more = start + len(page) < len(listed)
        return _encoder.encode({"retCode": 0, "retMsg": "success", "result": {
            "category": "option", "nextPageCursor": str(start + len(page)) if more else "",
            "list": [_entry(s) for s in page]}, "retExtInfo": {},
            "time": time.time_ns() // 1_000_000})


def _entry(symbol: str) -> dict[str, str]:
    """One option of the instrument list, in Bybit's field names."""
    info = parse_instrument_name(symbol)
    assert info is not None  # load() kept parsable symbols only
    return {"symbol": symbol, "status": "Trading", "baseCoin": info.underlying,
            "quoteCoin": "USD", "settleCoin": "USDT" if symbol.endswith("-USDT") else "USDC",
            "optionsType": "Call" if info.is_call else "Put",
            "deliveryTime": str(info.expiry_ts_ms)}
