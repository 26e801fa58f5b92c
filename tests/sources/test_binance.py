"""Binance European options: golden tests on real v1 and v2 frames, and fuzz.

v2 (since 2025-12-17) carries the whole book of an underlying in ``@optionMarkPrice``;
v1 recordings (``@ticker`` plus ``@index``) still decode, so older captures replay.

The session against the replay server speaking Binance's protocol: test_venue_replay.py.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.sources.base import RATE_LIMITED
from streamer.sources.binance import protocol
from streamer.sources.binance.protocol import BinanceDecoder, parse_instrument_name
from streamer.sources.decoded import Decoded
from tests.sources.venue_support import assert_sane, parsed, raw_messages

GOLDEN = "binance_eoptions_messages_tardis.json"
V1 = raw_messages(GOLDEN, "messages_v1_2023-10-01")
V2 = raw_messages(GOLDEN, "messages_v2_2025-12-17")
XRP_MARKS, BTC_MARKS = V2[4], V2[7]  # the BTC frame looks hand-written (PROVENANCE.md)
REASONS = {"malformed", "unexpected_message", "unsubscribed_channel", "expired", "not_option",
           "unknown_instrument", "no_underlying_price", "negative_price", "crossed"}


def _marks(*items: dict[str, Any], stream: str = "btcusdt@optionMarkPrice") -> bytes:
    return json.dumps({"stream": stream, "data": list(items)}).encode()


def _mark(symbol: str = "BTC-251219-89000-C", **fields: Any) -> dict[str, Any]:
    return {"s": symbol, "mp": "1450.5", "E": 1_765_983_421_000, "e": "markPrice",
            "i": "104334.6", "bo": "1440.0", "ao": "1460.0", "bq": "5.00", "aq": "3.50",
            "b": "0.85", "a": "0.88", "vo": "0.86", **fields}


# -- golden ----------------------------------------------------------------------------------------

def test_v1_frames_decode_to_2_quotes_and_6_unsubscribed_streams() -> None:
    decoder = BinanceDecoder()
    decoded = [decoder.decode(raw, 0) for raw in V1]
    assert len(decoded) == 10
    assert [len(d.quotes) for d in decoded] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert Counter(r for d in decoded for r in d.rejects) == Counter(unsubscribed_channel=6)
    assert [parsed(V1[i])["stream"] for i, d in enumerate(decoded) if not d.rejects] == [
        "BTCUSDT@index", "BTC-240927-25000-P@ticker", "BTCUSDT@index",
        "BTC-240927-25000-P@ticker"]


def test_v1_ticker_field_by_field_with_the_latest_index_as_underlying() -> None:
    decoder = BinanceDecoder()
    quotes = [q for raw in V1 for q in decoder.decode(raw, 9).quotes]
    first, second = quotes
    data = parsed(V1[5])["data"]
    assert first.instrument == data["s"] == "BTC-240927-25000-P"
    assert (first.venue, first.underlying, first.strike, first.is_call) == ("binance", "BTC",
                                                                            25_000.0, False)
    assert first.expiry_ts_ms == 1_727_424_000_000  # 2024-09-27T08:00:00Z
    assert (first.bid_price, first.ask_price) == (float(data["bo"]), float(data["ao"]))
    assert (first.bid_size, first.ask_size) == (2.55, 5.8)
    assert (first.bid_iv, first.ask_iv, first.mark_iv) == (0.3804034, 0.47609568, 0.42824954)
    assert first.underlying_price == first.index_price == 26963.13461538
    assert (first.exchange_ts_ms, first.received_ts_ns) == (data["E"], 9)
    assert second.underlying_price == 26960.90703297  # the second @index frame
    assert second.bid_iv == 0.38032115


def test_v1_ticker_before_any_index_has_no_underlying_price() -> None:
    assert BinanceDecoder().decode(V1[5], 0).rejects == ["no_underlying_price"]


def test_v2_frames_decode_to_2_quotes_and_6_unsubscribed_streams() -> None:
    decoder = BinanceDecoder()
    decoded = [decoder.decode(raw, 0) for raw in V2]
    assert len(decoded) == 8
    assert [len(d.quotes) for d in decoded] == [0, 0, 0, 0, 1, 0, 0, 1]
    assert Counter(r for d in decoded for r in d.rejects) == Counter(unsubscribed_channel=6)


def test_v2_xrp_mark_price_without_a_book_keeps_the_mark_iv_and_index() -> None:
    quote = BinanceDecoder().decode(XRP_MARKS, 0).quotes[0]
    item = parsed(XRP_MARKS)["data"][0]
    assert (item["bo"], item["ao"], item["b"], item["a"]) == ("0.0000", "0.0000", "-1.0", "-1.0")
    assert (quote.instrument, quote.underlying, quote.strike, quote.is_call) == (
        "XRP-251219-2.05-P", "XRP", 2.05, False)
    assert quote.expiry_ts_ms == 1_766_131_200_000  # 2025-12-19T08:00:00Z
    for value in (quote.bid_price, quote.ask_price, quote.bid_size, quote.ask_size,
                  quote.bid_iv, quote.ask_iv):
        assert math.isnan(value)
    assert quote.mark_iv == 2.6
    assert quote.underlying_price == quote.index_price == 1.96239445
    assert quote.exchange_ts_ms == item["E"]


def test_v2_btc_mark_price_with_a_book() -> None:
    quote = BinanceDecoder().decode(BTC_MARKS, 0).quotes[0]
    assert (quote.bid_price, quote.ask_price, quote.bid_size, quote.ask_size) == (
        1440.0, 1460.0, 5.0, 3.5)  # USDT: not rescaled
    assert (quote.bid_iv, quote.ask_iv, quote.mark_iv) == (0.85, 0.88, 0.86)
    assert quote.underlying_price == 104334.60217391


# -- rejects ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("frame", "reason"), [
    pytest.param(b'{"stream":"btcusdt@optionMark', "malformed", id="truncated-json"),
    pytest.param(b"\xff\xfe\x00garbage", "malformed", id="not-utf8"),
    pytest.param(b"", "malformed", id="empty"),
    pytest.param(b"[1, 2]", "malformed", id="json-array"),
    pytest.param(b'{"e":"markPrice"}', "unexpected_message", id="raw-stream-event"),
    pytest.param(b'{"stream":"btcusdt@optionMarkPrice","data":{"s":"x"}}', "malformed",
                 id="data-object"),
    pytest.param(V2[0], "unsubscribed_channel", id="option-trade"),
    pytest.param(_marks(_mark("FOO")), "unknown_instrument", id="unknown-symbol"),
    pytest.param(_marks(_mark("BTCUSDT")), "not_option", id="perpetual"),
    pytest.param(_marks(_mark("BTC-251332-1-C")), "unknown_instrument", id="impossible-date"),
    pytest.param(_marks(_mark(E=1_766_131_200_000)), "expired", id="at-expiry"),
    pytest.param(_marks(_mark(E=-1)), "malformed", id="negative-ts"),
    pytest.param(_marks(_mark(E="1")), "malformed", id="ts-as-string"),
    pytest.param(_marks(_mark(bo="NaN")), "malformed", id="nan-price"),
    pytest.param(_marks(_mark(ao="inf")), "malformed", id="inf-price"),
    pytest.param(_marks(_mark(b="x")), "malformed", id="text-iv"),
    pytest.param(_marks(_mark(i="")), "no_underlying_price", id="no-index"),
    pytest.param(_marks(_mark(i="0")), "no_underlying_price", id="zero-index"),
    pytest.param(_marks(_mark(bo="-1")), "negative_price", id="negative-bid"),
    pytest.param(_marks(_mark(bo="0", ao="-1")), "negative_price", id="negative-ask"),
    pytest.param(_marks(_mark(bo="1500")), "crossed", id="crossed"),
    pytest.param(b'{"stream":"BTCUSDT@index","data":{"s":"BTCUSDT","p":"0"}}', "malformed",
                 id="zero-index-event"),
])
def test_bad_frame_is_counted_with_its_reason(frame: bytes, reason: str) -> None:
    decoded = BinanceDecoder().decode(frame, 0)
    assert decoded.quotes == []
    assert decoded.rejects == [reason]


def test_one_bad_item_of_a_mark_price_array_is_one_reject() -> None:
    decoded = BinanceDecoder().decode(_marks(_mark(), {"s": 1}, _mark(bo="1500"),
                                             _mark("ETH-251219-3000-P")), 0)
    assert sorted(decoded.rejects) == ["crossed", "malformed"]
    assert [q.instrument for q in decoded.quotes] == ["BTC-251219-89000-C", "ETH-251219-3000-P"]


def test_answers_to_requests_carry_their_id_and_result_or_error() -> None:
    decoder = BinanceDecoder()
    ok = decoder.decode(b'{"result":null,"id":1}', 0)
    assert (ok.response_id, ok.result, ok.error_code, ok.rejects) == (1, None, None, [])
    nested = decoder.decode(b'{"error":{"code":2,"msg":"Invalid request"},"id":2}', 0)
    assert (nested.response_id, nested.error_code, nested.error_message) == (
        2, 2, "Invalid request")
    flat = decoder.decode(b'{"code":-1121,"msg":"Invalid symbol.","id":3}', 0)
    assert (flat.response_id, flat.error_code) == (3, -1121)


def test_too_many_requests_is_a_rate_limited_reject() -> None:
    decoder = BinanceDecoder()
    flat = decoder.decode(b'{"code":-1003,"msg":"Too many requests","id":4}', 0)
    nested = decoder.decode(b'{"error":{"code":-1003,"msg":"Too many requests"},"id":5}', 0)
    for decoded in (flat, nested):
        assert (decoded.error_code, decoded.rejects) == (-1003, [RATE_LIMITED])


def test_urls_and_stream_names_are_the_post_2025_12_ones_and_configurable() -> None:
    assert protocol.DEFAULT_URL == "wss://fstream.binance.com/market/stream"
    assert protocol.LEGACY_URL == "wss://nbstream.binance.com/eoptions/stream"
    assert protocol.mark_price_stream("BTC") == "btcusdt@optionMarkPrice"
    assert protocol.mark_price_stream("ETH", "{underlying}@markPrice") == "eth@markPrice"
    assert json.loads(protocol.subscribe_request(["btcusdt@optionMarkPrice"], 5)) == {
        "method": "SUBSCRIBE", "params": ["btcusdt@optionMarkPrice"], "id": 5}
    assert json.loads(protocol.unsubscribe_request(["btcusdt@optionMarkPrice"], 6)) == {
        "method": "UNSUBSCRIBE", "params": ["btcusdt@optionMarkPrice"], "id": 6}
    info = parse_instrument_name("DOGE-231006-0.06-C")
    assert info is not None
    assert (info.underlying, info.strike, info.linear) == ("DOGE", 0.06, True)


# -- fuzz ------------------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=8), inner, max_size=3), max_leaves=6)
_decimal = st.sampled_from(["", "0", "0.0000", "-1.0", "0.1", "1e308", "NaN", "x"]) | (
    st.floats().map(repr)) | _json
_FIELDS = ("i", "bo", "ao", "bq", "aq", "b", "a", "vo", "p")
_item = st.fixed_dictionaries({}, optional={
    "s": st.sampled_from(["BTC-251219-89000-C", "XRP-251219-2.05-P", "BTCUSDT", ""])
    | st.text(max_size=20),
    "E": st.sampled_from([1_765_983_421_000, 1_766_131_200_000, -1]) | st.integers() | _json,
    **dict.fromkeys(_FIELDS, _decimal)})
_frame = st.fixed_dictionaries({}, optional={
    "stream": st.sampled_from(["btcusdt@optionMarkPrice", "BTC-240927-25000-P@ticker",
                               "BTCUSDT@index", "x@depth20"]) | _json,
    "data": st.lists(_item, max_size=3) | _item | _json,
    "id": st.integers() | _json, "result": _json, "error": _json, "code": _json})


def _check(decoded: Decoded) -> None:
    assert_sane(decoded, REASONS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    _check(BinanceDecoder().decode(raw, 0))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frame, min_size=1, max_size=3))
def test_arbitrary_binance_like_frames_never_raise(frames: list[dict[str, Any]]) -> None:
    decoder = BinanceDecoder()
    for frame in frames:
        _check(decoder.decode(json.dumps(frame).encode(), 0))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({k: _decimal for k in _FIELDS if k != "p"}))
def test_any_mark_price_item_is_one_quote_or_one_reject(fields: dict[str, Any]) -> None:
    decoded = BinanceDecoder().decode(_marks(_mark(**fields)), 0)
    _check(decoded)
    assert len(decoded.quotes) + len(decoded.rejects) == 1
