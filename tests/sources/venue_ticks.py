"""Small tick files in OKX's, Bybit's and Binance's wire formats, for the replay server.

Each holds one second of market: the real golden messages of tests/data (compacted
onto one line each, values untouched) and messages built in the venue's real shape
(every field the venue sends, as its golden sibling has them) for several
instruments at several timestamps. Each also holds golden messages of channels the
sessions never subscribe (trades, books), which the server must never send.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from streamer.tickfile import TickFileWriter
from tests.sources.venue_support import DATA, raw_messages

START_NS = 1_700_000_000_000_000_000
OKX_SUMMARY = (DATA / "okx_opt_summary_BTC-USD_2023-12-01T000000Z.json").read_bytes()
OKX_TARDIS = raw_messages("okx_v5_option_channels_tardis_2021-12.json")
BYBIT = raw_messages("bybit_v5_option_messages_tardis_2023-04-05.json")
BINANCE_V2 = raw_messages("binance_eoptions_messages_tardis.json", "messages_v2_2025-12-17")


@dataclass(frozen=True)
class VenueFile:
    """A tick file and what a session of that venue subscribes to when it plays."""

    path: Path
    currencies: list[str]
    keys: set[str]  # every subscription key a session asks for, as the server counts them
    rows: list[tuple[int, bytes]]  # (receive ns, raw), in file order


def _line(raw: bytes) -> bytes:
    """A golden message on one line; values and their spelling untouched."""
    return msgspec.json.format(raw, indent=0)


def _compact(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def _write(path: Path, timed: list[tuple[float, bytes]]) -> list[tuple[int, bytes]]:
    rows = sorted((START_NS + round(at_s * 1e9), raw) for at_s, raw in timed)
    with TickFileWriter(path) as writer:
        for received_ns, raw in rows:
            writer.write(received_ns, raw)
    return rows


# -- OKX: index, family summaries (golden) and tickers of four instruments ----------------------

OKX_TICKERS = ["BTC-USD-231229-40000-P", "BTC-USD-231208-36500-C", "BTC-USD-231215-39000-C",
               "BTC-USD-240126-27000-P"]


def _okx_ticker(name: str, ts_ms: int, bid: float) -> bytes:
    item = {"instType": "OPTION", "instId": name, "last": f"{bid:.4f}", "lastSz": "1",
            "askPx": f"{bid + 0.0015:.4f}", "askSz": "120", "bidPx": f"{bid:.4f}", "bidSz": "95",
            "open24h": "0.05", "high24h": "0.07", "low24h": "0.04", "sodUtc0": "0.05",
            "sodUtc8": "0.05", "volCcy24h": "3.5", "vol24h": "350", "ts": str(ts_ms)}
    return _compact({"arg": {"channel": "tickers", "instId": name}, "data": [item]})


def _okx_index(ts_ms: int, price: float) -> bytes:
    item = {"instId": "BTC-USD", "idxPx": f"{price:.1f}", "open24h": "37650.2",
            "high24h": "38120.9", "low24h": "37280.4", "sodUtc0": "37702.3",
            "sodUtc8": "37690.1", "ts": str(ts_ms)}
    return _compact({"arg": {"channel": "index-tickers", "instId": "BTC-USD"}, "data": [item]})


def okx_file(path: Path) -> VenueFile:
    """An index and the golden 64-option summary every 250 ms, a ticker every 50 ms."""
    ts0 = 1_701_388_800_000
    timed = [(0.02, _line(OKX_TARDIS[0])), (0.03, _line(OKX_TARDIS[6]))]  # books, trades
    for at in (0.0, 0.25, 0.5, 0.75):  # OKX pushes opt-summary every 100 ms to 1 s
        timed += [(at, _okx_index(ts0 + round(at * 1000), 37_700.5 + 4 * at)),
                  (at + 0.01, _line(OKX_SUMMARY))]
    for i in range(16):
        at = 0.2 + 0.05 * i
        timed.append((at, _okx_ticker(OKX_TICKERS[i % 4], ts0 + round(at * 1000),
                                      0.05 + 0.001 * i)))
    names = [item["instId"] for item in json.loads(OKX_SUMMARY)["data"]]
    keys = {"index-tickers:BTC-USD", "opt-summary:BTC-USD"} | {f"tickers:{n}" for n in names}
    return VenueFile(path, ["BTC"], keys, _write(path, timed))


# -- Bybit: golden SOL and ETH tickers, built BTC tickers ------------------------------------------

BYBIT_BTC = ["BTC-28APR23-29500-C", "BTC-28APR23-28000-P", "BTC-30JUN23-30000-C"]


def _bybit_ticker(symbol: str, ts_ms: int, bid: float, seq: int) -> bytes:
    data = {"symbol": symbol, "bidPrice": f"{bid:.0f}", "bidSize": "1.2", "bidIv": "0.5512",
            "askPrice": f"{bid + 20:.0f}", "askSize": "0.8", "askIv": "0.5734",
            "lastPrice": f"{bid:.0f}", "highPrice24h": "1100", "lowPrice24h": "900",
            "markPrice": f"{bid + 10:.2f}", "indexPrice": "28250.1", "markPriceIv": "0.5623",
            "underlyingPrice": "28300.5", "openInterest": "12.5", "turnover24h": "3310.2",
            "volume24h": "3.4", "totalVolume": "120", "totalTurnover": "3400000",
            "delta": "0.52", "gamma": "0.00007", "vega": "31.2", "theta": "-41.5",
            "predictedDeliveryPrice": "0", "change24h": "0.012"}
    return _compact({"id": f"tickers.{symbol}-{seq}-{ts_ms}", "topic": f"tickers.{symbol}",
                     "ts": ts_ms, "data": data, "type": "snapshot"})


def bybit_file(path: Path) -> VenueFile:
    """Golden SOL and ETH tickers, a BTC ticker every 50 ms, golden trades and books."""
    ts0 = 1_680_652_800_000
    timed = [(0.1, _line(BYBIT[4])), (0.6, _line(BYBIT[5])),  # SOL call, ETH put
             (0.02, _line(BYBIT[0])), (0.03, _line(BYBIT[1]))]  # trades, book: unsubscribed
    for i in range(18):
        at = 0.1 + 0.05 * i
        timed.append((at, _bybit_ticker(BYBIT_BTC[i % 3], ts0 + round(at * 1000),
                                        980 + i, 3_400_000 + i)))
    symbols = [*BYBIT_BTC, "SOL-28APR23-24-C", "ETH-30JUN23-200-P"]
    return VenueFile(path, ["BTC", "SOL", "ETH"], {f"tickers.{s}" for s in symbols},
                     _write(path, timed))


# -- Binance: golden XRP and BTC mark-price arrays, built BTC arrays of three options ------------

BINANCE_BTC = ["BTC-251219-89000-C", "BTC-251219-89000-P", "BTC-251226-95000-C"]


def _binance_mark(symbol: str, ts_ms: int, bid: float) -> dict[str, str | int]:
    return {"s": symbol, "mp": f"{bid + 10:.1f}", "E": ts_ms, "e": "markPrice",
            "i": "104334.60217391", "P": "0.0000", "bo": f"{bid:.1f}", "ao": f"{bid + 20:.1f}",
            "bq": "5.00", "aq": "3.50", "b": "0.85", "a": "0.88", "hl": "2000.0", "ll": "500.0",
            "vo": "0.86", "rf": "0.0", "d": "0.75", "t": "-0.05", "g": "0.002", "v": "0.15"}


def binance_file(path: Path) -> VenueFile:
    """Golden XRP and BTC arrays, a built BTC array every 100 ms, golden trades and books."""
    ts0 = 1_765_983_421_000
    timed = [(0.05, _line(BINANCE_V2[4])), (0.55, _line(BINANCE_V2[4])),  # XRP
             (0.1, _line(BINANCE_V2[7])),  # BTC
             (0.02, _line(BINANCE_V2[0])), (0.03, _line(BINANCE_V2[3]))]  # unsubscribed
    for i in range(9):
        at = 0.15 + 0.1 * i
        marks = [_binance_mark(s, ts0 + round(at * 1000), 1400.0 + 10 * i + j)
                 for j, s in enumerate(BINANCE_BTC)]
        timed.append((at, _compact({"stream": "btcusdt@optionMarkPrice", "data": marks})))
    return VenueFile(path, ["BTC", "XRP"], {"btcusdt@optionMarkPrice", "xrpusdt@optionMarkPrice"},
                     _write(path, timed))


VENUE_FILES: dict[str, Callable[[Path], VenueFile]] = {
    "okx": okx_file, "bybit": bybit_file, "binance": binance_file}
