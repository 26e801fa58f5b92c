"""The native Deribit fast path gives exactly what the msgspec reference gives, or declines.

Differential tests: every frame goes through both fast paths (fast_path.py) and both
whole decoders (native and msgspec-only). The native path may decline (None) a frame
the reference reads, and only for the documented unusual constructs; whatever it does
return must be the reference's Quote, bit for bit (compared encoded, so NaN and the
sign of zero count), or the same reject reason. The numbers are checked against
Python's own correctly rounded ``float()``, which is what msgspec also gives.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamer
from streamer.sources.base import InstrumentCache
from streamer.sources.decoded import InstrumentInfo
from streamer.sources.deribit.fast_path import FastPath, MsgspecFastPath, native_fast_path
from streamer.sources.deribit.protocol import (
    DeribitDecoder,
    classify_unparsable,
    parse_instrument_name,
)
from streamer.tickfile import read_tickfile
from streamer.types import Quote
from tests.sources.golden import rows

TS = 1_700_000_000_000_000_000
BUNDLED = Path(streamer.__file__).parent / "data" / "deribit_sample.ndjson.gz"


def _cache() -> InstrumentCache[InstrumentInfo]:
    return InstrumentCache(parse_instrument_name, classify_unparsable)


def _paths() -> tuple[FastPath, FastPath]:
    native = native_fast_path(_cache())
    if native is None:
        pytest.skip("native fast path not built (no C compiler at install)")
    return native, MsgspecFastPath(_cache())


def _same(a: object, b: object) -> bool:
    """Equal Quotes field by field, NaN and the sign of zero included; else plain equality."""
    if type(a) is not type(b):
        return False
    if not isinstance(a, Quote) or not isinstance(b, Quote):
        return a == b
    return all(_same_value(x, y) for x, y in zip(msgspec.structs.astuple(a),
                                                  msgspec.structs.astuple(b), strict=True))


def _same_value(x: object, y: object) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        return x == y and math.copysign(1.0, x) == math.copysign(1.0, y)
    return type(x) is type(y) and x == y


def test_same_tells_nan_from_inf_and_signed_zeros_apart() -> None:
    quote = Quote("deribit", "BTC", "X", 0, 1.0, True, 1.0, 2.0, 3.0, 4.0, 0, 0)
    replace = msgspec.structs.replace
    assert _same(quote, replace(quote))
    assert not _same(quote, replace(quote, bid_iv=math.inf))  # NaN (default) vs inf
    assert not _same(replace(quote, bid_price=0.0), replace(quote, bid_price=-0.0))
    assert not _same(quote, replace(quote, expiry_ts_ms=0.0))  # int vs float


def test_native_fast_path_is_built_where_there_is_a_compiler() -> None:
    # CI and the dev install have gcc: a silently failed build would make every
    # other test here skip and the decoder quietly slower.
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler on this machine")
    assert native_fast_path(_cache()) is not None


def test_every_real_frame_gives_the_reference_result_and_none_is_declined() -> None:
    native, reference = _paths()
    golden = rows()
    assert len(golden) > 150
    for row in golden:
        expected = reference(row.raw, row.received_ts_ns)
        got = native(row.raw, row.received_ts_ns)
        assert expected is not None, row.raw[:120]
        assert got is not None, f"declined a real frame: {row.raw[:120]!r}"
        assert _same(got, expected), row.raw[:120]


def test_bundled_recording_decodes_identically_through_both_decoders() -> None:
    fast, pure = DeribitDecoder(native=True), DeribitDecoder(native=False)
    n = 0
    for ts, raw in islice(read_tickfile(BUNDLED), 5000):
        assert msgspec.json.encode(fast.decode(raw, ts)) == msgspec.json.encode(
            pure.decode(raw, ts))
        n += 1
    assert n == 5000


def _frame(data: dict[str, Any], **envelope: Any) -> bytes:
    msg = {"jsonrpc": "2.0", "method": "subscription",
           "params": {"channel": "ticker.X.100ms", "data": data}, **envelope}
    return json.dumps(msg, separators=(",", ":")).encode()


BASE = {"underlying_price": 95017.36, "timestamp": 1732881600005, "state": "open",
        "mark_iv": 63.82, "instrument_name": "BTC-30NOV24-97000-C", "index_price": 95000.0,
        "greeks": {"vega": 14.5, "delta": 0.25}, "bid_iv": 61.35, "best_bid_price": 0.0042,
        "best_bid_amount": 3.8, "best_ask_price": 0.0049, "best_ask_amount": 2.9,
        "ask_iv": 65.93, "stats": {"volume": 12.3, "low": None}}


@pytest.mark.parametrize(("change", "reason"), [
    ({"state": "closed"}, "expired"),
    ({"underlying_price": None}, "no_underlying_price"),
    ({"underlying_price": 0}, "no_underlying_price"),
    ({"underlying_price": -1.5}, "no_underlying_price"),
    ({"best_bid_price": -0.001}, "negative_price"),
    ({"best_ask_price": -0.001}, "negative_price"),
    ({"best_bid_price": 0.005, "best_ask_price": 0.004}, "crossed"),
    ({"instrument_name": "BTC-STRD-27DEC24-100000"}, "combo"),
    ({"instrument_name": "BTC-PERPETUAL"}, "not_option"),
    ({"instrument_name": "what"}, "unknown_instrument"),
])
def test_rejects_give_the_reference_reason(change: dict[str, Any], reason: str) -> None:
    native, reference = _paths()
    frame = _frame({**BASE, **change})
    assert reference(frame, TS) == reason
    assert native(frame, TS) == reason


@pytest.mark.parametrize("frame", [
    _frame({**BASE, "instrument_name": "BTC-30NOV24-97000-\\u0043"}),  # an escape
    _frame(BASE).replace(b'"state":"open"', b'"state":"open","state":"open"'),  # duplicate
    _frame(BASE, id=None),  # a response member
    _frame({**BASE, "note": "café"}),  # json.dumps escapes it: still an escape
    _frame(BASE).replace(b'"low":null', "\"low\":\"caf\u00e9\"".encode()),  # raw UTF-8
    _frame({**BASE, "deep": json.loads("[" * 40 + "]" * 40)}),  # deeper than 32
    _frame({**BASE, "mark_iv": 1}).replace(b'"mark_iv":1,', b'"mark_iv":1e999,'),  # inf
    _frame({**BASE, "timestamp": 10**19}),  # more than 19 digits... and over 2**63 - 1
    _frame({**BASE, "mark_iv": 10**19}),  # an integer of more than 19 digits
])
def test_unusual_frames_are_declined_and_the_decoder_still_agrees(frame: bytes) -> None:
    native, _ = _paths()
    assert native(frame, TS) is None
    fast, pure = DeribitDecoder(native=True), DeribitDecoder(native=False)
    assert msgspec.json.encode(fast.decode(frame, TS)) == msgspec.json.encode(
        pure.decode(frame, TS))


def test_a_bounded_instrument_memory_still_quotes_every_name() -> None:
    from streamer.sources.deribit._fast_path import TickerQuoter
    native = TickerQuoter(Quote, _cache(), "deribit", max_known=2)
    reference = MsgspecFastPath(_cache())
    for strike in range(90_000, 90_050):
        frame = _frame({**BASE, "instrument_name": f"BTC-30NOV24-{strike}-P"})
        assert _same(native(frame, TS), reference(frame, TS))


def test_non_bytes_are_declined_and_wrong_calls_are_type_errors() -> None:
    native, _ = _paths()
    assert native(_frame(BASE).decode(), TS) is None  # type: ignore[arg-type]
    assert native(bytearray(_frame(BASE)), TS) is None  # type: ignore[arg-type]
    call: Callable[..., object] = native
    with pytest.raises(TypeError, match="frame, received_ts_ns"):
        call(_frame(BASE))


# Numbers: the JSON grammar, with up to 25 digits either side and any exponent, in
# every float field. The native path must agree with the reference (which is
# msgspec's correctly rounded parse) or decline; and plain numbers are never declined.
NUMBER = st.from_regex(r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?",
                       fullmatch=True)
FLOAT_FIELDS = ["underlying_price", "mark_iv", "index_price", "bid_iv", "best_bid_price",
                "best_bid_amount", "best_ask_price", "best_ask_amount", "ask_iv"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FLOAT_FIELDS), number=NUMBER)
def test_numbers_read_as_the_reference_reads_them(field: str, number: str) -> None:
    native, reference = _paths()
    frame = _frame({**BASE, field: 12345.0}).replace(
        f'"{field}":12345.0'.encode(), f'"{field}":{number}'.encode())
    expected, got = reference(frame, TS), native(frame, TS)
    value = float(number)
    if math.isinf(value) or ("." not in number and "e" not in number.lower()
                             and len(number.lstrip("-")) > 19):
        assert got is None  # out of range, or an integer too long: declined
        return
    assert got is not None, number
    assert _same(got, expected), (number, got, expected)


@settings(max_examples=200, deadline=None)
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_any_double_round_trips_through_its_shortest_repr(value: float) -> None:
    native, reference = _paths()
    frame = _frame({**BASE, "best_bid_amount": value})
    got = native(frame, TS)
    assert got is not None
    assert _same(got, reference(frame, TS))


# Whole payloads: fields present or not, any order, null/zero/negative/int/float
# values, unknown members with nested JSON, and whitespace between tokens.
JSON_LEAF = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(
    allow_nan=False, allow_infinity=False) | st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'),
    max_size=12)
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(alphabet="abcdefgh_", min_size=1, max_size=8), inner, max_size=3), max_leaves=8)
PRICE = st.none() | st.just(0) | st.just(0.0) | st.floats(-1.0, 2.0) | st.integers(-3, 3)
NAMES = st.sampled_from(["BTC-30NOV24-97000-C", "ETH-8JUN20-250-P", "MATIC_USDC-9MAR24-1d02-C",
                         "BTC-STRD-27DEC24-100000", "BTC-PERPETUAL", "SOL_USDC-31JAN25-200-P",
                         "BTC-31FEB24-1000-C", "x"])


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {"timestamp": draw(st.integers(0, 2**62)),
                            "instrument_name": draw(NAMES)}
    for field in FLOAT_FIELDS:
        if draw(st.booleans()):
            data[field] = draw(PRICE if "price" in field else st.none() | st.floats(0, 300))
    if draw(st.booleans()):
        data["state"] = draw(st.sampled_from(["open", "closed", "settled"]))
    extra = st.sampled_from(["greeks", "stats", "last_price", "open_interest", "zz"])
    data.update(draw(st.dictionaries(extra, JSON_VALUE, max_size=3)))
    items = list(data.items())
    order = draw(st.permutations(range(len(items))))
    return dict(items[i] for i in order)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=payloads(), indent=st.sampled_from([None, 0, 2]), spaced=st.booleans())
def test_generated_payloads_agree_and_are_never_declined(data: dict[str, Any],
                                                         indent: int | None,
                                                         spaced: bool) -> None:
    native, reference = _paths()
    msg = {"params": {"data": data, "channel": "ticker.X.raw"}, "method": "subscription"}
    frame = json.dumps(msg, indent=indent,
                       separators=(", ", " : ") if spaced else (",", ":")).encode()
    expected, got = reference(frame, TS), native(frame, TS)
    assert expected is not None
    assert got is not None, frame[:200]
    assert _same(got, expected), (got, expected)


@settings(max_examples=500, deadline=None)
@given(cut=st.integers(0, 800), insert=st.binary(max_size=4), drop=st.integers(0, 6))
def test_mangled_real_frames_agree_or_are_declined(cut: int, insert: bytes, drop: int) -> None:
    native, reference = _paths()
    raw = rows()[cut % 150].raw
    at = cut % (len(raw) + 1)
    mangled = raw[:at] + insert + raw[at + drop:]
    got = native(mangled, TS)
    if got is not None:
        expected = reference(mangled, TS)
        assert expected is not None, mangled
        assert _same(got, expected)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_and_are_declined_or_agree(raw: bytes) -> None:
    native, reference = _paths()
    got = native(raw, TS)
    assert got is None or _same(got, reference(raw, TS))
