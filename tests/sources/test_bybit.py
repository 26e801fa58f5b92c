"""Bybit: golden tests of the decoder on real option messages, requests, and fuzz.

The session against the replay server speaking Bybit's protocol: test_venue_replay.py.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.errors import VenueError
from streamer.sources.base import RATE_LIMITED
from streamer.sources.bybit import protocol
from streamer.sources.bybit.protocol import (
    FAILED,
    PONG,
    BybitDecoder,
    Subscribed,
    parse_instrument_name,
)
from streamer.sources.decoded import Decoded
from tests.sources.venue_support import assert_sane, parsed, raw_messages

MESSAGES = raw_messages("bybit_v5_option_messages_tardis_2023-04-05.json")
SOL_CALL, ETH_PUT = MESSAGES[4], MESSAGES[5]
REASONS = {"malformed", "unexpected_message", "unsubscribed_channel", "expired", "not_option",
           "unknown_instrument", "no_underlying_price", "negative_price", "crossed"}


def _ticker(symbol: str = "BTC-28APR23-29500-C", ts: Any = 1_680_652_810_254,
            kind: str = "snapshot", **fields: Any) -> bytes:
    data = {"symbol": symbol, "bidPrice": "985", "bidSize": "1.5", "bidIv": "0.55",
            "askPrice": "1005", "askSize": "2", "askIv": "0.57", "markPriceIv": "0.56",
            "underlyingPrice": "28300.5", "indexPrice": "28250.1", **fields}
    return json.dumps({"id": "x", "topic": f"tickers.{symbol}", "ts": ts, "data": data,
                       "type": kind}).encode()


# -- golden ----------------------------------------------------------------------------------------

def test_real_messages_decode_to_2_quotes_and_4_unsubscribed_channels() -> None:
    decoder = BybitDecoder()
    decoded = [decoder.decode(raw, 0) for raw in MESSAGES]
    assert len(decoded) == 6
    assert [len(d.quotes) for d in decoded] == [0, 0, 0, 0, 1, 1]
    assert Counter(r for d in decoded for r in d.rejects) == Counter(unsubscribed_channel=4)


def test_sol_call_field_by_field_against_the_raw_json() -> None:
    quote = BybitDecoder().decode(SOL_CALL, 42).quotes[0]
    msg = parsed(SOL_CALL)
    data = msg["data"]
    assert quote.instrument == data["symbol"] == "SOL-28APR23-24-C"
    assert (quote.venue, quote.underlying, quote.strike, quote.is_call) == ("bybit", "SOL",
                                                                            24.0, True)
    assert quote.expiry_ts_ms == 1_682_668_800_000  # 2023-04-28T08:00:00Z
    assert quote.bid_price == float(data["bidPrice"]) == 0.34  # USDC: not rescaled
    assert quote.ask_price == float(data["askPrice"]) == 3.11
    assert (quote.bid_size, quote.ask_size) == (10.0, 51.0)
    assert (quote.bid_iv, quote.ask_iv) == (0.6004, 2.0007)  # decimals already
    assert quote.mark_iv == float(data["markPriceIv"])
    assert quote.underlying_price == quote.index_price == 20.93
    assert (quote.exchange_ts_ms, quote.received_ts_ns) == (msg["ts"], 42)


def test_eth_put_without_an_ask_keeps_the_bid_and_nan_for_the_ask() -> None:
    quote = BybitDecoder().decode(ETH_PUT, 0).quotes[0]
    data = parsed(ETH_PUT)["data"]
    assert (data["askPrice"], data["askIv"]) == ("0", "0")
    assert (quote.bid_price, quote.bid_size, quote.bid_iv) == (0.1, 5.0, 1.4744)
    assert math.isnan(quote.ask_price)
    assert math.isnan(quote.ask_size)
    assert math.isnan(quote.ask_iv)
    assert (quote.underlying_price, quote.index_price) == (1886.16, 1871.27)
    assert quote.expiry_ts_ms == 1_688_112_000_000  # 2023-06-30T08:00:00Z
    assert (quote.strike, quote.is_call) == (200.0, False)


# -- rejects ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("frame", "reason"), [
    pytest.param(b'{"topic":"tickers.BTC', "malformed", id="truncated-json"),
    pytest.param(b"\xff\xfe\x00garbage", "malformed", id="not-utf8"),
    pytest.param(b"", "malformed", id="empty"),
    pytest.param(b"[1, 2]", "malformed", id="json-array"),
    pytest.param(b'{"hello": 1}', "unexpected_message", id="unknown-shape"),
    pytest.param(b'{"topic":"tickers.X","ts":1,"data":[]}', "malformed", id="data-array"),
    pytest.param(MESSAGES[0], "unsubscribed_channel", id="public-trade"),
    pytest.param(_ticker("FOO"), "unknown_instrument", id="unknown-symbol"),
    pytest.param(_ticker("BTCUSDT"), "not_option", id="perpetual"),
    pytest.param(_ticker("BTC-28APR23"), "not_option", id="future"),
    pytest.param(_ticker("BTC-31APR23-29500-C"), "unknown_instrument", id="impossible-date"),
    pytest.param(_ticker(ts=1_682_668_800_000), "expired", id="at-expiry"),
    pytest.param(_ticker(ts=None), "malformed", id="no-ts"),
    pytest.param(_ticker(ts=-1), "malformed", id="negative-ts"),
    pytest.param(_ticker(ts=10**20), "malformed", id="ts-beyond-int64"),
    pytest.param(_ticker(bidPrice="NaN"), "malformed", id="nan-price"),
    pytest.param(_ticker(askPrice="Infinity"), "malformed", id="inf-price"),
    pytest.param(_ticker(bidIv="x"), "malformed", id="text-iv"),
    pytest.param(_ticker(bidPrice=985), "malformed", id="number-not-string"),
    pytest.param(_ticker(bidPrice="-1"), "negative_price", id="negative-bid"),
    pytest.param(_ticker(bidPrice="0", askPrice="-2"), "negative_price", id="negative-ask"),
    pytest.param(_ticker(bidPrice="1100"), "crossed", id="crossed"),
    pytest.param(_ticker(underlyingPrice="0"), "no_underlying_price", id="zero-forward"),
    pytest.param(_ticker(underlyingPrice="-5"), "no_underlying_price", id="negative-forward"),
])
def test_bad_frame_is_counted_with_its_reason(frame: bytes, reason: str) -> None:
    decoded = BybitDecoder().decode(frame, 0)
    assert decoded.quotes == []
    assert decoded.rejects == [reason]


def test_usdt_settled_symbols_are_options_too() -> None:
    info = parse_instrument_name("BTC-26DEC25-100000-C-USDT")
    assert info is not None
    assert (info.underlying, info.strike, info.is_call, info.linear) == ("BTC", 100_000.0,
                                                                         True, True)
    assert info.expiry_ts_ms == 1_766_736_000_000  # 2025-12-26T08:00:00Z
    assert parse_instrument_name("XRP-26DEC25-2.5-P") is not None


def test_a_delta_keeps_the_fields_it_does_not_carry() -> None:
    decoder = BybitDecoder()
    decoder.decode(_ticker(), 0)
    delta = json.dumps({"topic": "tickers.BTC-28APR23-29500-C", "ts": 1_680_652_811_000,
                        "type": "delta", "data": {"symbol": "BTC-28APR23-29500-C",
                                                  "askPrice": "1010"}}).encode()
    quote = decoder.decode(delta, 0).quotes[0]
    assert (quote.bid_price, quote.ask_price, quote.bid_iv) == (985.0, 1010.0, 0.55)
    assert quote.exchange_ts_ms == 1_680_652_811_000


# -- control events, requests, the instrument list ----------------------------------------------

def test_pongs_and_subscribe_answers_in_both_shapes() -> None:
    decoder = BybitDecoder()
    assert decoder.decode(b'{"args":["1672916271846"],"op":"pong"}', 0).result == PONG
    assert decoder.decode(b'{"success":true,"ret_msg":"pong","conn_id":"c","op":"ping"}',
                          0).result == PONG
    ok = decoder.decode(b'{"success":true,"ret_msg":"","conn_id":"c","req_id":"7",'
                        b'"op":"subscribe"}', 0)
    assert (ok.response_id, ok.error_code, ok.rejects) == (7, None, [])
    command = decoder.decode(b'{"success":true,"conn_id":"c","type":"COMMAND_RESP","data":'
                             b'{"failTopics":[],"successTopics":["tickers.X"]}}', 0)
    assert (command.response_id, command.error_code, command.result) == (
        None, None, Subscribed(failed=[]))
    refused = decoder.decode(b'{"success":false,"ret_msg":"Invalid topic","req_id":"9",'
                             b'"op":"subscribe"}', 0)
    assert (refused.response_id, refused.error_code, refused.error_message) == (
        9, FAILED, "Invalid topic")
    unsubscribed = decoder.decode(b'{"success":true,"ret_msg":"","req_id":"10",'
                                  b'"op":"unsubscribe"}', 0)
    assert (unsubscribed.response_id, unsubscribed.result) == (10, Subscribed(failed=[]))


def test_failed_topics_of_an_accepted_subscribe_are_its_result_not_an_error() -> None:
    decoder = BybitDecoder()
    some = decoder.decode(b'{"success":true,"conn_id":"c","type":"COMMAND_RESP","data":'
                          b'{"failTopics":["tickers.NOPE"],"successTopics":["tickers.X"]}}', 0)
    assert (some.error_code, some.result, some.rejects) == (
        None, Subscribed(failed=["tickers.NOPE"]), [])
    # success false with topics confirmed: still only those left out failed
    partly = decoder.decode(b'{"success":false,"conn_id":"c","type":"COMMAND_RESP","data":'
                            b'{"failTopics":["tickers.NOPE"],"successTopics":["tickers.X"]}}', 0)
    assert (partly.error_code, partly.result) == (None, Subscribed(failed=["tickers.NOPE"]))
    # every topic named failed (a batch of one expiring option, say): still per topic;
    # the session backs off only when every topic of a connection is refused
    each = decoder.decode(b'{"success":false,"ret_msg":"subscribe refused","conn_id":"c",'
                          b'"type":"COMMAND_RESP","data":{"failTopics":["tickers.X"],'
                          b'"successTopics":[]}}', 0)
    assert (each.error_code, each.result, each.rejects) == (None, Subscribed(failed=["tickers.X"]),
                                                            [])
    # nothing names a topic: the request as a whole failed
    whole = decoder.decode(b'{"success":false,"ret_msg":"error:handler not found",'
                           b'"conn_id":"c","op":"subscribe"}', 0)
    assert (whole.error_code, whole.result, whole.rejects) == (FAILED, None, [])
    assert whole.error_message == "error:handler not found"


@pytest.mark.parametrize("ret_msg", ["too many requests", "Too many visits!",
                                     "Requests too frequent", "rate limit exceeded"])
def test_a_rate_limit_answer_is_a_rate_limited_reject(ret_msg: str) -> None:
    raw = json.dumps({"success": False, "ret_msg": ret_msg, "conn_id": "c",
                      "data": {"failTopics": ["tickers.X"], "successTopics": []},
                      "type": "COMMAND_RESP"}).encode()
    decoded = BybitDecoder().decode(raw, 0)
    assert (decoded.rejects, decoded.error_code) == ([RATE_LIMITED], FAILED)


def test_requests_and_instrument_list_pages() -> None:
    assert json.loads(protocol.ping_request(3)) == {"req_id": "3", "op": "ping"}
    assert json.loads(protocol.subscribe_request(["tickers.A"], 4)) == {
        "req_id": "4", "op": "subscribe", "args": ["tickers.A"]}
    url = protocol.instruments_url("https://api.bybit.com/", "BTC", "abc%2C1")
    assert url.startswith("https://api.bybit.com/v5/market/instruments-info?")
    assert parse_qs(urlsplit(url).query) == {"category": ["option"], "baseCoin": ["BTC"],
                                             "limit": ["1000"], "cursor": ["abc%2C1"]}
    page = json.dumps({"retCode": 0, "retMsg": "OK", "result": {
        "category": "option", "nextPageCursor": "n1", "list": [
            {"symbol": "BTC-28APR23-29500-C", "status": "Trading"},
            {"symbol": "BTC-28APR23-30000-C", "status": "PreLaunch"}]}}).encode()
    assert protocol.parse_instruments(page) == (["BTC-28APR23-29500-C"], "n1")
    with pytest.raises(VenueError, match="refused"):
        protocol.parse_instruments(b'{"retCode":10001,"retMsg":"params error"}')
    with pytest.raises(VenueError, match="bad instrument list"):
        protocol.parse_instruments(b"<html>")


# -- fuzz ------------------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=8), inner, max_size=3), max_leaves=6)
_decimal = st.sampled_from(["", "0", "-1", "0.1", "1e308", "NaN", "inf", "x"]) | (
    st.floats().map(repr)) | st.none() | _json
_symbols = st.sampled_from(["BTC-28APR23-29500-C", "SOL-28APR23-24-C", "BTCUSDT",
                            "BTC-26DEC25-1-P-USDT", ""]) | st.text(max_size=24)
_FIELDS = ("bidPrice", "bidSize", "bidIv", "askPrice", "askSize", "askIv", "markPriceIv",
           "underlyingPrice", "indexPrice")
_data = st.fixed_dictionaries({"symbol": _symbols}, optional=dict.fromkeys(_FIELDS, _decimal))
_btc_call = st.fixed_dictionaries({"symbol": st.just("BTC-28APR23-29500-C")},
                                  optional=dict.fromkeys(_FIELDS, _decimal))
_frame = st.fixed_dictionaries({}, optional={
    "topic": st.sampled_from(["tickers.BTC-28APR23-29500-C", "orderbook.25.X"]) | _json,
    "type": st.sampled_from(["snapshot", "delta", "COMMAND_RESP"]) | _json,
    "ts": st.sampled_from([1_680_652_810_254, 1_682_668_800_000, -1]) | st.integers() | _json,
    "data": _data | _json, "op": st.sampled_from(["pong", "ping", "subscribe"]) | _json,
    "success": st.booleans() | _json, "req_id": st.sampled_from(["1", "x"]) | _json})


def _check(decoded: Decoded) -> None:
    assert_sane(decoded, REASONS)
    assert len(decoded.quotes) + len(decoded.rejects) <= 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    _check(BybitDecoder().decode(raw, 0))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frame, min_size=1, max_size=3))
def test_arbitrary_bybit_like_frames_never_raise(frames: list[dict[str, Any]]) -> None:
    decoder = BybitDecoder()
    for frame in frames:
        _check(decoder.decode(json.dumps(frame).encode(), 0))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_btc_call, st.booleans())
def test_any_ticker_payload_is_one_quote_or_one_reject(data: dict[str, Any], delta: bool) -> None:
    frame = {"topic": "tickers.BTC-28APR23-29500-C", "ts": 1_680_652_810_254, "data": data,
             "type": "delta" if delta else "snapshot"}
    decoder = BybitDecoder()
    for _ in range(2):
        decoded = decoder.decode(json.dumps(frame).encode(), 0)
        _check(decoded)
        assert len(decoded.quotes) + len(decoded.rejects) == 1
