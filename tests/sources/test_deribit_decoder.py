"""Golden tests of the Deribit decoder on real captured ticker notifications.

Every frame either yields one Quote, one reject reason, or a control event; the
decoder never raises, whatever the bytes.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.sources.decoded import Decoded
from streamer.sources.deribit.protocol import (
    DeribitDecoder,
    classify_unparsable,
    parse_instrument_name,
)
from streamer.types import Quote
from tests.sources.golden import CAPTURE_2021_04, rows

REASONS = {"malformed", "unexpected_message", "unsubscribed_channel", "expired", "not_option",
           "combo", "unknown_instrument", "no_underlying_price", "negative_price", "crossed"}
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


def _decode_golden() -> list[tuple[Any, Decoded]]:
    decoder = DeribitDecoder()
    return [(row, decoder.decode(row.raw, row.received_ts_ns)) for row in rows()]


def _missing(value: float | None) -> bool:
    """Deribit's encoding of an absent side: 0 or null."""
    return value is None or value == 0


def _same(actual: float, expected: float) -> bool:
    return (math.isnan(actual) and math.isnan(expected)) or actual == pytest.approx(
        expected, rel=1e-12)


# -- the golden file as a whole ---------------------------------------------------------------

def test_golden_file_is_the_full_real_capture_index() -> None:
    sources = Counter(row.source for row in rows())
    assert sum(sources.values()) == 188
    assert sources[CAPTURE_2021_04] == 92


def test_golden_file_decodes_to_185_quotes_2_combos_1_expired() -> None:
    decoded = _decode_golden()
    quotes = [q for _, d in decoded for q in d.quotes]
    reasons = Counter(r for _, d in decoded for r in d.rejects)
    assert len(quotes) == 185
    assert reasons == Counter({"combo": 2, "expired": 1})
    assert all(len(d.quotes) + len(d.rejects) == 1 for _, d in decoded)
    assert {q.underlying for q in quotes} == {"BTC", "ETH", "MATIC"}


def test_rejected_golden_frames_are_the_combos_and_the_expired_put() -> None:
    rejected = {row.data["instrument_name"]: d.rejects[0] for row, d in _decode_golden()
                if d.rejects}
    assert rejected == {"BTC-STRD-30SEP22-20000": "combo",
                        "BTC-CSR12-16SEP22-21000_23000": "combo",
                        "BTC-8JUN20-8750-P": "expired"}


def test_every_golden_quote_matches_its_raw_json_with_units_converted() -> None:
    checked = 0
    for row, decoded in _decode_golden():
        if not decoded.quotes:
            continue
        quote, data = decoded.quotes[0], row.data
        linear = "_USDC-" in data["instrument_name"]
        scale = 1.0 if linear else data["underlying_price"]  # inverse: coin premium x forward
        assert quote.instrument == data["instrument_name"]
        assert quote.exchange_ts_ms == data["timestamp"]
        assert isinstance(quote.exchange_ts_ms, int)
        assert quote.received_ts_ns == row.received_ts_ns
        assert quote.underlying_price == data["underlying_price"]
        assert quote.index_price == data["index_price"]
        for side in ("bid", "ask"):
            price, iv = data[f"best_{side}_price"], data[f"{side}_iv"]
            got_price, got_iv = getattr(quote, f"{side}_price"), getattr(quote, f"{side}_iv")
            assert _same(got_price, math.nan if _missing(price) else price * scale)
            assert _same(got_iv, math.nan if _missing(iv) else iv / 100.0)  # decimals
        assert _same(quote.mark_iv, data["mark_iv"] / 100.0)
        checked += 1
    assert checked == 185


def test_every_golden_quote_expires_at_0800_utc_on_the_date_in_its_name() -> None:
    for _, decoded in _decode_golden():
        for quote in decoded.quotes:
            date_code, strike, cp = quote.instrument.split("-")[1:]
            expiry = datetime.fromtimestamp(quote.expiry_ts_ms / 1000, tz=UTC)
            assert (expiry.hour, expiry.minute, expiry.second) == (8, 0, 0)
            assert f"{expiry.day}{MONTHS[expiry.month - 1]}{expiry.year % 100:02d}" == date_code
            assert quote.strike == float(strike.replace("d", "."))
            assert quote.is_call == (cp == "C")
            assert quote.exchange_ts_ms < quote.expiry_ts_ms


def test_vols_are_decimals_not_percent() -> None:
    ivs = [v for _, d in _decode_golden() for q in d.quotes
           for v in (q.bid_iv, q.ask_iv, q.mark_iv) if not math.isnan(v)]
    assert len(ivs) > 185
    assert min(ivs) > 0.2
    assert max(ivs) < 5.0


# -- two messages, field by field -------------------------------------------------------------

def test_eth_put_with_both_sides_decodes_field_by_field() -> None:
    row = rows()[1]
    assert row.data["instrument_name"] == "ETH-30APR21-2560-P"
    decoded = DeribitDecoder().decode(row.raw, row.received_ts_ns)
    assert decoded.rejects == []
    expected = Quote(
        venue="deribit", underlying="ETH", instrument="ETH-30APR21-2560-P",
        expiry_ts_ms=1_619_769_600_000,  # 2021-04-30T08:00:00Z
        strike=2560.0, is_call=False,
        bid_price=0.083 * 2413.36, ask_price=0.0885 * 2413.36, bid_size=5.0, ask_size=240.0,
        bid_iv=0.6076, ask_iv=0.6888, mark_iv=0.6735, underlying_price=2413.36,
        index_price=2365.41, exchange_ts_ms=1_618_677_848_562,
        received_ts_ns=1_618_677_848_917_636_000)
    got = msgspec.structs.asdict(decoded.quotes[0])
    for name, value in msgspec.structs.asdict(expected).items():
        assert got[name] == (pytest.approx(value, rel=1e-12) if isinstance(value, float)
                             else value), name


def test_btc_call_with_missing_ask_keeps_the_bid_and_nan_for_the_ask() -> None:
    row = rows()[9]
    assert row.data["instrument_name"] == "BTC-18APR21-59000-C"
    assert row.data["best_ask_price"] == 0.0
    quote = DeribitDecoder().decode(row.raw, 123).quotes[0]
    assert quote.expiry_ts_ms == 1_618_732_800_000  # 2021-04-18T08:00:00Z
    assert (quote.strike, quote.is_call, quote.underlying) == (59000.0, True, "BTC")
    assert quote.bid_price == pytest.approx(0.0275 * 60656.04, rel=1e-12)
    assert quote.bid_size == 0.4
    assert quote.bid_iv == pytest.approx(0.3625, rel=1e-12)
    assert math.isnan(quote.ask_price)
    assert math.isnan(quote.ask_size)
    assert math.isnan(quote.ask_iv)
    assert quote.mark_iv == pytest.approx(0.6631, rel=1e-12)
    assert (quote.exchange_ts_ms, quote.received_ts_ns) == (1_618_677_848_161, 123)


def test_linear_usdc_option_keeps_a_fractional_strike_and_usdc_premiums() -> None:
    quote = DeribitDecoder().decode(_ticker(
        "MATIC_USDC-9MAR24-1d02-C", underlying_price=1.1367, best_bid_price=0.12,
        best_ask_price=0.14), 0).quotes[0]
    assert (quote.underlying, quote.strike, quote.is_call) == ("MATIC", 1.02, True)
    assert (quote.bid_price, quote.ask_price) == (0.12, 0.14)  # linear: not scaled
    assert quote.expiry_ts_ms == 1_709_971_200_000  # 2024-03-09T08:00:00Z


# -- rejects: each counted with its reason, never raising ---------------------------------------

def _ticker(name: str = "BTC-25MAR22-50000-C", *, channel: str | None = None,
            raw_fields: str = "", **fields: Any) -> bytes:
    """A ticker notification; ``raw_fields`` is spliced in verbatim (for non-JSON numbers)."""
    data: dict[str, Any] = {
        "instrument_name": name, "timestamp": 1_618_677_848_562, "state": "open",
        "underlying_price": 60_000.0, "index_price": 59_990.0, "best_bid_price": 0.1,
        "best_ask_price": 0.11, "best_bid_amount": 1.0, "best_ask_amount": 2.0,
        "bid_iv": 60.0, "ask_iv": 65.0, "mark_iv": 62.0}
    data.update(fields)
    body = json.dumps(data)
    if raw_fields:
        body = body[:-1] + ", " + raw_fields + "}"
    return json.dumps({"jsonrpc": "2.0", "method": "subscription", "params": {
        "channel": channel or f"ticker.{name}.100ms", "data": "@DATA@"}}).replace(
        '"@DATA@"', body).encode()


def test_the_hand_made_ticker_is_a_valid_quote() -> None:
    decoded = DeribitDecoder().decode(_ticker(), 0)
    assert decoded.rejects == []
    assert len(decoded.quotes) == 1


@pytest.mark.parametrize(("frame", "reason"), [
    pytest.param(b'{"jsonrpc":"2.0","method":"subscr', "malformed", id="truncated-json"),
    pytest.param(b"\xff\xfe\x00garbage", "malformed", id="not-utf8"),
    pytest.param(b"", "malformed", id="empty"),
    pytest.param(b"[1, 2, 3]", "malformed", id="json-array"),
    pytest.param(b'{"jsonrpc":"2.0","method":"subscription","params":{"data":{}}}',
                 "malformed", id="subscription-without-channel"),
    pytest.param(b'{"jsonrpc":"2.0","method":"heartbeat","params":42}', "malformed",
                 id="heartbeat-bad-params"),
    pytest.param(b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.x",'
                 b'"data":{"timestamp":1}}}', "malformed", id="ticker-without-name"),
    pytest.param(_ticker(raw_fields='"best_bid_price": NaN'), "malformed", id="nan-literal"),
    pytest.param(_ticker(raw_fields='"best_ask_price": 1e999'), "malformed", id="inf-literal"),
    pytest.param(_ticker(best_bid_price="0.1"), "malformed", id="price-as-string"),
    pytest.param(_ticker(timestamp=10**23), "malformed", id="timestamp-beyond-int64"),
    pytest.param(_ticker(timestamp=-5), "malformed", id="negative-timestamp"),
    pytest.param(_ticker("FOO"), "unknown_instrument", id="unknown-name"),
    pytest.param(_ticker("BTC-31FEB22-50000-C"), "unknown_instrument", id="impossible-date"),
    pytest.param(_ticker("BTC-25XYZ22-50000-C"), "unknown_instrument", id="bad-month"),
    pytest.param(_ticker("BTC-PERPETUAL"), "not_option", id="perpetual"),
    pytest.param(_ticker("BTC-25MAR22"), "not_option", id="future"),
    pytest.param(_ticker("BTC-STRD-30SEP22-20000"), "combo", id="straddle"),
    pytest.param(_ticker("BTC-CSR12-16SEP22-21000_23000"), "combo", id="call-spread"),
    pytest.param(_ticker(state="closed"), "expired", id="closed"),
    pytest.param(_ticker(estimated_delivery_price="expired", state="closed",
                         underlying_price="expired"), "expired", id="expired-strings"),
    pytest.param(_ticker(best_bid_price=-0.01), "negative_price", id="negative-bid"),
    pytest.param(_ticker(best_bid_price=0.0, best_ask_price=-0.5), "negative_price",
                 id="negative-ask-no-bid"),
    pytest.param(_ticker(best_bid_price=0.2, best_ask_price=0.1), "crossed", id="crossed"),
    pytest.param(_ticker(underlying_price=None), "no_underlying_price", id="null-forward"),
    pytest.param(_ticker(underlying_price=0.0), "no_underlying_price", id="zero-forward"),
    pytest.param(_ticker(underlying_price=-1.0), "no_underlying_price", id="negative-forward"),
    pytest.param(_ticker(channel="book.BTC-25MAR22-50000-C.raw"), "unsubscribed_channel",
                 id="book-channel"),
    pytest.param(b'{"jsonrpc":"2.0","method":"what"}', "unexpected_message", id="no-id"),
])
def test_bad_frame_is_counted_with_its_reason(frame: bytes, reason: str) -> None:
    decoded = DeribitDecoder().decode(frame, 0)
    assert decoded.quotes == []
    assert decoded.rejects == [reason]


def test_deeply_nested_json_is_malformed_not_a_recursion_error() -> None:
    depth = 200_000
    frame = b'{"jsonrpc":"2.0","id":1,"result":' + b"[" * depth + b"]" * depth + b"}"
    assert DeribitDecoder().decode(frame, 0).rejects == ["malformed"]


def test_a_bad_frame_does_not_poison_the_next_one() -> None:
    decoder = DeribitDecoder()
    assert decoder.decode(b"{not json", 0).rejects == ["malformed"]
    assert decoder.decode(_ticker("BTC-PERPETUAL"), 0).rejects == ["not_option"]
    assert len(decoder.decode(_ticker(), 0).quotes) == 1


def test_instrument_names_are_classified() -> None:
    info = parse_instrument_name("BTC-8JUN20-8750-P")
    assert info is not None
    assert (info.underlying, info.strike, info.is_call, info.linear) == ("BTC", 8750.0, False,
                                                                         False)
    assert info.expiry_ts_ms == 1_591_603_200_000  # 2020-06-08T08:00:00Z
    assert parse_instrument_name("BTC-STRD-30SEP22-20000") is None
    assert classify_unparsable("ETH-PERPETUAL") == "not_option"
    assert classify_unparsable("BTC-RR-30SEP22-18000_22000") == "combo"
    assert classify_unparsable("hello") == "unknown_instrument"


# -- control events -----------------------------------------------------------------------------

def test_heartbeat_test_request_asks_for_an_answer() -> None:
    decoder = DeribitDecoder()
    asked = decoder.decode(b'{"jsonrpc":"2.0","method":"heartbeat",'
                           b'"params":{"type":"test_request"}}', 0)
    plain = decoder.decode(b'{"jsonrpc":"2.0","method":"heartbeat",'
                           b'"params":{"type":"heartbeat"}}', 0)
    assert asked.test_request
    assert asked.rejects == []
    assert asked.quotes == []
    assert not plain.test_request
    assert plain.rejects == []


def test_responses_carry_their_id_and_result_or_error() -> None:
    decoder = DeribitDecoder()
    ok = decoder.decode(b'{"jsonrpc":"2.0","id":7,"result":["ticker.BTC-X.raw"]}', 0)
    err = decoder.decode(b'{"jsonrpc":"2.0","id":8,"error":{"code":11050,'
                         b'"message":"bad_request"}}', 0)
    assert (ok.response_id, ok.result, ok.error_code) == (7, ["ticker.BTC-X.raw"], None)
    assert (err.response_id, err.error_code, err.error_message) == (8, 11050, "bad_request")
    assert ok.rejects == err.rejects == []


def test_platform_state_is_reported() -> None:
    frame = (b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"platform_state",'
             b'"data":{"maintenance":true}}}')
    decoded = DeribitDecoder().decode(frame, 0)
    assert decoded.platform_state == "True"
    assert decoded.rejects == []


# -- fuzz: nothing raises -----------------------------------------------------------------------

NAMES = ["BTC-25MAR22-50000-C", "ETH-30APR21-2560-P", "MATIC_USDC-9MAR24-1d02-C",
         "BTC-PERPETUAL", "BTC-STRD-30SEP22-20000", "BTC-31FEB22-1-C", ""]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=8), inner, max_size=4), max_leaves=12)
_number = st.none() | st.floats() | st.integers() | st.sampled_from([0, 0.0, -1.0, 1e308]) | _json
_ticker_data = st.fixed_dictionaries({}, optional={
    "instrument_name": st.sampled_from(NAMES) | st.text(max_size=30),
    "timestamp": st.integers() | _json,
    "state": st.sampled_from(["open", "closed"]) | _json,
    **{key: _number for key in ("underlying_price", "index_price", "best_bid_price",
                                "best_ask_price", "best_bid_amount", "best_ask_amount",
                                "bid_iv", "ask_iv", "mark_iv")},
    "estimated_delivery_price": st.just("expired") | _number,
})
_params = st.fixed_dictionaries({}, optional={
    "channel": st.sampled_from(["ticker.BTC-25MAR22-50000-C.100ms", "platform_state",
                                "book.x"]) | st.text(max_size=20),
    "data": _ticker_data | _json,
    "type": st.sampled_from(["test_request", "heartbeat"]) | _json,
}) | _json
_envelope = st.fixed_dictionaries({}, optional={
    "jsonrpc": st.just("2.0") | _json,
    "method": st.sampled_from(["subscription", "heartbeat"]) | _json,
    "params": _params,
    "id": st.integers() | _json,
    "result": _json,
    "error": st.fixed_dictionaries({"code": st.integers() | _json}) | _json,
})


def _check(decoded: Decoded) -> None:
    assert isinstance(decoded, Decoded)
    assert len(decoded.quotes) + len(decoded.rejects) <= 1
    assert set(decoded.rejects) <= REASONS
    for q in decoded.quotes:
        assert math.isfinite(q.underlying_price)
        assert q.underlying_price > 0
        for price in (q.bid_price, q.ask_price):
            assert math.isnan(price) or price >= 0
        assert not q.bid_price > q.ask_price
        assert 0 <= q.exchange_ts_ms < 2**63


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    _check(DeribitDecoder().decode(raw, 0))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_envelope)
def test_arbitrary_json_envelopes_never_raise(envelope: dict[str, Any]) -> None:
    _check(DeribitDecoder().decode(json.dumps(envelope).encode(), 0))  # NaN -> "NaN" text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ticker_data)
def test_arbitrary_ticker_payloads_never_raise(data: dict[str, Any]) -> None:
    frame = {"jsonrpc": "2.0", "method": "subscription",
             "params": {"channel": "ticker.BTC-25MAR22-50000-C.100ms", "data": data}}
    decoded = DeribitDecoder().decode(json.dumps(frame).encode(), 0)
    _check(decoded)
    assert len(decoded.quotes) + len(decoded.rejects) == 1  # a ticker is a quote or a reject
