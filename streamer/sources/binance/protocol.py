"""Binance European options protocol, pure: request builders and the decoder.

Options are USDT-margined (linear): premiums are not rescaled. Binance publishes
no forward, so the index price stands in for ``underlying_price``; the pipeline
estimates the forward from put-call parity.

On 2025-12-17 Binance moved option market data from ``nbstream.binance.com/eoptions``
to the futures hosts (``fstream.binance.com/market`` and ``/public``) and renamed
the streams (``@ticker`` -> ``@optionTicker`` without the book, ``@markPrice`` ->
``@optionMarkPrice`` with the book, IVs and index). The URL and stream template are
constants here so that the next change is a configuration change.

No socket and no clock: the session feeds received frames with their receive time.
"""

from __future__ import annotations

import math
import re

import msgspec

from streamer.sources.base import RATE_LIMITED, InstrumentCache
from streamer.sources.binance.schema import Envelope, IndexPrice, OptionMarkPrice, Ticker
from streamer.sources.decoded import (
    Decoded,
    InstrumentInfo,
    decode_envelope,
    parse_decimal,
    yymmdd_expiry_and_strike,
)
from streamer.types import Quote

VENUE = "binance"
DEFAULT_URL = "wss://fstream.binance.com/market/stream"
LEGACY_URL = "wss://nbstream.binance.com/eoptions/stream"  # until 2025-12-17
MARK_PRICE_STREAM = "{underlying}usdt@optionMarkPrice"
INDEX_QUOTE = "USDT"
_OPTION = re.compile(r"^(?P<base>[A-Z0-9]+)-(?P<date>\d{6})-(?P<strike>\d+(?:\.\d+)?)"
                     r"-(?P<cp>[CP])$")
_NOT_OPTION = re.compile(r"^[A-Z0-9]+(?:USDT|USDC)$")
_MAX_CACHED = 100_000
# -1003 TOO_MANY_REQUESTS: over the 10 incoming messages/s a websocket connection may
# send (developers.binance.com, options websocket market streams: limits).
TOO_MANY_REQUESTS = -1003
_encoder = msgspec.json.Encoder()


def parse_instrument_name(name: str) -> InstrumentInfo | None:
    """``BTC-240927-25000-P`` or ``DOGE-231006-0.06-C``; None for anything else."""
    match = _OPTION.match(name)
    dated = None if match is None else yymmdd_expiry_and_strike(match)
    if match is None or dated is None:
        return None
    expiry, strike = dated
    return InstrumentInfo(underlying=match["base"], expiry_ts_ms=expiry,
                          strike=strike, is_call=match["cp"] == "C", linear=True)


def classify_unparsable(name: str) -> str:
    """Reject reason for a symbol that is not a plain option."""
    return "not_option" if _NOT_OPTION.match(name) else "unknown_instrument"


def mark_price_stream(currency: str, template: str = MARK_PRICE_STREAM) -> str:
    """``BTC`` -> ``btcusdt@optionMarkPrice``: every option of one underlying, each second."""
    return template.format(underlying=currency.lower())


def subscribe_request(streams: list[str], request_id: int) -> bytes:
    """``SUBSCRIBE`` on a combined-stream connection (at most 200 streams per connection)."""
    return _encoder.encode({"method": "SUBSCRIBE", "params": streams, "id": request_id})


def unsubscribe_request(streams: list[str], request_id: int) -> bytes:
    """``UNSUBSCRIBE``: the session's resubscribe of a silent stream starts with it."""
    return _encoder.encode({"method": "UNSUBSCRIBE", "params": streams, "id": request_id})


def _positive(value: float) -> float:
    """IVs (``-1`` when none), sizes, index: anything but a positive number is absent."""
    return value if value > 0 else math.nan


class BinanceDecoder:
    """Turns raw Binance option frames into Quotes and control events; never raises."""

    def __init__(self) -> None:
        self._envelope = msgspec.json.Decoder(Envelope)
        self._raw_list = msgspec.json.Decoder(list[msgspec.Raw])
        self._mark = msgspec.json.Decoder(OptionMarkPrice)
        self._mark_list = msgspec.json.Decoder(list[OptionMarkPrice])
        self._ticker = msgspec.json.Decoder(Ticker)
        self._index_price = msgspec.json.Decoder(IndexPrice)
        self._instruments = InstrumentCache(parse_instrument_name, classify_unparsable)
        self._index: dict[str, float] = {}

    def instrument(self, name: str) -> InstrumentInfo | str:
        """Parsed (and cached) instrument, or the reject reason for its name."""
        return self._instruments[name]

    def decode(self, raw: bytes, received_ts_ns: int) -> Decoded:
        """Decode one frame received at ``received_ts_ns``."""
        return decode_envelope(raw, received_ts_ns, self._envelope, self._dispatch)

    def _dispatch(self, env: Envelope, received_ts_ns: int, out: Decoded) -> None:
        if env.stream is not None:
            self._push(env.stream, env.data, received_ts_ns, out)
        elif env.id is not None:
            self._response(env, out)
        else:
            out.rejects.append("unexpected_message")

    @staticmethod
    def _response(env: Envelope, out: Decoded) -> None:
        out.response_id = env.id
        if env.error is not None:
            out.error_code, out.error_message = env.error.code, env.error.msg
        elif env.code is not None:
            out.error_code, out.error_message = env.code, env.msg
        else:
            out.result = msgspec.json.decode(env.result)
        if out.error_code == TOO_MANY_REQUESTS:
            out.rejects.append(RATE_LIMITED)

    def _push(self, stream: str, data: msgspec.Raw, received_ts_ns: int, out: Decoded) -> None:
        if stream.endswith("@optionMarkPrice"):
            for mark in self._marks(data, out):
                self._add(mark, parse_decimal(mark.i), received_ts_ns, out)
        elif stream.endswith("@ticker"):
            tick = self._ticker.decode(data)
            base = tick.s.split("-", 1)[0]
            self._add(tick, self._index.get(base + INDEX_QUOTE, math.nan), received_ts_ns, out)
        elif stream.endswith("@index"):
            index = self._index_price.decode(data)
            price = parse_decimal(index.p)
            if price is None or not price > 0:
                out.rejects.append("malformed")
            elif index.s in self._index or len(self._index) < _MAX_CACHED:
                self._index[index.s] = price
        else:
            out.rejects.append("unsubscribed_channel")

    def _marks(self, data: msgspec.Raw, out: Decoded) -> list[OptionMarkPrice]:
        """Every option of a mark-price array; one bad item is one ``malformed``."""
        try:
            return self._mark_list.decode(data)
        except msgspec.ValidationError:
            marks: list[OptionMarkPrice] = []
            for raw in self._raw_list.decode(data):
                try:
                    marks.append(self._mark.decode(raw))
                except msgspec.ValidationError:
                    out.rejects.append("malformed")
            return marks

    def _add(self, item: OptionMarkPrice | Ticker, index: float | None, received_ts_ns: int,
             out: Decoded) -> None:
        quote_or_reason = self._quote(item, index, received_ts_ns)
        if isinstance(quote_or_reason, str):
            out.rejects.append(quote_or_reason)
        else:
            out.quotes.append(quote_or_reason)

    def _quote(self, item: OptionMarkPrice | Ticker, index: float | None,
               received_ts_ns: int) -> Quote | str:
        info = self._instruments[item.s]
        if isinstance(info, str):
            return info
        ts_ms = item.E
        if ts_ms >= info.expiry_ts_ms:
            return "expired"
        values = [parse_decimal(v) for v in (item.bo, item.ao, item.bq, item.aq, item.b, item.a,
                                        item.vo)]
        if index is None or None in values:
            return "malformed"
        bid, ask, bid_size, ask_size, bid_iv, ask_iv, mark_iv = (
            v if v is not None else math.nan for v in values)
        if not index > 0:
            return "no_underlying_price"
        bid, ask = (math.nan if bid == 0 else bid), (math.nan if ask == 0 else ask)
        if bid < 0 or ask < 0:
            return "negative_price"
        if bid > ask:
            return "crossed"
        # Positional, in Quote's field order (keywords cost ~1 µs a quote; see Quote).
        return Quote(
            VENUE, info.underlying, item.s, info.expiry_ts_ms, info.strike, info.is_call,
            bid, ask, index, index, ts_ms, received_ts_ns,
            _positive(bid_size), _positive(ask_size), _positive(bid_iv), _positive(ask_iv),
            _positive(mark_iv))
