"""Bybit protocol, pure: request builders, the instrument-list parser and the decoder.

One ``tickers.{symbol}`` push carries everything a quote needs: best bid/ask in
USDC (or USDT), their IVs, the mark IV, ``underlyingPrice`` (the forward of the
expiry) and ``indexPrice``. Options are linear, so premiums are not rescaled.

No socket and no clock: the session feeds received frames with their receive time.
"""

from __future__ import annotations

import math
import re
from urllib.parse import urlencode

import msgspec

from streamer.errors import VenueRefused
from streamer.sources.base import RATE_LIMITED, InstrumentCache
from streamer.sources.bybit.schema import CommandData, Envelope, InstrumentsResponse, Ticker
from streamer.sources.decoded import (
    Decoded,
    InstrumentInfo,
    day_month_year_expiry,
    decode_envelope,
    parse_decimal,
)
from streamer.types import Quote

VENUE = "bybit"
DEFAULT_URL = "wss://stream.bybit.com/v5/public/option"
DEFAULT_REST_URL = "https://api.bybit.com"
INSTRUMENTS_PATH = "/v5/market/instruments-info"
PONG = "pong"  # ``Decoded.result`` of a pong
FAILED = -1  # ``Decoded.error_code`` of a refused subscription (Bybit gives no code)
# Bybit words a rate limit in ``ret_msg`` only ("too many requests", "Too many visits",
# "... too frequent"); its public websocket documents no subscribe rate.
_TOO_FAST = re.compile(r"too many|too frequent|rate limit", re.IGNORECASE)
_OPTION = re.compile(r"^(?P<base>[A-Z0-9]+)-(?P<day>\d{1,2})(?P<mon>[A-Z]{3})(?P<yy>\d{2})"
                     r"-(?P<strike>\d+(?:\.\d+)?)-(?P<cp>[CP])(?:-(?:USDT|USDC))?$")
_NOT_OPTION = re.compile(r"^[A-Z0-9]+(?:-\d{1,2}[A-Z]{3}\d{2}|USDT|USDC|USD|PERP)$")
_MAX_CACHED = 100_000
_encoder = msgspec.json.Encoder()


def parse_instrument_name(name: str) -> InstrumentInfo | None:
    """``BTC-5APR23-28000-C`` or ``BTC-26DEC25-100000-C-USDT``; None for anything else."""
    match = _OPTION.match(name)
    expiry = None if match is None else day_month_year_expiry(match)
    if match is None or expiry is None:
        return None
    strike = float(match["strike"])
    if strike <= 0:
        return None
    return InstrumentInfo(underlying=match["base"], expiry_ts_ms=expiry,
                          strike=strike, is_call=match["cp"] == "C", linear=True)


def classify_unparsable(name: str) -> str:
    """Reject reason for a symbol that is not a plain option."""
    return "not_option" if _NOT_OPTION.match(name) else "unknown_instrument"


def ticker_topic(symbol: str) -> str:
    """The ticker topic of one option."""
    return f"tickers.{symbol}"


def subscribe_request(topics: list[str], request_id: int) -> bytes:
    """``{"op": "subscribe", "args": [...]}``."""
    return _encoder.encode({"req_id": str(request_id), "op": "subscribe", "args": topics})


def unsubscribe_request(topics: list[str], request_id: int) -> bytes:
    """``{"op": "unsubscribe", "args": [...]}``."""
    return _encoder.encode({"req_id": str(request_id), "op": "unsubscribe", "args": topics})


def ping_request(request_id: int) -> bytes:
    """The application heartbeat Bybit asks for every 20 s."""
    return _encoder.encode({"req_id": str(request_id), "op": "ping"})


def instruments_url(rest_url: str, base_coin: str, cursor: str = "") -> str:
    """One page of the live options of ``base_coin``."""
    query = {"category": "option", "baseCoin": base_coin, "limit": "1000"}
    if cursor:
        query["cursor"] = cursor
    return f"{rest_url.rstrip('/')}{INSTRUMENTS_PATH}?{urlencode(query)}"


_instruments = msgspec.json.Decoder(InstrumentsResponse)


def parse_instruments(body: bytes) -> tuple[list[str], str]:
    """Trading symbols of one instrument-list page and the next page's cursor ("" at the end).

    Raises ``VenueRefused`` (retryable) for a body that is not a successful answer.
    """
    try:
        reply = _instruments.decode(body)
    except msgspec.DecodeError as exc:
        raise VenueRefused(f"bad instrument list: {exc}") from exc
    if reply.ret_code != 0:
        raise VenueRefused(f"instrument list refused: {reply.ret_code} {reply.ret_msg}")
    symbols = [e.symbol for e in reply.result.entries if e.status == "Trading"]
    return symbols, reply.result.next_page_cursor


def _decimal(text: str | None) -> float | None:
    """``parse_decimal``, and ``"0"`` is NaN too (Bybit's "none")."""
    value = parse_decimal(text)
    return math.nan if value == 0 else value


def _positive(value: float) -> float:
    return value if value > 0 else math.nan


def _merge(old: Ticker, new: Ticker) -> Ticker:
    """A delta over the previous snapshot: absent fields keep their value."""
    changes = {f: v for f in Ticker.__struct_fields__ if (v := getattr(new, f)) is not None}
    return msgspec.structs.replace(old, **changes)


class Subscribed(msgspec.Struct, frozen=True):
    """``Decoded.result`` of an accepted (un)subscribe: the topics Bybit left out of it."""

    failed: list[str] = msgspec.field(default_factory=list)


class BybitDecoder:
    """Turns raw Bybit option frames into Quotes and control events; never raises."""

    def __init__(self) -> None:
        self._envelope = msgspec.json.Decoder(Envelope)
        self._ticker = msgspec.json.Decoder(Ticker)
        self._command = msgspec.json.Decoder(CommandData)
        self._instruments = InstrumentCache(parse_instrument_name, classify_unparsable)
        self._last: dict[str, Ticker] = {}

    def instrument(self, name: str) -> InstrumentInfo | str:
        """Parsed (and cached) instrument, or the reject reason for its name."""
        return self._instruments[name]

    def decode(self, raw: bytes, received_ts_ns: int) -> Decoded:
        """Decode one frame received at ``received_ts_ns``."""
        return decode_envelope(raw, received_ts_ns, self._envelope, self._dispatch)

    def _dispatch(self, env: Envelope, received_ts_ns: int, out: Decoded) -> None:
        if env.topic is not None:
            self._push(env, received_ts_ns, out)
        elif env.op in ("pong", "ping"):  # option / other endpoints
            out.result = PONG
        elif env.op in ("subscribe", "unsubscribe") or env.type == "COMMAND_RESP":
            self._response(env, out)
        else:
            out.rejects.append("unexpected_message")

    def _response(self, env: Envelope, out: Decoded) -> None:
        req_id = env.req_id or ""
        out.response_id = int(req_id) if req_id.isascii() and req_id.isdigit() and len(
            req_id) <= 18 else None
        command = self._command.decode(env.data) if env.type == "COMMAND_RESP" and (
            bytes(env.data) != b"null") else CommandData()
        rate_limited = env.success is False and _TOO_FAST.search(env.ret_msg) is not None
        if rate_limited or (env.success is False and not command.fail_topics):
            # The request as a whole: nothing names a topic to blame.
            out.error_code = FAILED
            out.error_message = " ".join([env.ret_msg, *command.fail_topics]).strip() or (
                "subscribe failed")
            if rate_limited:
                out.rejects.append(RATE_LIMITED)
        else:  # the topics named failed (an expired option, say), all or some: the others stand
            out.result = Subscribed(failed=command.fail_topics)
            out.error_message = env.ret_msg

    def _push(self, env: Envelope, received_ts_ns: int, out: Decoded) -> None:
        if not env.topic or not env.topic.startswith("tickers."):
            out.rejects.append("unsubscribed_channel")
            return
        tick = self._ticker.decode(env.data)
        info = self._instruments[tick.symbol]
        if isinstance(info, str):
            out.rejects.append(info)
            return
        if env.ts is None:
            out.rejects.append("malformed")
            return
        if env.ts >= info.expiry_ts_ms:
            self._last.pop(tick.symbol, None)
            out.rejects.append("expired")
            return
        previous = self._last.get(tick.symbol)
        if env.type == "delta" and previous is not None:
            tick = _merge(previous, tick)
        if previous is not None or len(self._last) < _MAX_CACHED:
            self._last[tick.symbol] = tick
        quote_or_reason = self._quote(tick, info, env.ts, received_ts_ns)
        if isinstance(quote_or_reason, str):
            out.rejects.append(quote_or_reason)
        else:
            out.quotes.append(quote_or_reason)

    @staticmethod
    def _quote(t: Ticker, info: InstrumentInfo, ts_ms: int, received_ts_ns: int) -> Quote | str:
        values = [_decimal(v) for v in (t.bid_price, t.ask_price, t.bid_size, t.ask_size,
                                        t.bid_iv, t.ask_iv, t.mark_price_iv,
                                        t.underlying_price, t.index_price)]
        if None in values:
            return "malformed"
        bid, ask, bid_size, ask_size, bid_iv, ask_iv, mark_iv, forward, index = (
            v if v is not None else math.nan for v in values)
        if not forward > 0:
            return "no_underlying_price"
        if bid < 0 or ask < 0:
            return "negative_price"
        if bid > ask:
            return "crossed"
        # Positional, in Quote's field order (keywords cost ~1 µs a quote; see Quote).
        return Quote(
            VENUE, info.underlying, t.symbol, info.expiry_ts_ms, info.strike, info.is_call,
            bid, ask, forward, _positive(index), ts_ms, received_ts_ns,
            _positive(bid_size), _positive(ask_size), _positive(bid_iv), _positive(ask_iv),
            _positive(mark_iv))
