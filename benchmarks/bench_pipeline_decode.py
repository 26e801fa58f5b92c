"""Subscriber decode of a 14-slice ``vol.surface.v1`` JSON surface.

The surface comes from the real pipeline (a replay of the head of the bundled
recording), its slices repeated with later expiries up to 14 (every real surface has
nulls: the first slice's calendar_margin is NaN). Four decoders in turn, round after
round (``harness.interleaved_timings_s``):

* ``codec``: ``streamer.sinks.codec.decode_surface`` as shipped: the float members'
  nulls as ``"nan"`` by the C scan (``sinks/_null_floats.c``, which keeps the other
  fields' nulls), then one lax typed decode.
* ``codec_python``: the same without the C scan (an install without a C compiler):
  ``bytes.split``/``join`` of every ``:null``, the lax decode, the string-field check.
* ``two_pass``: the baseline, the codec before: a strict typed decode that fails on
  the first null, then a generic parse, nulls to NaN in Python and ``msgspec.convert``.
* ``typed_finite``: the floor, one strict typed decode of the same surface with every
  NaN replaced by 0 (no nulls at all).

Run from the repo root: ``.venv/bin/python benchmarks/bench_pipeline_decode.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import interleaved_timings_s, percentiles_ms, record

from streamer.app.file_replay import replay_file
from streamer.config import load_config
from streamer.devtools.exchanges import bundled_sample
from streamer.sinks import codec
from streamer.sinks.base import MemorySink
from streamer.sinks.codec import decode_surface, encode_surface
from streamer.sinks.null_floats import python_nulls_as_nan, strings_came_through
from streamer.tickfile import TickFileWriter, read_tickfile
from streamer.types import SurfaceUpdate

N_SLICES = 14
REPEAT = 3000
DAY_MS = 86_400_000


def _pipeline_surface() -> SurfaceUpdate:
    with tempfile.TemporaryDirectory() as tmp:
        head = Path(tmp) / "head.ndjson.gz"
        with TickFileWriter(head) as writer:
            for line in itertools.islice(read_tickfile(bundled_sample()), 3000):
                writer.write(line.received_ts_ns, line.raw)
        sink = MemorySink()
        asyncio.run(replay_file(head, load_config(None, env={}), sink))
    update = max(sink.updates, key=lambda u: len(u.slices))
    slices = list(update.slices)
    last = slices[-1].expiry_ts_ms
    for i, extra in enumerate(itertools.islice(itertools.cycle(update.slices[1:]),
                                               N_SLICES - len(slices)), start=1):
        slices.append(msgspec.structs.replace(extra, expiry_ts_ms=last + 28 * DAY_MS * i))
    return msgspec.structs.replace(update, slices=slices)


def _nulls_to_nan(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (math.nan if v is None and k not in ("dynamics", "variance_index")
                    else _nulls_to_nan(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nulls_to_nan(v) for v in obj]
    return obj


_strict = msgspec.json.Decoder(SurfaceUpdate)


def two_pass(data: bytes) -> SurfaceUpdate:
    """The codec before this change."""
    try:
        return _strict.decode(data)
    except msgspec.ValidationError:
        return msgspec.convert(_nulls_to_nan(msgspec.json.decode(data)), SurfaceUpdate)


def codec_python(data: bytes) -> SurfaceUpdate:
    """The codec's fast path as it runs where the C scan was not built."""
    update = codec._lax_json_decoder.decode(python_nulls_as_nan(data))
    if not strings_came_through(update):
        raise AssertionError("a string field was null")
    return update


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return 0.0
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def main() -> None:
    update = _pipeline_surface()
    data = encode_surface(update)
    finite = msgspec.json.encode(_finite(msgspec.to_builtins(update)))
    runs = interleaved_timings_s({"codec": lambda: decode_surface(data),
                                  "codec_python": lambda: codec_python(data),
                                  "two_pass": lambda: two_pass(data),
                                  "typed_finite": lambda: _strict.decode(finite)}, REPEAT)
    base = percentiles_ms(runs["two_pass"])["p50_ms"]
    floor = percentiles_ms(runs["typed_finite"])["p50_ms"]
    rows = []
    for name, samples in runs.items():
        p = percentiles_ms(samples)
        rows.append({"method": name, "slices": len(update.slices), "bytes": len(data),
                     "nulls": data.count(b"null"), "p50_us": p["p50_ms"] * 1e3,
                     "p99_us": p["p99_ms"] * 1e3, "speedup_vs_two_pass": base / p["p50_ms"],
                     "vs_floor": p["p50_ms"] / floor})
    record("pipeline_decode", rows)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.1f} s)")
