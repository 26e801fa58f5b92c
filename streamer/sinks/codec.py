"""The ``vol.surface.v1`` wire encoding: JSON by default, msgpack as a setting.

JSON has no NaN: non-finite floats are published as ``null`` and decoded back to
NaN, so a consumer sees "no value" rather than an invalid document.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec

from streamer.sinks.null_floats import (
    OPTIONAL_OBJECTS,
    native_nulls_as_nan,
    python_nulls_as_nan,
    strings_came_through,
)
from streamer.types import SCHEMA_NAME, DynamicsState, SurfaceUpdate

Format = Literal["json", "msgpack"]
SCHEMA_HEADER: tuple[str, bytes] = ("schema", SCHEMA_NAME.encode())

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


# One lax typed decode of the message with its float nulls as "nan" (null_floats); lax
# also reads a number sent as a string ("42"), which our encoder never writes. What
# that decode refuses (or where the Python rewrite hit a string field) takes the exact
# path below: a generic parse, nulls to NaN, a strict convert, and its precise error.
_lax_json_decoder = msgspec.json.Decoder(SurfaceUpdate, strict=False)
_msgpack_decoder = msgspec.msgpack.Decoder(SurfaceUpdate)


def encode_surface(update: SurfaceUpdate, fmt: Format = "json") -> bytes:
    """Serialise one surface."""
    if fmt == "msgpack":
        return _msgpack_encoder.encode(update)
    return _json_encoder.encode(update)


def decode_surface(data: bytes, fmt: Format = "json") -> SurfaceUpdate:
    """Parse one surface; ``null`` floats become NaN (one typed decode for JSON)."""
    if fmt == "msgpack":
        return _msgpack_decoder.decode(data)
    try:
        update = _one_typed_decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        update = None  # the exact path below gives the precise error
    if update is not None:
        return update
    raw = msgspec.json.decode(data)
    return msgspec.convert(_nulls_to_nan(raw), SurfaceUpdate)


def _one_typed_decode(data: bytes) -> SurfaceUpdate | None:
    lax = native_nulls_as_nan(data)
    if lax is not None:  # non-float fields' nulls kept: nothing became a "nan" string
        return _lax_json_decoder.decode(lax)
    update = _lax_json_decoder.decode(python_nulls_as_nan(data))
    return update if strings_came_through(update) else None


def decode_dynamics_state(data: bytes) -> DynamicsState:
    """A ``vol.dynamics.v1`` value (JSON, NaN as null) back into ``DynamicsState``."""
    return msgspec.convert(_nulls_to_nan(msgspec.json.decode(data)), DynamicsState)


def _nulls_to_nan(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (math.nan if v is None and k not in OPTIONAL_OBJECTS else _nulls_to_nan(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nulls_to_nan(v) for v in obj]
    return obj


def surface_json_schema() -> dict[str, Any]:
    """JSON Schema of the published message, generated from the msgspec type.

    Every ``number`` also admits ``null``: that is how a NaN is published, and how a
    NaN default is written (JSON has no NaN).
    """
    schema: dict[str, Any] = msgspec.json.schema(SurfaceUpdate)
    _numbers_nullable(schema)
    return schema


def _numbers_nullable(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "number":
            node["type"] = ["number", "null"]
        default = node.get("default")
        if isinstance(default, float) and not math.isfinite(default):
            node["default"] = None
        for value in node.values():
            _numbers_nullable(value)
    elif isinstance(node, list):
        for value in node:
            _numbers_nullable(value)
