"""The ``vol.surface.v1`` wire encoding: JSON by default, msgpack as a setting.

JSON has no NaN: non-finite floats are published as ``null`` and decoded back to
NaN, so a consumer sees "no value" rather than an invalid document.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec

from streamer.types import SCHEMA_NAME, DynamicsState, SurfaceUpdate

Format = Literal["json", "msgpack"]
SCHEMA_HEADER: tuple[str, bytes] = ("schema", SCHEMA_NAME.encode())

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


# msgspec rejects ``null`` for a ``float`` before any dec_hook runs, and every real
# surface has one (the first slice's calendar_margin). So the nulls after a colon are
# rewritten to the string "nan" (one C pass over the bytes), which the lax decoder reads
# as a float NaN: one typed decode instead of a failed one plus a generic parse. Lists
# hold only objects, so a null elsewhere is a broken message. A ``:null`` inside a
# string value cannot be rewritten silently: the inserted quotes end the string and
# leave a bare ``nan``, which is invalid JSON, so such a message (and any other the
# fast path refuses) takes the exact path below and its error. Lax also reads a number
# sent as a string ("42", "nan"), which our encoder never writes.
_lax_json_decoder = msgspec.json.Decoder(SurfaceUpdate, strict=False)
#: Fields that are objects or null, all after the slices: their null stays null.
_OPTIONAL_OBJECTS = ("dynamics", "variance_index")
_OPTIONAL_KEYS = tuple(f'"{name}":'.encode() for name in _OPTIONAL_OBJECTS)
_NAN = b'"nan"'
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
        update = _lax_json_decoder.decode(_nulls_as_nan_strings(data))
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass  # the exact path below gives the precise error
    else:
        if _strings_came_through(update):
            return update
    raw = msgspec.json.decode(data)
    return msgspec.convert(_nulls_to_nan(raw), SurfaceUpdate)


def decode_dynamics_state(data: bytes) -> DynamicsState:
    """A ``vol.dynamics.v1`` value (JSON, NaN as null) back into ``DynamicsState``."""
    return msgspec.convert(_nulls_to_nan(msgspec.json.decode(data)), DynamicsState)


def _nulls_as_nan_strings(data: bytes) -> bytes:
    """Every ``:null`` as ``:"nan"``, except the optional objects' own null."""
    lax = data.replace(b":null", b":" + _NAN)
    for key in _OPTIONAL_KEYS:
        at = lax.rfind(key) + len(key)  # from the end: these fields follow the slices
        if at >= len(key) and lax.startswith(_NAN, at):
            lax = lax[:at] + b"null" + lax[at + len(_NAN):]
    return lax


def _strings_came_through(update: SurfaceUpdate) -> bool:
    """False where a null in a string field became the string "nan" on the lax path."""
    return ("nan" not in (update.venue, update.underlying)
            and all("nan" not in (s.expiry, s.model, s.fallback_reason)
                    for s in update.slices))


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
