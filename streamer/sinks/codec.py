"""The ``vol.surface.v1`` wire encoding: JSON by default, msgpack as a setting.

JSON has no NaN: non-finite floats are published as ``null`` and decoded back to
NaN, so a consumer sees "no value" rather than an invalid document.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec

from streamer.types import SCHEMA_NAME, SurfaceUpdate

Format = Literal["json", "msgpack"]
SCHEMA_HEADER: tuple[str, bytes] = ("schema", SCHEMA_NAME.encode())

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


def _nan_from_null(type_: type, obj: Any) -> Any:
    if type_ is float and obj is None:
        return math.nan
    raise NotImplementedError


_json_decoder = msgspec.json.Decoder(SurfaceUpdate, dec_hook=_nan_from_null)
_msgpack_decoder = msgspec.msgpack.Decoder(SurfaceUpdate)


def encode_surface(update: SurfaceUpdate, fmt: Format = "json") -> bytes:
    """Serialise one surface."""
    if fmt == "msgpack":
        return _msgpack_encoder.encode(update)
    return _json_encoder.encode(update)


def decode_surface(data: bytes, fmt: Format = "json") -> SurfaceUpdate:
    """Parse one surface; ``null`` floats become NaN."""
    if fmt == "msgpack":
        return _msgpack_decoder.decode(data)
    try:
        return _json_decoder.decode(data)
    except msgspec.ValidationError:
        # null where a float is declared: msgspec does not call dec_hook for builtins.
        raw = msgspec.json.decode(data)
        return msgspec.convert(_nulls_to_nan(raw), SurfaceUpdate)


_OPTIONAL_OBJECTS = ("dynamics", "variance_index")


def _nulls_to_nan(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (math.nan if v is None and k not in _OPTIONAL_OBJECTS else _nulls_to_nan(v))
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
