"""A JSON surface's nulls as ``"nan"``: what lets the codec read it in one typed decode.

msgspec rejects ``null`` for a ``float`` before any hook runs, and every real surface
has one (the first slice's ``calendar_margin``); its lax decoder (``strict=False``)
reads the string ``"nan"`` as a float NaN. So a member ``"key":null`` is rewritten to
``"key":"nan"`` where ``key`` is a float field or a ``dict[str, float]`` entry, and
left alone where a null means something else (an optional object's ``None``) or is an
error (a string, int or list field): the keys of the second kind are derived from the
published types (:data:`KEEP_NULL`), so a field added to them is covered.

Two ways, the same result (tests/sinks/test_null_floats.py):

* :func:`native_nulls_as_nan`, in C (``_null_floats.c``): one scan that knows what is
  inside a string and reads each null's key, so a null in a string field stays null
  and is msgspec's own error. It declines a message with string escapes (None).
* :func:`python_nulls_as_nan`, the fallback: every ``:null`` (``bytes.split``, one
  pass), then the optional objects' null put back. It cannot see keys, so a null in a
  string field reads as the string ``"nan"``: :func:`strings_came_through` is the
  codec's check after the decode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import msgspec.inspect as mi

from streamer.core.native import extension
from streamer.types import SurfaceUpdate

_NAN = b'"nan"'


def _member_kinds(root: type) -> tuple[set[str], set[str], bool]:
    """Wire names of the plain-float fields and of all the others, of every Struct
    reachable from ``root``; and whether every dict's values are plain floats (a
    dict entry's null is rewritten whatever its key, so it must be a float)."""
    floats: set[str] = set()
    others: set[str] = set()
    dicts_float = True
    seen: set[type] = set()

    def visit(t: mi.Type) -> None:
        nonlocal dicts_float
        if isinstance(t, mi.StructType) and t.cls not in seen:
            seen.add(t.cls)
            for f in t.fields:
                (floats if isinstance(f.type, mi.FloatType) else others).add(f.encode_name)
                visit(f.type)
        elif isinstance(t, mi.DictType):
            dicts_float = dicts_float and isinstance(t.value_type, mi.FloatType)
            visit(t.value_type)
        elif isinstance(t, mi.ListType):
            visit(t.item_type)
        elif isinstance(t, mi.UnionType):
            for option in t.types:
                visit(option)

    visit(mi.type_info(root))
    return floats, others, dicts_float


FLOAT_FIELDS, OTHER_FIELDS, _DICTS_FLOAT = _member_kinds(SurfaceUpdate)
#: keys whose null stays null (a name that is a float somewhere and not elsewhere would
#: be here too: its null then takes the codec's exact path, correct but slower)
KEEP_NULL: tuple[bytes, ...] = tuple(sorted(name.encode() for name in OTHER_FIELDS))


def _optional_objects(root: type) -> tuple[str, ...]:
    """Wire names of ``root``'s own fields that are an object or null (a null there is
    ``None``, not NaN); the Python path finds them from the end of a message."""
    fields = cast(mi.StructType, mi.type_info(root)).fields
    return tuple(f.encode_name for f in fields if isinstance(f.type, mi.UnionType)
                 and any(isinstance(o, mi.NoneType) for o in f.type.types)
                 and any(isinstance(o, mi.StructType) for o in f.type.types))


#: fields that are an object or null (their null is ``None``), all after the slices
OPTIONAL_OBJECTS = _optional_objects(SurfaceUpdate)
_OPTIONAL_KEYS = tuple(f'"{name}":'.encode() for name in OPTIONAL_OBJECTS)


#: the C scan's keep table holds at most this many names (half its 256 slots)
_NATIVE_MAX_KEEP = 128


def _native() -> Callable[[bytes, tuple[bytes, ...]], bytes | None] | None:
    if not _DICTS_FLOAT:  # a dict of other values: its null could be a string's
        return None
    if len(KEEP_NULL) > _NATIVE_MAX_KEEP:  # the scan would refuse every message
        return None
    module = extension("streamer.sinks._null_floats", "nulls_as_nan")
    if module is None:
        return None
    return cast(Callable[[bytes, tuple[bytes, ...]], bytes | None], module.nulls_as_nan)


_NATIVE = _native()


def native_nulls_as_nan(data: bytes | bytearray | memoryview) -> bytes | None:
    """``data`` with the float members' nulls as ``"nan"``, the others' kept; None
    where the C scan is not built or declines (string escapes, not ``bytes``)."""
    if _NATIVE is None or type(data) is not bytes:
        return None
    return _NATIVE(data, KEEP_NULL)


def python_nulls_as_nan(data: bytes | bytearray | memoryview) -> bytes:
    """Every ``:null`` as ``:"nan"`` except the optional objects' own null.

    A ``:null`` inside a string value becomes ``:"nan"`` too: the inserted quotes end
    the string and leave a bare ``nan``, invalid JSON, so the codec's exact path gives
    that message's error (or its value).
    """
    lax = b':"nan"'.join(bytes(data).split(b":null"))  # split: one pass; replace takes two
    for key in _OPTIONAL_KEYS:
        at = lax.rfind(key) + len(key)  # from the end: these fields follow the slices
        if at >= len(key) and lax.startswith(_NAN, at):
            lax = lax[:at] + b"null" + lax[at + len(_NAN):]
    return lax


def strings_came_through(update: SurfaceUpdate) -> bool:
    """False where a null in a string field became the string "nan" (the Python path).

    The string fields, by hand for speed: tests/sinks/test_null_floats.py checks them
    against the types. (Literal fields need no check: "nan" is none of their values.)
    """
    vi = update.variance_index
    return ("nan" not in (update.venue, update.underlying)
            and (vi is None or "nan" not in (vi.near_expiry, vi.next_expiry))
            and all("nan" not in (s.expiry, s.model, s.fallback_reason, s.fit_status)
                    for s in update.slices))
