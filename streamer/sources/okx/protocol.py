"""OKX protocol, pure: the decoder (bytes in, events out) and its control results.

OKX splits what a quote needs over two channels: ``opt-summary`` (per instrument
family: forward ``fwdPx`` and bid/ask/mark vols) and ``tickers`` (per instrument:
top of book in coin for coin-margined options). The decoder keeps the latest of
each per instrument and emits a joined Quote whenever either side changes: a
summary without a book yet gives NaN prices, a book without a summary yet takes
the family's ``index-tickers`` price as its forward. Premiums of coin-margined
(``-USD-``) options are converted to USD with the forward, as Deribit's are.
Instrument names and the subscription requests are in ``instruments``.

No socket and no clock: the session feeds received frames with their receive time.
"""

from __future__ import annotations

import math
from typing import NamedTuple, TypeVar

import msgspec

from streamer.sources.base import RATE_LIMITED, InstrumentCache
from streamer.sources.decoded import Decoded, decode_envelope, parse_decimal
from streamer.sources.okx.instruments import (  # benchmarks/ also reach these as protocol.*
    Instrument,
    arg_key,
    classify_unparsable,
    parse_instrument_name,
)
from streamer.sources.okx.schema import Arg, Envelope, IndexTicker, OptSummary, Ticker
from streamer.types import Quote

VENUE = "okx"
DEFAULT_URL = "wss://ws.okx.com:8443/ws/v5/public"
PING = "ping"  # OKX's heartbeat is the bare text "ping", answered by "pong"
PONG = "pong"  # ``Decoded.result`` of a pong frame
# 60014 "Requests too frequent": OKX allows 3 subscribe requests/s (per IP) and 480
# subscribe/unsubscribe/login requests an hour per connection (docs-v5, WebSocket limits).
TOO_FREQUENT = 60014
_QUIET_EVENTS = frozenset({"login", "channel-conn-count"})
T = TypeVar("T")


class Ack(msgspec.Struct, frozen=True):
    """``Decoded.result`` of a ``subscribe``/``unsubscribe`` event; ``key`` as :func:`arg_key`."""

    event: str
    key: str


class Listed(msgspec.Struct, frozen=True):
    """``Decoded.result`` of an ``opt-summary`` push: the live options it listed.

    The session subscribes their ``tickers``, whether or not a quote came out yet, and
    unsubscribes the options of ``family`` expired at ``ts_ms``, the push's exchange
    time (a push need not list every option of its family, so absence proves nothing).
    """

    instruments: list[str]
    family: str = ""
    ts_ms: int = 0


class _Summary(NamedTuple):
    forward: float
    bid_iv: float
    ask_iv: float
    mark_iv: float


class _Book(NamedTuple):
    bid: float
    ask: float
    bid_size: float
    ask_size: float


_NO_BOOK = _Book(math.nan, math.nan, math.nan, math.nan)
_NO_VOLS = (math.nan, math.nan, math.nan)


def _error_code(code: str | int) -> int:
    if isinstance(code, int):
        return code
    return int(code) if code.isascii() and code.isdigit() and len(code) <= 18 else -1


class OkxDecoder:
    """Turns raw OKX frames into Quotes and control events; never raises."""

    def __init__(self) -> None:
        self._envelope = msgspec.json.Decoder(Envelope)
        self._raw_list = msgspec.json.Decoder(list[msgspec.Raw])
        # Lax: the string timestamps become ints; prices stay strings ("" is not a float).
        self._summary = msgspec.json.Decoder(OptSummary, strict=False)
        self._summaries_list = msgspec.json.Decoder(list[OptSummary], strict=False)
        self._ticker = msgspec.json.Decoder(Ticker, strict=False)
        self._tickers_list = msgspec.json.Decoder(list[Ticker], strict=False)
        self._index_ticker = msgspec.json.Decoder(IndexTicker)
        self._index_list = msgspec.json.Decoder(list[IndexTicker])
        self._instruments = InstrumentCache(parse_instrument_name, classify_unparsable)
        self._summaries: dict[str, _Summary] = {}
        self._books: dict[str, _Book] = {}
        self._index: dict[str, float] = {}

    def instrument(self, name: str) -> Instrument | str:
        """Parsed (and cached) instrument, or the reject reason for its name."""
        return self._instruments[name]

    def index_price(self, family: str) -> float:
        """Latest ``index-tickers`` price of a family (NaN before the first)."""
        return self._index.get(family, math.nan)

    def decode(self, raw: bytes, received_ts_ns: int) -> Decoded:
        """Decode one frame received at ``received_ts_ns``."""
        if raw == b"pong":
            return Decoded(result=PONG)
        return decode_envelope(raw, received_ts_ns, self._envelope, self._dispatch)

    def _dispatch(self, env: Envelope, received_ts_ns: int, out: Decoded) -> None:
        if env.event is not None:
            self._event(env, out)
        elif env.arg is not None:
            self._push(env.arg, env.data, received_ts_ns, out)
        else:
            out.rejects.append("unexpected_message")

    def _event(self, env: Envelope, out: Decoded) -> None:
        if env.event in ("subscribe", "unsubscribe") and env.arg is not None:
            out.result = Ack(event=env.event, key=arg_key(env.arg))
        elif env.event == "error":
            out.error_code, out.error_message = _error_code(env.code), env.msg
            if out.error_code == TOO_FREQUENT:
                out.rejects.append(RATE_LIMITED)
        elif env.event == "notice":  # e.g. 64008: the connection closes soon for an upgrade
            out.platform_state = env.msg or str(env.code)
        elif env.event not in _QUIET_EVENTS:
            out.rejects.append("unexpected_message")

    def _push(self, arg: Arg, data: msgspec.Raw, received_ts_ns: int, out: Decoded) -> None:
        if arg.channel == "opt-summary":
            summaries = self._items(self._summaries_list, self._summary, data, out)
            listed = [s.inst_id for s in summaries if self._on_summary(s, received_ts_ns, out)]
            out.result = Listed(instruments=listed, family=arg.inst_family or arg.uly or "",
                                ts_ms=max((s.ts for s in summaries), default=0))
        elif arg.channel == "tickers":
            for ticker in self._items(self._tickers_list, self._ticker, data, out):
                self._on_ticker(ticker, received_ts_ns, out)
        elif arg.channel == "index-tickers":
            for index in self._items(self._index_list, self._index_ticker, data, out):
                price = parse_decimal(index.idx_px)
                if price is None or not price > 0:
                    out.rejects.append("malformed")
                else:
                    self._index[index.inst_id] = price
        else:
            out.rejects.append("unsubscribed_channel")

    def _items(self, whole: msgspec.json.Decoder[list[T]], one: msgspec.json.Decoder[T],
               data: msgspec.Raw, out: Decoded) -> list[T]:
        """All items of ``data``; one bad item is one ``malformed``, not a lost frame."""
        try:
            return whole.decode(data)
        except msgspec.ValidationError:
            items: list[T] = []
            for raw in self._raw_list.decode(data):
                try:
                    items.append(one.decode(raw))
                except msgspec.ValidationError:
                    out.rejects.append("malformed")
            return items

    def _live(self, name: str, ts_ms: int, out: Decoded) -> Instrument | None:
        """The instrument of a live option, or None with the reject counted."""
        inst = self._instruments[name]
        if isinstance(inst, str):
            out.rejects.append(inst)
            return None
        if ts_ms >= inst.info.expiry_ts_ms:
            self._summaries.pop(name, None)
            self._books.pop(name, None)
            out.rejects.append("expired")
            return None
        return inst

    def _on_summary(self, s: OptSummary, received_ts_ns: int, out: Decoded) -> bool:
        """Store and emit one summary; True if it names a live option."""
        inst = self._live(s.inst_id, s.ts, out)
        if inst is None:
            return False
        try:  # hot path (every option of a family, every push): parsed inline
            forward = float(s.fwd_px) if s.fwd_px else 0.0
            bid_iv = float(s.bid_vol) if s.bid_vol else 0.0
            ask_iv = float(s.ask_vol) if s.ask_vol else 0.0
            mark_iv = float(s.mark_vol) if s.mark_vol else 0.0
        except ValueError:
            forward = bid_iv = ask_iv = mark_iv = math.nan
        if not math.isfinite(forward + bid_iv + ask_iv + mark_iv):  # text, "NaN" or "inf"
            out.rejects.append("malformed")
            return True
        nan = math.nan  # zero or "" is absent, as is anything not positive
        self._summaries[s.inst_id] = _Summary(
            forward if forward > 0 else nan, bid_iv if bid_iv > 0 else nan,
            ask_iv if ask_iv > 0 else nan, mark_iv if mark_iv > 0 else nan)
        self._emit(s.inst_id, inst, s.ts, received_ts_ns, out)
        return True

    def _on_ticker(self, t: Ticker, received_ts_ns: int, out: Decoded) -> None:
        inst = self._live(t.inst_id, t.ts, out)
        if inst is None:
            return
        try:
            bid = float(t.bid_px) if t.bid_px else 0.0
            ask = float(t.ask_px) if t.ask_px else 0.0
            bid_size = float(t.bid_sz) if t.bid_sz else 0.0
            ask_size = float(t.ask_sz) if t.ask_sz else 0.0
        except ValueError:
            bid = ask = bid_size = ask_size = math.nan
        nan = math.nan  # no order on a side: "" or 0; a negative price is kept to be rejected
        book = _Book(bid or nan, ask or nan, bid_size if bid_size > 0 else nan,
                     ask_size if ask_size > 0 else nan)
        reason = None
        if not math.isfinite(bid + ask + bid_size + ask_size):  # text, "NaN" or "inf"
            reason = "malformed"
        elif book.bid < 0 or book.ask < 0:
            reason = "negative_price"
        elif book.bid > book.ask:
            reason = "crossed"
        if reason is not None:
            self._books.pop(t.inst_id, None)  # the old book is no longer true either
            out.rejects.append(reason)
            return
        self._books[t.inst_id] = book
        self._emit(t.inst_id, inst, t.ts, received_ts_ns, out)

    def _emit(self, name: str, inst: Instrument, ts_ms: int, received_ts_ns: int,
              out: Decoded) -> None:
        bid, ask, bid_size, ask_size = self._books.get(name, _NO_BOOK)
        bid_iv, ask_iv, mark_iv = _NO_VOLS
        index = self._index.get(inst.family, math.nan)
        forward = index
        summary = self._summaries.get(name)
        if summary is not None:
            fwd, bid_iv, ask_iv, mark_iv = summary
            if fwd > 0:
                forward = fwd
        if not forward > 0 or forward == math.inf:
            out.rejects.append("no_underlying_price")
            return
        info = inst.info
        if not info.linear:  # coin premium x forward, as for Deribit
            bid, ask = bid * forward, ask * forward
            if bid == math.inf or ask == math.inf:
                out.rejects.append("malformed")
                return
        # Positional, in Quote's field order (keywords cost ~1 µs a quote; see Quote).
        out.quotes.append(Quote(
            VENUE, info.underlying, name, info.expiry_ts_ms, info.strike, info.is_call,
            bid, ask, forward, index, ts_ms, received_ts_ns,
            bid_size, ask_size, bid_iv, ask_iv, mark_iv))
