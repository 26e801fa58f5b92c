"""Decoding OKX, Bybit and Binance option messages: our msgspec decoders vs json.loads + dicts.

Input per venue: its real messages from tests/data (see tests/data/VENUES.md), cycled
until there are ~20,000, in memory before timing. Both sides start each run with empty
state, apply the same checks and build the same ``Quote`` objects (checked for
equality before timing, NaN-safe).

* ``ours_msgspec``: ``<Venue>Decoder().decode(raw, received_ts_ns)`` per message.
* ``baseline_json_loads``: ``json.loads`` then dict access (``msg["data"][0]["bidPx"]``)
  with the same joins, checks and ``Quote`` (built positionally, as the decoders do);
  written for the message kinds in the data.
* ``json_loads_only``: just ``json.loads`` of every message, for scale.

OKX messages are the 64-option ``opt-summary`` push plus the 8-message tardis sample,
so an OKX "message" is about 30 times bigger than a Bybit or Binance one: compare
rows of one venue, not venues.

Run from the repo root: ``.venv/bin/python benchmarks/bench_decode_venues.py``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import decoder_rows, record

from streamer.sources.binance import protocol as binance
from streamer.sources.bybit import protocol as bybit
from streamer.sources.deribit.protocol import InstrumentInfo
from streamer.sources.okx import protocol as okx
from streamer.types import Quote

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
N_MESSAGES = 20_000
NAN = math.nan
Lines = list[tuple[int, bytes]]


def _messages(filename: str, *keys: str) -> list[bytes]:
    top = msgspec.json.decode((DATA / filename).read_bytes(), type=dict[str, msgspec.Raw])
    return [bytes(m) for key in keys
            for m in msgspec.json.decode(top[key], type=list[msgspec.Raw])]


def _lines(messages: list[bytes]) -> Lines:
    return [(1_700_000_000_000_000_000 + i, raw)
            for i, raw in enumerate(islice(cycle(messages), N_MESSAGES))]


def _num(text: str) -> float:
    return float(text) if text else NAN


def _pos(text: str) -> float:
    value = _num(text)
    return value if value > 0 else NAN


def _price(text: str) -> float:
    value = _num(text)
    return NAN if value == 0 else value


# -- OKX ------------------------------------------------------------------------------------------

def okx_baseline(lines: Lines) -> list[Quote]:
    """Summaries joined with books, coin premiums x forward, as the decoder does."""
    cache: dict[str, okx.Instrument | str] = {}
    summaries: dict[str, tuple[float, float, float, float]] = {}
    books: dict[str, tuple[float, float, float, float]] = {}
    index: dict[str, float] = {}
    out: list[Quote] = []
    for ts, raw in lines:
        msg = json.loads(raw)
        channel = msg["arg"]["channel"]
        if channel == "index-tickers":
            for d in msg["data"]:
                index[d["instId"]] = float(d["idxPx"])
            continue
        if channel not in ("opt-summary", "tickers"):
            continue
        for d in msg["data"]:
            name = d["instId"]
            inst = cache.get(name)
            if inst is None:
                inst = cache[name] = okx.parse_instrument_name(name) or okx.classify_unparsable(
                    name)
            if isinstance(inst, str) or int(d["ts"]) >= inst.info.expiry_ts_ms:
                continue
            if channel == "opt-summary":
                summaries[name] = (_pos(d.get("fwdPx", "")), _pos(d["bidVol"]),
                                   _pos(d["askVol"]), _pos(d["markVol"]))
            else:
                bid, ask = _price(d["bidPx"]), _price(d["askPx"])
                if bid < 0 or ask < 0 or bid > ask:
                    books.pop(name, None)
                    continue
                books[name] = (bid, ask, _pos(d["bidSz"]), _pos(d["askSz"]))
            summary = summaries.get(name, (NAN, NAN, NAN, NAN))
            book = books.get(name, (NAN, NAN, NAN, NAN))
            idx = index.get(inst.family, NAN)
            forward = summary[0] if summary[0] > 0 else idx
            if not forward > 0:
                continue
            info = inst.info
            scale = 1.0 if info.linear else forward
            out.append(Quote(
                "okx", info.underlying, name, info.expiry_ts_ms, info.strike, info.is_call,
                book[0] * scale, book[1] * scale, forward, idx, int(d["ts"]), ts,
                book[2], book[3], summary[1], summary[2], summary[3]))
    return out


# -- Bybit ----------------------------------------------------------------------------------------

def bybit_baseline(lines: Lines) -> list[Quote]:
    cache: dict[str, InstrumentInfo | str] = {}
    out: list[Quote] = []
    for ts, raw in lines:
        msg = json.loads(raw)
        if not msg.get("topic", "").startswith("tickers."):
            continue
        d = msg["data"]
        name = d["symbol"]
        info = cache.get(name)
        if info is None:
            info = cache[name] = bybit.parse_instrument_name(name) or bybit.classify_unparsable(
                name)
        if isinstance(info, str) or msg["ts"] >= info.expiry_ts_ms:
            continue
        forward = _price(d["underlyingPrice"])
        bid, ask = _price(d["bidPrice"]), _price(d["askPrice"])
        if not forward > 0 or bid < 0 or ask < 0 or bid > ask:
            continue
        out.append(Quote(
            "bybit", info.underlying, name, info.expiry_ts_ms, info.strike, info.is_call,
            bid, ask, forward, _pos(d["indexPrice"]), msg["ts"], ts,
            _pos(d["bidSize"]), _pos(d["askSize"]), _pos(d["bidIv"]), _pos(d["askIv"]),
            _pos(d["markPriceIv"])))
    return out


# -- Binance --------------------------------------------------------------------------------------

def _binance_quote(d: dict[str, Any], index: float, cache: dict[str, InstrumentInfo | str],
                   ts: int) -> Quote | None:
    name = d["s"]
    info = cache.get(name)
    if info is None:
        info = cache[name] = binance.parse_instrument_name(name) or binance.classify_unparsable(
            name)
    if isinstance(info, str) or d["E"] >= info.expiry_ts_ms or not index > 0:
        return None
    bid, ask = _price(d["bo"]), _price(d["ao"])
    if bid < 0 or ask < 0 or bid > ask:
        return None
    return Quote(
        "binance", info.underlying, name, info.expiry_ts_ms, info.strike, info.is_call,
        bid, ask, index, index, d["E"], ts,
        _pos(d["bq"]), _pos(d["aq"]), _pos(d["b"]), _pos(d["a"]), _pos(d["vo"]))


def binance_baseline(lines: Lines) -> list[Quote]:
    cache: dict[str, InstrumentInfo | str] = {}
    index: dict[str, float] = {}
    out: list[Quote] = []
    for ts, raw in lines:
        msg = json.loads(raw)
        stream, data = msg["stream"], msg["data"]
        if stream.endswith("@optionMarkPrice"):
            quotes = [_binance_quote(d, _num(d["i"]), cache, ts) for d in data]
        elif stream.endswith("@ticker"):
            quotes = [_binance_quote(data, index.get(data["s"].split("-")[0] + "USDT", NAN),
                                     cache, ts)]
        elif stream.endswith("@index"):
            index[data["s"]] = float(data["p"])
            continue
        else:
            continue
        out += [q for q in quotes if q is not None]
    return out


# -- the runs -------------------------------------------------------------------------------------

Decoder = Callable[[], Any]


def ours(make: Decoder) -> Callable[[Lines], list[Quote]]:
    def run(lines: Lines) -> list[Quote]:
        decoder = make()
        out: list[Quote] = []
        for ts, raw in lines:
            out += decoder.decode(raw, ts).quotes
        return out
    return run


VENUES: list[tuple[str, list[bytes], Callable[[Lines], list[Quote]],
                   Callable[[Lines], list[Quote]]]] = [
    ("okx", [(DATA / "okx_opt_summary_BTC-USD_2023-12-01T000000Z.json").read_bytes(),
             *_messages("okx_v5_option_channels_tardis_2021-12.json", "messages")],
     ours(okx.OkxDecoder), okx_baseline),
    ("bybit", _messages("bybit_v5_option_messages_tardis_2023-04-05.json", "messages"),
     ours(bybit.BybitDecoder), bybit_baseline),
    ("binance", _messages("binance_eoptions_messages_tardis.json", "messages_v1_2023-10-01",
                          "messages_v2_2025-12-17"), ours(binance.BinanceDecoder),
     binance_baseline),
]


def measure(venue: str, messages: list[bytes], decode: Callable[[Lines], list[Quote]],
            baseline: Callable[[Lines], list[Quote]]) -> list[dict[str, Any]]:
    """Rows of one venue: ours, the baseline and json.loads alone, timed in turn."""
    return decoder_rows({"venue": venue}, _lines(messages), {"ours_msgspec": decode}, baseline,
                        repeat=5 if venue == "okx" else 10)


def main() -> None:
    record("venue_decode", [row for venue in VENUES for row in measure(*venue)])


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.1f} s)")
