"""The JSON surface's nulls as "nan": the native scan against its rule and the Python
path, and the codec's decode on both against the exact (generic) decode."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.models.heston import HestonParams
from streamer.core.models.sabr import SABRParams
from streamer.core.models.ssvi import SSVISlice
from streamer.core.models.svi import SVIParams
from streamer.core.tenors import TenorView
from streamer.sinks import codec, null_floats
from streamer.sinks.codec import decode_surface, encode_surface
from streamer.types import Dynamics, SurfaceUpdate, VarianceIndex
from tests.sinks.surfaces import make_slice, make_surface, same

NAN = math.nan
KEEP = (b"venue", b"dynamics", b"n_obs")
needs_native = pytest.mark.skipif(null_floats._NATIVE is None,
                                  reason="the C scan was not built")


def _native(data: bytes, keep: tuple[bytes, ...] = KEEP) -> bytes | None:
    """The C scan with 32-byte (AVX2) blocks where the CPU has them, and with 16-byte
    (SSE2) blocks alone: the two must agree."""
    from streamer.sinks import _null_floats  # type: ignore[attr-defined]
    results = []
    for avx2 in (True, False):
        was = _null_floats._use_avx2(avx2)
        try:
            results.append(_null_floats.nulls_as_nan(data, keep))
        finally:
            _null_floats._use_avx2(was)
    assert results[0] == results[1]
    result: bytes | None = results[0]
    return result


def _rule(doc: Any, keep: tuple[bytes, ...] = KEEP) -> Any:
    """The contract on parsed JSON: a member's null is "nan" unless its key is kept."""
    names = {k.decode() for k in keep}
    if isinstance(doc, dict):
        return {k: ("nan" if v is None and k not in names else _rule(v, keep))
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [_rule(v, keep) for v in doc]
    return doc


# -- which keys keep their null: derived from the published types ------------------------------

def _fields(root: type) -> Iterator[tuple[type, frozenset[str], str, mi.Type]]:
    """Each field of each Struct reachable from ``root``: the Struct, its wire keys, the
    field's wire name and type."""
    seen: set[type] = set()

    def visit(t: mi.Type) -> Iterator[tuple[type, frozenset[str], str, mi.Type]]:
        if isinstance(t, mi.StructType) and t.cls not in seen:
            seen.add(t.cls)
            keys = frozenset(f.encode_name for f in t.fields)
            for f in t.fields:
                yield t.cls, keys, f.encode_name, f.type
                yield from visit(f.type)
        for inner in ("item_type", "value_type"):
            if hasattr(t, inner):
                yield from visit(getattr(t, inner))
        for option in getattr(t, "types", ()):
            yield from visit(option)
    yield from visit(mi.type_info(root))


FIELDS = list(_fields(SurfaceUpdate))


def _set_in(doc: Any, keys: frozenset[str], name: str, value: Any) -> None:
    """``name`` = ``value`` in every object of ``doc`` that is the Struct with ``keys``."""
    if isinstance(doc, dict):
        if set(doc) == keys:
            doc[name] = value
        for v in doc.values():
            _set_in(v, keys, name, value)
    elif isinstance(doc, list):
        for v in doc:
            _set_in(v, keys, name, value)


def test_every_string_int_and_optional_field_keeps_its_null_and_no_float_does() -> None:
    kept = {k.decode() for k in null_floats.KEEP_NULL}
    for _, _, name, t in FIELDS:
        assert (name in kept) == (not isinstance(t, mi.FloatType)), name
    assert {"venue", "underlying", "expiry", "fit_status", "model", "fallback_reason",
            "near_expiry", "next_expiry", "dynamics", "variance_index", "seq"} <= kept
    assert {"spot", "rr25", "calendar_margin", "ssr", "venue_vol"} <= null_floats.FLOAT_FIELDS
    assert not null_floats.FLOAT_FIELDS & null_floats.OTHER_FIELDS  # every float null: one pass


def test_no_models_parameter_is_a_kept_name() -> None:
    """A NaN parameter (a dict entry) then takes the one-decode path too."""
    names = {name for params in (SVIParams, SABRParams, HestonParams, SSVISlice)
             for name in params.__struct_fields__}
    assert names >= {"a", "alpha", "kappa", "theta", "phi"}
    assert not names & {k.decode() for k in null_floats.KEEP_NULL}


@pytest.mark.parametrize(("keys", "name"), [
    pytest.param(keys, name, id=f"{cls.__name__}.{name}")
    for cls, keys, name, t in FIELDS if isinstance(t, mi.StrType)])
def test_the_python_paths_string_check_reads_every_string_field(
        keys: frozenset[str], name: str) -> None:
    doc = json.loads(encode_surface(_full_surface()))
    _set_in(doc, keys, name, "nan")
    data = null_floats.python_nulls_as_nan(json.dumps(doc, separators=(",", ":")).encode())
    back = codec._lax_json_decoder.decode(data)
    assert not null_floats.strings_came_through(back)
    assert null_floats.strings_came_through(_full_surface())


# -- the native scan ------------------------------------------------------------------------------

@needs_native
@pytest.mark.parametrize(("data", "expected"), [
    (b'{"a":null}', b'{"a":"nan"}'),
    (b'{ "a" :\n null , "b":null}', b'{ "a" :\n "nan" , "b":"nan"}'),
    (b'{"venue":null,"x":null,"dynamics":null}', b'{"venue":null,"x":"nan","dynamics":null}'),
    (b'{"a":{"b":null},"c":[{"d":null}]}', b'{"a":{"b":"nan"},"c":[{"d":"nan"}]}'),
    (b'[null,{"a":[null]}]', b'[null,{"a":[null]}]'),  # not a member's value
    (b'{"a":"x:null","b":"null"}', b'{"a":"x:null","b":"null"}'),  # inside strings
    (b'{"a":":null,","b":" : null}"}', b'{"a":":null,","b":" : null}"}'),
    (b'{"a":nullx,"b":nul}', b'{"a":nullx,"b":nul}'),  # not a whole token
    (b'{"":null}', b'{"":"nan"}'),
    (b':null', b':null'),
    (b'{"a":null', b'{"a":"nan"'),  # still invalid: msgspec says so
])
def test_native_rewrites_exactly_the_members_nulls(data: bytes, expected: bytes) -> None:
    assert _native(data) == expected


@needs_native
def test_native_declines_escapes_and_returns_an_unchanged_message_itself() -> None:
    assert _native(b'{"a":"say \\"hi\\":null","b":null}') is None
    assert _native(b'{"a":null}' + b" " * 50 + b"\\") is None  # in the vector blocks too
    data = b'{"a":1.5,"b":"null"}' * 10
    assert null_floats.native_nulls_as_nan(data) is data


@needs_native
@pytest.mark.parametrize("offset", range(70))
def test_native_finds_a_null_at_every_offset_of_its_blocks(offset: int) -> None:
    head = b'{"pad":"' + b"x" * offset + b'",'
    for value in (b'":null,"', b'" : null}"', b"null"):
        data = head + b'"a":' + value + b',"b":[1,2,null],"c":null}'
        assert json.loads(_native(data) or b"") == _rule(json.loads(data))


_keys = st.sampled_from(["a", "venue", "dynamics", "n_obs", "x:null", "null", ""])
_strings = st.text(alphabet=st.sampled_from('abn:ul, {}[]"\\\né'), max_size=8)
_leaves = st.none() | st.floats(allow_nan=False, allow_infinity=False) | _strings | st.booleans()
_docs = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(_keys, inner, max_size=5), max_leaves=25)


@needs_native
@settings(max_examples=400, deadline=None)
@given(doc=_docs, indent=st.sampled_from([None, 1]), ascii_only=st.booleans())
def test_native_follows_the_rule_on_any_json(doc: Any, indent: int | None,
                                             ascii_only: bool) -> None:
    data = json.dumps(doc, indent=indent, ensure_ascii=ascii_only).encode()
    out = _native(data)
    if b"\\" in data:
        assert out is None
    else:
        assert out is not None
        assert json.loads(out) == _rule(doc)


def _valid(data: bytes) -> bool:
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError:
        return False
    return True


@needs_native
@settings(max_examples=400, deadline=None)
@given(doc=_docs, at=st.integers(0, 10_000), edit=st.sampled_from(
    [b"", b'"', b":", b",", b"{", b"}", b"[", b"]", b"n", b"null", b" "]))
def test_native_keeps_an_invalid_message_invalid(doc: Any, at: int, edit: bytes) -> None:
    data = json.dumps(doc, ensure_ascii=True).encode()
    at %= len(data) + 1
    broken = data[:at] + edit + data[at + 1:]  # one byte replaced (or deleted)
    out = _native(broken)
    if out is not None:
        assert _valid(out) == _valid(broken)


# -- the codec on both paths against the exact decode ---------------------------------------------

@pytest.fixture(params=["native", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "native" and null_floats._NATIVE is None:
        pytest.skip("the C scan was not built")
    if request.param == "python":
        monkeypatch.setattr(null_floats, "_NATIVE", None)
    return str(request.param)


def _full_surface() -> SurfaceUpdate:
    """Every Struct of the message present, NaNs in each."""
    by = Dynamics(ssr=NAN, spot_vol_beta=0.1, r2=NAN, n_obs=3, regime="unknown", tenor_days=7.0)
    tenor = TenorView(tenor_days=30.0, t=0.08, forward=96_000.0, atm_vol=0.55, atm_skew=NAN,
                      rr25=-0.03, bf25=0.006, rr10=NAN, bf10=0.02,
                      delta_vols={"25P": 0.6, "ATM": NAN}, extrapolated=True)
    index = VarianceIndex(tenor_days=30.0, vol=0.58, near_expiry="2024-12-06T08:00:00Z",
                          next_expiry="2024-12-27T08:00:00Z", n_strikes=14, venue_vol=NAN)
    return make_surface(
        params={"theta": NAN}, tenors=[tenor], variance_index=index,
        dynamics=Dynamics(ssr=1.3, spot_vol_beta=NAN, r2=0.41, n_obs=120,
                          regime="sticky_moneyness", by_expiry=[by]),
        slices=[*make_surface().slices,
                make_slice("2025-01-31T08:00:00Z", 1_738_310_400_000, jw={"v": NAN},
                           params_se={"a": NAN}, fit_status="max_iter", model="svi",
                           fallback_reason="rmse_too_high", status="cold")])


def _exact(data: bytes) -> SurfaceUpdate | type[msgspec.ValidationError]:
    try:
        return msgspec.convert(codec._nulls_to_nan(msgspec.json.decode(data)), SurfaceUpdate)
    except msgspec.ValidationError:
        return msgspec.ValidationError


@pytest.mark.parametrize(("keys", "name"), [
    pytest.param(keys, name, id=f"{cls.__name__}.{name}") for cls, keys, name, _ in FIELDS])
def test_a_null_in_any_field_decodes_as_the_exact_path_does(
        keys: frozenset[str], name: str, path: str) -> None:
    doc = json.loads(encode_surface(_full_surface()))
    _set_in(doc, keys, name, None)
    data = json.dumps(doc, separators=(",", ":")).encode()
    expected = _exact(data)
    if expected is msgspec.ValidationError:
        with pytest.raises(msgspec.ValidationError):
            decode_surface(data)
    else:
        assert isinstance(expected, SurfaceUpdate)
        assert same(decode_surface(data), expected)


def test_every_float_null_is_nan_and_every_optional_null_none(path: str) -> None:
    update = _full_surface()
    back = decode_surface(encode_surface(update))
    assert same(back, update)  # NaN where NaN, in every Struct and dict
    assert math.isnan(back.tenors[0].delta_vols["ATM"])
    assert back.dynamics is not None
    assert math.isnan(back.dynamics.by_expiry[0].ssr)
    assert back.variance_index is not None
    assert math.isnan(back.variance_index.venue_vol)
    bare = msgspec.structs.replace(update, dynamics=None, variance_index=None)
    back = decode_surface(encode_surface(bare))
    assert (back.dynamics, back.variance_index) == (None, None)


def test_escaped_strings_take_the_python_path_and_survive(path: str) -> None:
    update = make_surface(underlying='B"T\\C:null', slices=[make_slice(
        "2024-12-06T08:00:00Z", 1_733_472_000_000, rr25=NAN, fallback_reason="a\nb")])
    assert same(decode_surface(encode_surface(update)), update)


def test_the_native_path_decodes_once_without_the_string_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    if null_floats._NATIVE is None:
        pytest.skip("the C scan was not built")

    def refuse(update: Any) -> bool:
        raise AssertionError("checked")
    monkeypatch.setattr(codec, "strings_came_through", refuse)
    assert same(decode_surface(encode_surface(_full_surface())), _full_surface())



class _Inner(msgspec.Struct):
    x: float


class _Outer(msgspec.Struct):
    a: float
    name: str | None = None
    extra: _Inner | None = None


def test_the_optional_objects_are_read_off_the_types() -> None:
    """A field added as ``Struct | None`` keeps its null as None on the Python path and
    the exact path without anyone listing it by hand."""
    from streamer.sinks.null_floats import OPTIONAL_OBJECTS, _optional_objects

    assert _optional_objects(_Outer) == ("extra",)
    assert set(OPTIONAL_OBJECTS) == {"dynamics", "variance_index"}
