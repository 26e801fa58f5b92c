"""The vol.surface.v1 wire encoding: round trips, NaN <-> null, header, JSON Schema."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.app.file_replay import replay_file
from streamer.config import load_config
from streamer.devtools.exchanges import bundled_sample
from streamer.sinks.base import MemorySink
from streamer.sinks.codec import (
    SCHEMA_HEADER,
    decode_surface,
    encode_surface,
    surface_json_schema,
)
from streamer.tickfile import TickFileWriter, read_tickfile
from streamer.types import SCHEMA_NAME, SCHEMA_VERSION, Dynamics, VarianceIndex
from tests.sinks.surfaces import make_slice as _slice
from tests.sinks.surfaces import make_surface as _surface
from tests.sinks.surfaces import same as _same

NAN = math.nan


def test_schema_header_names_the_contract() -> None:
    assert SCHEMA_HEADER == ("schema", b"vol.surface.v1")
    assert SCHEMA_NAME == "vol.surface.v1"
    assert SCHEMA_VERSION == 1


def test_key_is_venue_colon_underlying() -> None:
    assert _surface().key == "deribit:BTC"
    assert _surface(venue="okx", underlying="ETH").key == "okx:ETH"


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_round_trip_keeps_every_field_including_nan(fmt: str) -> None:
    update = _surface()
    back = decode_surface(encode_surface(update, fmt), fmt)  # type: ignore[arg-type]
    assert _same(back, update)
    assert math.isnan(back.slices[1].rr25)
    assert math.isnan(back.slices[1].params["b"])
    assert back.dynamics is not None
    assert math.isnan(back.dynamics.spot_vol_beta)
    assert back.slices[0].rr25 == -0.034
    assert type(back.exchange_ts_ms) is int
    assert type(back.slices[0].n_quotes) is int


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_round_trip_without_dynamics_keeps_none(fmt: str) -> None:
    update = _surface(dynamics=None)
    back = decode_surface(encode_surface(update, fmt), fmt)  # type: ignore[arg-type]
    assert back.dynamics is None
    assert _same(back, update)


def test_json_writes_nan_as_null_and_nothing_non_standard() -> None:
    data = encode_surface(_surface())
    assert b"NaN" not in data
    assert b"Infinity" not in data
    doc = json.loads(data)  # a strict consumer parses it
    late = doc["slices"][1]
    assert late["rr25"] is None
    assert late["bf25"] is None
    assert late["params"]["b"] is None
    assert doc["dynamics"]["spot_vol_beta"] is None
    assert doc["slices"][0]["rr25"] == -0.034
    assert doc["schema_version"] == 1


def test_json_with_all_finite_values_decodes_on_the_fast_path() -> None:
    finite = _surface(slices=[_slice("2024-12-06T08:00:00Z", 1_733_472_000_000)],
                      dynamics=None)
    data = encode_surface(finite)
    assert b"null" in data  # only dynamics
    assert _same(decode_surface(data), finite)


def test_msgpack_is_smaller_than_json_and_not_interchangeable() -> None:
    update = _surface()
    packed, text = encode_surface(update, "msgpack"), encode_surface(update, "json")
    assert len(packed) < len(text)
    with pytest.raises(msgspec.DecodeError):
        decode_surface(packed, "json")


def test_invalid_json_message_raises_a_decode_error() -> None:
    doc = json.loads(encode_surface(_surface()))
    del doc["venue"]
    with pytest.raises(msgspec.ValidationError):
        decode_surface(json.dumps(doc).encode())


_maybe_nan = st.floats(allow_infinity=False) | st.just(NAN)


@settings(max_examples=200, deadline=None)
@given(rr25=_maybe_nan, spot=_maybe_nan, param=_maybe_nan, ssr=_maybe_nan)
def test_json_and_msgpack_round_trips_hold_for_any_finite_or_nan_float(
        rr25: float, spot: float, param: float, ssr: float) -> None:
    update = _surface(spot=spot, params={"theta": param},
                      slices=[_slice("2024-12-06T08:00:00Z", 1_733_472_000_000, rr25=rr25)],
                      dynamics=Dynamics(ssr=ssr, spot_vol_beta=0.1, r2=0.2, n_obs=3,
                                        regime="unknown"))
    for fmt in ("json", "msgpack"):
        assert _same(decode_surface(encode_surface(update, fmt), fmt), update)  # type: ignore[arg-type]


# -- JSON Schema: a small validator for the subset msgspec generates ----------------------------

def _is_type(value: Any, name: str) -> bool:
    checks = {
        "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool)}
    return checks[name](value)


def _validate(value: Any, node: dict[str, Any], root: dict[str, Any], path: str) -> list[str]:
    """Errors of ``value`` against ``node`` ($ref, anyOf, type, enum, properties, items)."""
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        return _validate(value, root["$defs"][name], root, path)
    if "anyOf" in node:
        if any(not _validate(value, option, root, path) for option in node["anyOf"]):
            return []
        return [f"{path}: matches no anyOf option"]
    errors: list[str] = []
    if "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not any(_is_type(value, t) for t in types):
            return [f"{path}: {value!r} is not {types}"]
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{path}: {value!r} not in {node['enum']}")
    if isinstance(value, dict):
        errors += [f"{path}.{k}: required" for k in node.get("required", []) if k not in value]
        props = node.get("properties", {})
        for key, item in value.items():
            sub = props.get(key, node.get("additionalProperties"))
            if isinstance(sub, dict):
                errors += _validate(item, sub, root, f"{path}.{key}")
    if isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            errors += _validate(item, node["items"], root, f"{path}[{i}]")
    return errors


def test_schema_requires_the_contract_fields() -> None:
    schema = surface_json_schema()
    top = schema["$defs"]["SurfaceUpdate"]
    assert set(top["required"]) == {"venue", "underlying", "model", "seq", "exchange_ts_ms",
                                    "received_ts_ns", "published_ts_ns", "spot", "params",
                                    "slices"}
    assert set(top["properties"]) >= set(top["required"]) | {"schema_version", "dynamics"}
    assert set(schema["$defs"]["SliceUpdate"]["required"]) == {
        "expiry", "expiry_ts_ms", "t", "forward", "params", "atm_vol", "atm_skew", "rr25",
        "bf25", "rmse_vol", "n_quotes", "status", "butterfly_free", "calendar_free"}


def test_the_validator_catches_a_broken_message() -> None:
    schema = surface_json_schema()
    doc = json.loads(encode_surface(_surface()))
    doc["slices"][0]["status"] = "bogus"
    doc["seq"] = "42"
    del doc["spot"]
    errors = _validate(doc, schema, schema, "$")
    assert any(".status" in e for e in errors)
    assert any("$.seq" in e for e in errors)
    assert "$.spot: required" in errors


def test_schema_validates_a_real_encoded_message_with_nan_as_null() -> None:
    schema = surface_json_schema()
    doc = json.loads(encode_surface(_surface()))
    assert _validate(doc, schema, schema, "$") == []
    no_dynamics = json.loads(encode_surface(_surface(dynamics=None)))
    assert _validate(no_dynamics, schema, schema, "$") == []


async def test_schema_validates_surfaces_from_the_real_pipeline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    head = tmp_path / "head.ndjson.gz"
    with TickFileWriter(head) as writer:
        for line in itertools.islice(read_tickfile(bundled_sample()), 3000):
            writer.write(line.received_ts_ns, line.raw)
    sink = MemorySink()
    assert await replay_file(head, load_config(None, env={}), sink) > 0
    schema = surface_json_schema()
    _no_second_parse(monkeypatch)  # every real surface, nulls and all: one typed decode
    for update in sink.updates:
        doc = json.loads(encode_surface(update))
        assert _validate(doc, schema, schema, "$") == []
        assert _same(decode_surface(encode_surface(update)), update)


# -- one typed decode: nulls read as NaN without the generic second parse -----------------------

def _no_second_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(obj: Any) -> Any:
        raise AssertionError("decoded twice")
    monkeypatch.setattr("streamer.sinks.codec._nulls_to_nan", refuse)


def test_a_surface_with_nulls_decodes_in_one_typed_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    update = _surface()
    data = encode_surface(update)
    assert b"null" in data
    _no_second_parse(monkeypatch)
    back = decode_surface(data)
    assert _same(back, update)
    assert math.isnan(back.slices[1].params["b"])
    assert back.slices[0].rr25 == -0.034


def test_null_optional_objects_stay_none_on_the_fast_path(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    update = _surface(dynamics=None, variance_index=None)
    data = encode_surface(update)
    _no_second_parse(monkeypatch)
    back = decode_surface(data)
    assert back.dynamics is None
    assert back.variance_index is None
    assert _same(back, update)


@pytest.mark.parametrize("text", ["nan", "a:null", "x,null", "[null"])
def test_strings_that_look_like_the_rewrite_survive(text: str) -> None:
    update = _surface(underlying=text, slices=[
        _slice("2024-12-06T08:00:00Z", 1_733_472_000_000, status="warm", rr25=NAN)])
    back = decode_surface(encode_surface(update))
    assert back.underlying == text
    assert _same(back, update)


@pytest.mark.parametrize("field", ["venue", "underlying"])
def test_null_in_a_string_field_is_still_a_validation_error(field: str) -> None:
    doc = json.loads(encode_surface(_surface()))
    doc[field] = None
    with pytest.raises(msgspec.ValidationError):
        decode_surface(json.dumps(doc, separators=(",", ":")).encode())


def test_null_slice_expiry_is_a_validation_error() -> None:
    doc = json.loads(encode_surface(_surface()))
    doc["slices"][0]["expiry"] = None
    with pytest.raises(msgspec.ValidationError):
        decode_surface(json.dumps(doc, separators=(",", ":")).encode())


def test_pretty_printed_json_with_nulls_still_decodes() -> None:
    update = _surface()
    data = json.dumps(json.loads(encode_surface(update)), indent=2).encode()
    assert _same(decode_surface(data), update)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_a_fallback_slice_keeps_its_model_and_reason_through_the_wire(fmt: str) -> None:
    update = _surface(model="heston", slices=[
        _slice("2024-12-06T08:00:00Z", 1_733_472_000_000, model="svi",
               fallback_reason="atm_off_market", status="cold")])
    back = decode_surface(encode_surface(update, fmt), fmt)  # type: ignore[arg-type]
    assert (back.slices[0].model, back.slices[0].fallback_reason) == ("svi", "atm_off_market")
    assert back.slices[0].model_of(back.model) == "svi"


def test_a_message_from_before_the_fallback_fields_decodes_to_the_surface_model() -> None:
    doc = json.loads(encode_surface(_surface(model="heston")))
    for s in doc["slices"]:
        del s["model"], s["fallback_reason"]
    back = decode_surface(json.dumps(doc, separators=(",", ":")).encode())
    assert [(s.model, s.fallback_reason) for s in back.slices] == [("", "")] * 2
    assert back.slices[0].model_of(back.model) == "heston"


@pytest.mark.parametrize("field", ["model", "fallback_reason", "fit_status", "expiry"])
def test_null_in_a_slice_string_field_is_still_a_validation_error(field: str) -> None:
    doc = json.loads(encode_surface(_surface()))
    doc["slices"][0][field] = None
    with pytest.raises(msgspec.ValidationError):
        decode_surface(json.dumps(doc, separators=(",", ":")).encode())


@pytest.mark.parametrize("field", ["near_expiry", "next_expiry"])
def test_null_in_a_variance_index_string_field_is_a_validation_error(field: str) -> None:
    index = VarianceIndex(tenor_days=30.0, vol=0.58, near_expiry="2024-12-06T08:00:00Z",
                          next_expiry="2024-12-27T08:00:00Z", n_strikes=14)
    doc = json.loads(encode_surface(_surface(variance_index=index)))
    doc["variance_index"][field] = None
    with pytest.raises(msgspec.ValidationError):
        decode_surface(json.dumps(doc, separators=(",", ":")).encode())
