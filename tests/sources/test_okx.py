"""OKX: golden tests of the decoder on real pushes, and fuzz.

The decoder joins ``opt-summary`` (forward, vols) with ``tickers`` (book in coin); every
item either yields a Quote or a counted reject reason, and nothing raises.

The session against the replay server speaking OKX's protocol: test_venue_replay.py.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.sources.base import RATE_LIMITED
from streamer.sources.decoded import Decoded
from streamer.sources.okx import instruments, protocol
from streamer.sources.okx.instruments import parse_instrument_name
from streamer.sources.okx.protocol import PONG, Ack, Listed, OkxDecoder
from tests.sources.venue_support import DATA, assert_sane, parsed, raw_messages

SUMMARY_2023 = (DATA / "okx_opt_summary_BTC-USD_2023-12-01T000000Z.json").read_bytes()
TARDIS_2021 = raw_messages("okx_v5_option_channels_tardis_2021-12.json")
REASONS = {"malformed", "unexpected_message", "unsubscribed_channel", "expired", "not_option",
           "unknown_instrument", "no_underlying_price", "negative_price", "crossed"}


def _nan_or(text: str) -> float:
    """OKX's encoding of an absent vol: "" or "0"."""
    return math.nan if text in ("", "0") else float(text)


def _same(actual: float, expected: float) -> bool:
    return (math.isnan(actual) and math.isnan(expected)) or actual == pytest.approx(
        expected, rel=1e-12)


def _push(channel: str, items: list[dict[str, Any]], **arg: str) -> bytes:
    return json.dumps({"arg": {"channel": channel, **arg}, "data": items}).encode()


def _ticker(name: str = "BTC-USD-231229-40000-P", ts: str = "1701388800100",
            **fields: Any) -> bytes:
    item = {"instType": "OPTION", "instId": name, "bidPx": "0.095", "askPx": "0.1",
            "bidSz": "10", "askSz": "20", "ts": ts, **fields}
    return _push("tickers", [item], instId=name)


def _summary(name: str = "BTC-USD-231229-40000-P", ts: str = "1701388800085",
             **fields: str) -> bytes:
    item = {"instId": name, "fwdPx": "38026.372899316", "bidVol": "0.46", "askVol": "0.49",
            "markVol": "0.47", "ts": ts, **fields}
    return _push("opt-summary", [item], instFamily="BTC-USD")


# -- golden: the real full-family push ------------------------------------------------------------

def test_full_family_push_decodes_to_64_quotes_with_forward_and_decimal_vols() -> None:
    decoded = OkxDecoder().decode(SUMMARY_2023, 17)
    items = {item["instId"]: item for item in parsed(SUMMARY_2023)["data"]}
    assert len(items) == 64
    assert decoded.rejects == []
    assert len(decoded.quotes) == 64
    assert isinstance(decoded.result, Listed)
    assert sorted(decoded.result.instruments) == sorted(items)
    for quote in decoded.quotes:
        item = items[quote.instrument]
        assert (quote.venue, quote.underlying) == ("okx", "BTC")
        assert quote.underlying_price == float(item["fwdPx"])
        assert _same(quote.bid_iv, _nan_or(item["bidVol"]))
        assert _same(quote.ask_iv, _nan_or(item["askVol"]))
        assert quote.mark_iv == float(item["markVol"])
        assert quote.exchange_ts_ms == int(item["ts"]) == 1_701_388_800_085
        assert quote.received_ts_ns == 17
        assert math.isnan(quote.bid_price)  # no tickers yet: no book
        assert math.isnan(quote.ask_price)
        assert math.isnan(quote.index_price)
        _, _, date, strike, cp = quote.instrument.split("-")
        expiry = datetime.fromtimestamp(quote.expiry_ts_ms / 1000, tz=UTC)
        assert expiry == datetime(2000 + int(date[:2]), int(date[2:4]), int(date[4:]), 8,
                                  tzinfo=UTC)
        assert (quote.strike, quote.is_call) == (float(strike), cp == "C")


def test_put_of_the_family_push_field_by_field() -> None:
    quote = next(q for q in OkxDecoder().decode(SUMMARY_2023, 0).quotes
                 if q.instrument == "BTC-USD-231229-40000-P")
    assert quote.expiry_ts_ms == 1_703_836_800_000  # 2023-12-29T08:00:00Z
    assert (quote.strike, quote.is_call) == (40_000.0, False)
    assert quote.underlying_price == 38026.372899316
    assert (quote.bid_iv, quote.ask_iv, quote.mark_iv) == (0.4611296832, 0.4895109741,
                                                            0.4686517873)


def test_book_is_joined_with_the_summary_and_scaled_by_its_forward() -> None:
    decoder = OkxDecoder()
    decoder.decode(SUMMARY_2023, 0)
    quote = decoder.decode(_ticker(), 5).quotes[0]
    forward = 38026.372899316
    assert quote.bid_price == pytest.approx(0.095 * forward, rel=1e-12)  # coin x forward
    assert quote.ask_price == pytest.approx(0.1 * forward, rel=1e-12)
    assert (quote.bid_size, quote.ask_size) == (10.0, 20.0)
    assert (quote.bid_iv, quote.ask_iv) == (0.4611296832, 0.4895109741)  # from the summary
    assert (quote.exchange_ts_ms, quote.received_ts_ns) == (1_701_388_800_100, 5)
    # A new summary re-prices the book it already has with the new forward.
    requote = decoder.decode(_summary(fwdPx="40000", ts="1701388801000"), 6).quotes[0]
    assert requote.bid_price == pytest.approx(0.095 * 40_000, rel=1e-12)
    assert (requote.bid_iv, requote.exchange_ts_ms) == (0.46, 1_701_388_801_000)


# -- golden: the tardis channel sample -------------------------------------------------------------

def test_tardis_channels_decode_to_4_quotes_and_4_unsubscribed_channels() -> None:
    decoder = OkxDecoder()
    decoded = [decoder.decode(raw, 0) for raw in TARDIS_2021]
    assert len(decoded) == 8
    assert [len(d.quotes) for d in decoded] == [0, 0, 0, 0, 1, 2, 0, 1]
    assert Counter(r for d in decoded for r in d.rejects) == Counter(unsubscribed_channel=4)
    assert [d.rejects for d in decoded if d.rejects] == [["unsubscribed_channel"]] * 4


def test_tardis_ticker_before_any_summary_uses_the_index_as_forward() -> None:
    decoder = OkxDecoder()
    index, ticker = TARDIS_2021[1], TARDIS_2021[4]
    assert parsed(index)["data"][0]["idxPx"] == "3814.05"
    assert decoder.decode(index, 0) == Decoded()
    quote = decoder.decode(ticker, 0).quotes[0]
    item = parsed(ticker)["data"][0]
    assert (quote.instrument, item["bidPx"], item["askPx"]) == ("ETH-USD-211231-9600-C", "",
                                                                "0.0005")
    assert math.isnan(quote.bid_price)
    assert quote.ask_price == pytest.approx(0.0005 * 3814.05, rel=1e-12)
    assert (quote.ask_size, quote.underlying_price, quote.index_price) == (111.0, 3814.05,
                                                                           3814.05)
    assert quote.exchange_ts_ms == int(item["ts"])
    assert quote.expiry_ts_ms == 1_640_937_600_000  # 2021-12-31T08:00:00Z
    assert math.isnan(quote.bid_iv)


def test_tardis_summary_keyed_by_uly_keeps_the_book_and_sets_the_vols() -> None:
    decoder = OkxDecoder()
    for raw in TARDIS_2021[:5]:
        decoder.decode(raw, 0)
    decoded = decoder.decode(TARDIS_2021[5], 0)
    by_name = {q.instrument: q for q in decoded.quotes}
    far = by_name["ETH-USD-211231-9600-C"]
    assert math.isnan(far.bid_iv)  # bidVol ""
    assert (far.ask_iv, far.mark_iv) == (1.9531310937, 1.8880399194)
    assert far.ask_price == pytest.approx(0.0005 * 3814.05, rel=1e-12)
    near = by_name["ETH-USD-211222-4000-C"]
    assert (near.bid_iv, near.ask_iv) == (0.7421960156, 0.8203208593)
    assert math.isnan(near.ask_price)


# -- rejects: counted with their reason, never raising ---------------------------------------------

@pytest.mark.parametrize(("frame", "reason"), [
    pytest.param(b'{"arg":{"channel":"opt-summ', "malformed", id="truncated-json"),
    pytest.param(b"\xff\xfe\x00garbage", "malformed", id="not-utf8"),
    pytest.param(b"", "malformed", id="empty"),
    pytest.param(b"[1, 2]", "malformed", id="json-array"),
    pytest.param(b'{"foo": 1}', "unexpected_message", id="neither-event-nor-push"),
    pytest.param(b'{"event": "surprise"}', "unexpected_message", id="unknown-event"),
    pytest.param(b'{"arg":{"channel":"tickers"},"data":{"a":1}}', "malformed", id="data-object"),
    pytest.param(_push("books", [{"asks": []}], instId="X"), "unsubscribed_channel", id="books"),
    pytest.param(_ticker("FOO"), "unknown_instrument", id="unknown-name"),
    pytest.param(_ticker("BTC-USD-231229"), "not_option", id="future"),
    pytest.param(_ticker("BTC-USD-SWAP"), "not_option", id="swap"),
    pytest.param(_ticker("BTC-USD-231231-40000-Q"), "unknown_instrument", id="bad-type"),
    pytest.param(_ticker("BTC-USD-231331-40000-C"), "unknown_instrument", id="month-13"),
    pytest.param(_ticker("BTC-USD-231229-0-C"), "unknown_instrument", id="zero-strike"),
    pytest.param(_ticker(ts="1703836800000"), "expired", id="at-expiry"),
    pytest.param(_ticker(ts="17x11"), "malformed", id="ts-not-a-number"),
    pytest.param(_ticker(ts="1701388800100.5"), "malformed", id="ts-not-an-integer"),
    pytest.param(_ticker(ts=""), "malformed", id="ts-empty"),
    pytest.param(_ticker(ts="-5"), "malformed", id="negative-ts"),
    pytest.param(_ticker(bidPx="NaN"), "malformed", id="nan-price"),
    pytest.param(_ticker(askPx="inf"), "malformed", id="inf-price"),
    pytest.param(_ticker(bidPx="abc"), "malformed", id="text-price"),
    pytest.param(_ticker(bidPx=0.1), "malformed", id="number-not-string"),
    pytest.param(_ticker(bidPx="-0.01"), "negative_price", id="negative-bid"),
    pytest.param(_ticker(bidPx="", askPx="-1"), "negative_price", id="negative-ask-no-bid"),
    pytest.param(_ticker(bidPx="0.2", askPx="0.1"), "crossed", id="crossed"),
    pytest.param(_ticker(), "no_underlying_price", id="book-without-summary-or-index"),
    pytest.param(_summary(fwdPx="0"), "no_underlying_price", id="zero-forward"),
    pytest.param(_summary(markVol="NaN"), "malformed", id="nan-vol"),
    pytest.param(_push("index-tickers", [{"instId": "BTC-USD", "idxPx": "0"}],
                       instId="BTC-USD"), "malformed", id="zero-index"),
])
def test_bad_frame_is_counted_with_its_reason(frame: bytes, reason: str) -> None:
    decoded = OkxDecoder().decode(frame, 0)
    assert decoded.quotes == []
    assert decoded.rejects == [reason]


def test_one_bad_item_is_one_reject_and_the_others_still_decode() -> None:
    data = parsed(SUMMARY_2023)
    data["data"][3]["markVol"] = 0.5  # a number where OKX sends a string
    data["data"][7] = "garbage"
    decoded = OkxDecoder().decode(json.dumps(data).encode(), 0)
    assert decoded.rejects == ["malformed", "malformed"]
    assert len(decoded.quotes) == 62


def test_a_crossed_book_replaces_the_previous_one() -> None:
    decoder = OkxDecoder()
    decoder.decode(SUMMARY_2023, 0)
    assert len(decoder.decode(_ticker(), 0).quotes) == 1
    assert decoder.decode(_ticker(bidPx="0.3"), 0).rejects == ["crossed"]
    requote = decoder.decode(_summary(), 0).quotes[0]
    assert math.isnan(requote.bid_price)  # the crossed book is not kept, nor the old one
    assert math.isnan(requote.ask_price)


def test_expired_summary_is_rejected_and_forgets_the_instrument() -> None:
    decoder = OkxDecoder()
    assert decoder.decode(_summary(ts="1703836800000"), 0).rejects == ["expired"]
    assert decoder.decode(_ticker(ts="1703836700000"), 0).rejects == ["no_underlying_price"]


def test_instrument_names_are_classified() -> None:
    inst = parse_instrument_name("BTC-USD-231201-36000-C")
    assert inst is not None
    assert inst.family == "BTC-USD"
    assert (inst.info.underlying, inst.info.strike, inst.info.is_call) == ("BTC", 36000.0, True)
    assert not inst.info.linear
    assert inst.info.expiry_ts_ms == 1_701_417_600_000  # 2023-12-01T08:00:00Z
    usdc = parse_instrument_name("ETH-USDC-240105-2250.5-P")
    assert usdc is not None
    assert usdc.info.linear
    assert usdc.info.strike == 2250.5


# -- control events and requests -------------------------------------------------------------------

def test_control_frames_are_events_not_rejects() -> None:
    decoder = OkxDecoder()
    assert decoder.decode(b"pong", 0).result == PONG
    ack = decoder.decode(b'{"event":"subscribe","arg":{"channel":"opt-summary",'
                         b'"instFamily":"BTC-USD"},"connId":"a4d3ae55"}', 0)
    assert ack.result == Ack(event="subscribe", key="opt-summary:BTC-USD")
    error = decoder.decode(b'{"event":"error","code":"60012","msg":"Invalid request",'
                           b'"connId":"a4d3ae55"}', 0)
    assert (error.error_code, error.error_message) == (60012, "Invalid request")
    notice = decoder.decode(b'{"event":"notice","code":"64008","msg":"The connection will '
                            b'soon be closed for a service upgrade."}', 0)
    assert notice.platform_state is not None
    assert "service upgrade" in notice.platform_state
    count = decoder.decode(b'{"event":"channel-conn-count","channel":"tickers",'
                           b'"connCount":"2","connId":"x"}', 0)
    for decoded in (ack, error, notice, count):
        assert (decoded.quotes, decoded.rejects) == ([], [])


def test_requests_too_frequent_is_a_rate_limited_reject() -> None:
    decoded = OkxDecoder().decode(b'{"event":"error","code":"60014","msg":"Requests too '
                                  b'frequent.","connId":"a4d3ae55"}', 0)
    assert (decoded.error_code, decoded.rejects) == (60014, [RATE_LIMITED])


def test_a_summary_push_names_its_family_and_the_options_it_lists() -> None:
    listed = OkxDecoder().decode(SUMMARY_2023, 0).result
    assert isinstance(listed, Listed)
    assert (listed.family, len(listed.instruments)) == ("BTC-USD", 64)


def test_unsubscribe_request_is_the_subscribe_request_with_its_op() -> None:
    arg = instruments.ticker_arg("BTC-USD-231201-36000-C")
    assert json.loads(instruments.subscribe_request([arg], "unsubscribe")) == {
        "op": "unsubscribe", "args": [{"channel": "tickers", "instId": "BTC-USD-231201-36000-C"}]}


def test_subscribe_request_uses_okx_field_names() -> None:
    request = json.loads(instruments.subscribe_request(
        [*instruments.family_args("BTC-USD"), instruments.ticker_arg("BTC-USD-231201-36000-C")]))
    assert request == {"op": "subscribe", "args": [
        {"channel": "index-tickers", "instId": "BTC-USD"},
        {"channel": "opt-summary", "instFamily": "BTC-USD"},
        {"channel": "tickers", "instId": "BTC-USD-231201-36000-C"}]}
    assert instruments.instrument_family("ETH") == "ETH-USD"
    assert protocol.DEFAULT_URL == "wss://ws.okx.com:8443/ws/v5/public"


# -- fuzz: nothing raises --------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=8), inner, max_size=3), max_leaves=6)
_decimal = st.sampled_from(["", "0", "-1", "0.1", "1e308", "NaN", "inf", "x", "38026.37"]) | (
    st.floats().map(str)) | _json
_names = st.sampled_from(["BTC-USD-231229-40000-P", "BTC-USD-231201-36000-C", "BTC-USD-SWAP",
                          "ETH-USDC-240105-2250-P", "BTC-USD-991301-1-C", ""]) | st.text(
    max_size=24)
_item = st.fixed_dictionaries({}, optional={
    "instId": _names, "ts": st.sampled_from(["1701388800085", "1703836800000", "-1", ""])
    | st.integers().map(str) | _json,
    **{key: _decimal for key in ("fwdPx", "bidVol", "askVol", "markVol", "bidPx", "askPx",
                                 "bidSz", "askSz", "idxPx")}})
_frame = st.fixed_dictionaries({}, optional={
    "event": st.sampled_from(["subscribe", "error", "notice", "login"]) | _json,
    "arg": st.fixed_dictionaries({}, optional={
        "channel": st.sampled_from(["opt-summary", "tickers", "index-tickers", "books"]) | _json,
        "instId": _names, "instFamily": st.just("BTC-USD") | _json}) | _json,
    "data": st.lists(_item | _json, max_size=3) | _json,
    "code": st.sampled_from(["60012", "x"]) | _json, "msg": _json})


def _check(decoded: Decoded) -> None:
    assert_sane(decoded, REASONS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    _check(OkxDecoder().decode(raw, 0))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_frame, min_size=1, max_size=3))
def test_arbitrary_okx_like_frames_never_raise(frames: list[dict[str, Any]]) -> None:
    decoder = OkxDecoder()  # one decoder: state carried between frames must stay sane
    for frame in frames:
        _check(decoder.decode(json.dumps(frame).encode(), 0))


_price_text = st.sampled_from(["", "0", "-0.01", "0.1", "0.2", "1e308", "NaN", "x"]) | (
    st.floats(allow_nan=True, allow_infinity=True).map(repr))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({k: _price_text for k in ("bidPx", "askPx", "bidSz", "askSz")}),
       st.fixed_dictionaries({k: _price_text for k in ("fwdPx", "bidVol", "askVol", "markVol")}))
def test_any_book_joined_with_any_summary_is_one_quote_or_one_reject(
        book: dict[str, str], summary: dict[str, str]) -> None:
    decoder = OkxDecoder()
    for frame in (_summary(**summary), _ticker(**book), _summary(ts="1701388800200", **summary)):
        decoded = decoder.decode(frame, 0)
        _check(decoded)
        assert len(decoded.quotes) + len(decoded.rejects) == 1
