"""Decoding Deribit ticker notifications: our msgspec decoder vs json.loads + dict access.

Inputs, each read into memory first (file reading and gzip are not timed): the first
20,000 messages of the bundled (synthetic, Deribit-format) recording, and the 188 real
notifications of tests/data (2021 captures plus edge cases: 185 quotes, 3 rejects)
cycled to 20,000. Both sides start each run with an empty instrument cache and
produce the same ``Quote`` objects, checked for equality.

* ``ours_native``: ``DeribitDecoder().decode(raw, received_ts_ns)`` per message, its
  fast path native (``_fast_path.c``; the benchmark stops if it was not built).
* ``ours_msgspec``: the same decoder with ``native=False``: the msgspec reference path,
  what an install without a C compiler runs.
* ``baseline_json_loads``: ``json.loads`` then dict access (``msg["params"]["data"]
  ["best_bid_price"]``), the same checks and the same ``Quote``, built the same
  (positional) way.
* ``json_loads_only``: just ``json.loads`` of every message, for scale.

Run from the repo root: ``.venv/bin/python benchmarks/bench_decode.py``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import decoder_rows, record

from streamer.sources.deribit.normalise import VENUE
from streamer.sources.deribit.protocol import (
    DeribitDecoder,
    InstrumentInfo,
    classify_unparsable,
    parse_instrument_name,
)
from streamer.tickfile import TickLine, read_tickfile
from streamer.types import Quote

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "streamer" / "data" / "deribit_sample.ndjson.gz"
REAL = ROOT / "tests" / "data" / "deribit_option_ticker_notifications_real.jsonl"
N_MESSAGES = 20_000


def ours(lines: list[TickLine], native: bool = True) -> list[Quote]:
    decoder = DeribitDecoder(native=native)
    out: list[Quote] = []
    for ts, raw in lines:
        out += decoder.decode(raw, ts).quotes
    return out


def ours_msgspec(lines: list[TickLine]) -> list[Quote]:
    return ours(lines, native=False)


OURS = {"ours_native": ours, "ours_msgspec": ours_msgspec}


def _missing(value: float | None) -> float:
    return math.nan if value is None or value == 0.0 else float(value)


def _quote(d: dict[str, Any], info: InstrumentInfo, ts: int) -> Quote | None:
    fwd = d.get("underlying_price")
    if d.get("state", "open") != "open" or fwd is None or not math.isfinite(fwd) or fwd <= 0:
        return None
    bid, ask = _missing(d.get("best_bid_price")), _missing(d.get("best_ask_price"))
    if bid < 0 or ask < 0 or bid > ask:
        return None
    scale = 1.0 if info.linear else fwd
    index = d.get("index_price")
    # Positional, as the decoder does (keyword construction alone costs ~1 µs).
    return Quote(
        VENUE, info.underlying, d["instrument_name"], info.expiry_ts_ms, info.strike,
        info.is_call, bid * scale, ask * scale, float(fwd),
        float(index) if index else math.nan, d["timestamp"], ts,
        _missing(d.get("best_bid_amount")), _missing(d.get("best_ask_amount")),
        _missing(d.get("bid_iv")) / 100.0, _missing(d.get("ask_iv")) / 100.0,
        _missing(d.get("mark_iv")) / 100.0)


def baseline(lines: list[TickLine]) -> list[Quote]:
    """The dict-digging decoder STYLE.md warns against, kept as fast as it goes."""
    cache: dict[str, InstrumentInfo | str] = {}
    out: list[Quote] = []
    for ts, raw in lines:
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if msg.get("method") != "subscription":
            continue
        params = msg["params"]
        if not params["channel"].startswith("ticker."):
            continue
        data = params["data"]
        name = data["instrument_name"]
        info = cache.get(name)
        if info is None:
            info = cache[name] = parse_instrument_name(name) or classify_unparsable(name)
        if isinstance(info, str):
            continue
        quote = _quote(data, info, ts)
        if quote is not None:
            out.append(quote)
    return out


def real_lines() -> list[TickLine]:
    """The real notifications of tests/data (2021 captures), cycled to N_MESSAGES."""
    decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
    messages = [bytes(decoder.decode(line)["msg"]) for line in REAL.read_bytes().splitlines()
                if line.strip()]
    return [(1_700_000_000_000_000_000 + i, raw)
            for i, raw in enumerate(islice(cycle(messages), N_MESSAGES))]


def main() -> None:
    rows = decoder_rows({"input": "bundled_sample"},
                        list(islice(read_tickfile(SAMPLE), N_MESSAGES)), OURS, baseline, repeat=10)
    rows += decoder_rows({"input": "real_2021"}, real_lines(), OURS, baseline, repeat=10)
    record("deribit_decode", rows)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.1f} s)")
