"""The synthetic market as OKX v5 public pushes, for the coin-margined family (``BTC-USD``).

OKX splits a quote over three channels, and so does this encoder (names as
``BTC-USD-241206-100000-C``, every number a decimal string):

* ``index-tickers`` of the family every ``INDEX_STEP_MS`` (the spot path's step);
* ``tickers`` of an instrument at each of its updates: best bid/ask in coin on
  Deribit's tick (OKX's is alike), sizes in contracts, ``""`` for a missing side;
* ``opt-summary`` of the family every 100 ms to 1 s: the instruments updated since
  the last push, marked at the push (``fwdPx``, ``markVol`` and greeks at that
  instant's forward; ``bidVol``/``askVol`` those of the latest book, ``"0"`` without
  one). The first push, at the start, lists every instrument, as a subscription's
  first push does, so no book arrives before its instrument's forward.

Receive times are the exchange stamps plus a latency of 1 to 20 ms; the first index and
summary pushes are received first of all (the recording starts at the subscription).
"""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt

from streamer.core import black76
from streamer.core.implied_vol import implied_vol
from streamer.devtools.synth_quotes import coin_book, theta_per_day, trimmed, yymmdd
from streamer.devtools.synth_updates import SPOT_STEP_MS, Chain, UnderlyingMarket, latest_at

INDEX_STEP_MS = SPOT_STEP_MS
SUMMARY_STEP_MS = (100, 1000)  # OKX pushes opt-summary every 100 ms to 1 s
#: Coin per contract of OKX's coin-margined options (``ctVal``).
CONTRACT_COIN = {"BTC": 0.01, "ETH": 0.1}
FIRST_LATENCY_NS = 1_000_000
Row = tuple[int, bytes]
Floats = npt.NDArray[np.float64]


def instrument_names(chain: Chain) -> list[str]:
    """``BTC-USD-241206-100000-C`` for every instrument of the chain."""
    return [f"{chain.underlying}-USD-{yymmdd(int(ts))}-{int(k)}-{'C' if call else 'P'}"
            for ts, k, call in zip(chain.expiry_ts_ms, chain.strike, chain.is_call, strict=True)]


def _push(arg: dict[str, str], data: list[dict[str, str]]) -> bytes:
    return json.dumps({"arg": arg, "data": data}, separators=(",", ":")).encode()


def _latencies(rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
    """Receive latencies of ``n`` pushes; the first (the subscription's answer) the least."""
    latency = rng.integers(1_000_000, 20_000_000, n)
    latency[:1] = FIRST_LATENCY_NS
    return latency


def _index_rows(market: UnderlyingMarket, family: str, rng: np.random.Generator) -> list[Row]:
    times = range(market.start_ts_ms, market.start_ts_ms + market.duration_ms, INDEX_STEP_MS)
    latency = _latencies(rng, len(times))
    day_open = trimmed(market.spec.spot, 2)
    rows = []
    for ts, lat in zip(times, latency, strict=True):
        price = trimmed(market.spot_at(ts), 2)
        data = {"instId": family, "idxPx": price, "high24h": day_open, "low24h": day_open,
                "open24h": day_open, "sodUtc0": day_open, "sodUtc8": day_open, "ts": str(ts)}
        rows.append((ts * 1_000_000 + int(lat),
                     _push({"channel": "index-tickers", "instId": family}, [data])))
    return rows


def _ticker_rows(market: UnderlyingMarket, names: list[str]) -> list[Row]:
    chain, u = market.chain, market.updates
    bid, ask = coin_book(chain, u)
    per_contract = CONTRACT_COIN.get(chain.underlying, 1.0)
    rows = []
    for j in range(u.inst.size):
        name, ts = names[u.inst[j]], int(u.ts_ms[j])
        has_bid = bid[j] > 0
        ask_px = trimmed(ask[j], 4)
        data = {"instType": "OPTION", "instId": name, "last": ask_px, "lastSz": "1",
                "askPx": ask_px, "askSz": trimmed(u.ask_amt[j] / per_contract, 0),
                "bidPx": trimmed(bid[j], 4) if has_bid else "",
                "bidSz": trimmed(u.bid_amt[j] / per_contract, 0) if has_bid else "",
                "open24h": ask_px, "high24h": ask_px, "low24h": ask_px, "volCcy24h": "0.5",
                "vol24h": "50", "sodUtc0": ask_px, "sodUtc8": ask_px, "ts": str(ts)}
        rows.append((ts * 1_000_000 + int(u.latency_ns[j]),
                     _push({"channel": "tickers", "instId": name}, [data])))
    return rows


def _summary_items(market: UnderlyingMarket, names: list[str], family: str, ts: int,
                   sel: npt.NDArray[np.int64], book: tuple[Floats, Floats]
                   ) -> list[dict[str, str]]:
    """The ``opt-summary`` entries of instruments ``sel`` at ``ts``; ``book`` in coin, 0 absent."""
    chain = market.chain
    k_abs, call = chain.strike[sel], chain.is_call[sel]
    t, fwd, vol = market.marks(sel, ts)
    with np.errstate(invalid="ignore"):
        bid_vol = np.nan_to_num(implied_vol(book[0] * fwd, fwd, k_abs, t, call), nan=0.0)
        ask_vol = np.nan_to_num(implied_vol(book[1] * fwd, fwd, k_abs, t, call), nan=0.0)
    mark = black76.price(fwd, k_abs, t, vol, call) / fwd
    delta = black76.delta(fwd, k_abs, t, vol, call)
    gamma = black76.gamma(fwd, k_abs, t, vol)
    vega = black76.vega(fwd, k_abs, t, vol) / 100.0
    theta = theta_per_day(fwd, k_abs, t, vol)
    # OKX's plain greeks are in coin (delta net of the coin premium), the ``BS`` ones in USD.
    return [{"instType": "OPTION", "instId": names[i], "uly": family,
             "delta": trimmed(delta[n] - mark[n], 10), "gamma": trimmed(gamma[n] * fwd[n], 10),
             "vega": trimmed(vega[n] / fwd[n], 10), "theta": trimmed(theta[n] / fwd[n], 10),
             "lever": trimmed(1.0 / mark[n], 10) if mark[n] > 0 else "0",
             "markVol": trimmed(vol[n], 10), "bidVol": trimmed(bid_vol[n], 10),
             "askVol": trimmed(ask_vol[n], 10), "realVol": "",
             "deltaBS": trimmed(delta[n], 10), "gammaBS": trimmed(gamma[n], 10),
             "thetaBS": trimmed(theta[n], 10), "vegaBS": trimmed(vega[n], 10),
             "ts": str(ts), "fwdPx": trimmed(fwd[n], 8), "volLv": trimmed(vol[n], 10)}
            for n, i in enumerate(sel)]


def _summary_times(market: UnderlyingMarket, rng: np.random.Generator) -> list[int]:
    times, ts = [], market.start_ts_ms
    while ts < market.start_ts_ms + market.duration_ms:
        times.append(ts)
        ts += int(rng.integers(SUMMARY_STEP_MS[0], SUMMARY_STEP_MS[1] + 1))
    return times


def _summary_rows(market: UnderlyingMarket, names: list[str], family: str,
                  rng: np.random.Generator) -> list[Row]:
    bid, ask = coin_book(market.chain, market.updates)
    times = _summary_times(market, rng)
    latency = _latencies(rng, len(times))
    rows = []
    pushes = latest_at(market.updates, len(names), times)
    for n, (ts, latest, changed) in enumerate(pushes):
        sel = np.arange(len(names)) if n == 0 else np.flatnonzero(changed)
        if sel.size == 0:
            continue  # nothing changed: OKX pushes nothing
        last = latest[sel]
        book = (np.where(last >= 0, bid[last], 0.0), np.where(last >= 0, ask[last], 0.0))
        items = _summary_items(market, names, family, ts, sel, book)
        rows.append((ts * 1_000_000 + int(latency[n]),
                     _push({"channel": "opt-summary", "instFamily": family}, items)))
    return rows


def encode(market: UnderlyingMarket, rng: np.random.Generator) -> list[Row]:
    """(receive time ns, push) of one underlying's index, summaries and tickers."""
    names, family = instrument_names(market.chain), f"{market.chain.underlying}-USD"
    # Subscription answers first: a stable sort keeps these ahead of equal receive times.
    return (_index_rows(market, family, rng) + _summary_rows(market, names, family, rng)
            + _ticker_rows(market, names))
