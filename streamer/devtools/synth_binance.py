"""The synthetic market as Binance European options ``<underlying>usdt@optionMarkPrice``.

The stream our Binance session subscribes to since Binance's 2025-12-17 move: once a
second, one array with every option of the underlying, each marked at the push
(``mp``, ``vo``, greeks, and the index ``i``, all at that instant's spot) with its
latest book (``bo``/``ao`` in USDT on a 5 (BTC) or 0.1 (ETH) tick, ``bq``/``aq`` in
contracts of one coin, their IVs ``b``/``a``). Binance's units: names as
``BTC-241206-100000-C``, IVs decimal, ``"0.000"`` for a missing price and ``"-1.0"``
for its IV; every number a decimal string. No forward: Binance publishes none.

An option appears from its first update on. Pushes are a second apart from a random
phase, received 1 to 20 ms after their event time ``E``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.core import black76
from streamer.core.implied_vol import implied_vol
from streamer.devtools.synth_quotes import (
    text,
    theta_per_day,
    usd_book,
    usd_places,
    yymmdd,
)
from streamer.devtools.synth_updates import Chain, UnderlyingMarket, latest_at

PUSH_EVERY_MS = 1000
NO_IV = "-1.0"


def instrument_names(chain: Chain) -> list[str]:
    """``BTC-241206-100000-C`` for every instrument of the chain."""
    return [f"{chain.underlying}-{yymmdd(int(ts))}-{int(k)}-{'C' if call else 'P'}"
            for ts, k, call in zip(chain.expiry_ts_ms, chain.strike, chain.is_call, strict=True)]


def _iv(value: float) -> str:
    return text(value, 8) if value > 0 else NO_IV


def _marks(market: UnderlyingMarket, ts: int, sel: npt.NDArray[np.int64],
           bid: npt.NDArray[np.float64], ask: npt.NDArray[np.float64]) -> dict[str, Any]:
    """What Binance recomputes every push for options ``sel``: marks, greeks, book IVs."""
    chain = market.chain
    k_abs, call = chain.strike[sel], chain.is_call[sel]
    t, fwd, vol = market.marks(sel, ts)
    with np.errstate(invalid="ignore"):
        bid_iv = np.nan_to_num(implied_vol(bid, fwd, k_abs, t, call), nan=0.0)
        ask_iv = np.nan_to_num(implied_vol(ask, fwd, k_abs, t, call), nan=0.0)
    return {"vol": vol, "bid_iv": bid_iv, "ask_iv": ask_iv,
            "mark": black76.price(fwd, k_abs, t, vol, call),
            "delta": black76.delta(fwd, k_abs, t, vol, call),
            "gamma": black76.gamma(fwd, k_abs, t, vol),
            "vega": black76.vega(fwd, k_abs, t, vol) / 100.0,
            "theta": theta_per_day(fwd, k_abs, t, vol)}


def _items(market: UnderlyingMarket, names: list[str], ts: int, latest: npt.NDArray[np.int64],
           book: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
           ) -> list[dict[str, Any]]:
    u = market.updates
    sel = np.flatnonzero(latest >= 0)
    last = latest[sel]
    bid, ask = book[0][last], book[1][last]
    m = _marks(market, ts, sel, bid, ask)
    places = usd_places(market.chain.underlying)
    index = text(market.spot_at(ts), 8)
    items = []
    for n, i in enumerate(sel):
        has_bid = bid[n] > 0
        mark = m["mark"][n]
        items.append({
            "s": names[i], "mp": text(mark, 3), "E": ts, "e": "markPrice", "i": index,
            "P": "0.000", "bo": text(bid[n], places) if has_bid else "0.000",
            "ao": text(ask[n], places),
            "bq": text(u.bid_amt[last[n]], 4) if has_bid else "0.0000",
            "aq": text(u.ask_amt[last[n]], 4),
            "b": _iv(m["bid_iv"][n]) if has_bid else NO_IV, "a": _iv(m["ask_iv"][n]),
            "hl": text(mark * 1.5 + 5.0, 3), "ll": text(mark * 0.5, 3),
            "vo": text(m["vol"][n], 8), "rf": "0.0", "d": text(m["delta"][n], 8),
            "t": text(m["theta"][n], 8), "g": text(m["gamma"][n], 8),
            "v": text(m["vega"][n], 8)})
    return items


def encode(market: UnderlyingMarket, rng: np.random.Generator) -> list[tuple[int, bytes]]:
    """(receive time ns, push) of one underlying's mark-price array, once a second."""
    names = instrument_names(market.chain)
    stream = f"{market.chain.underlying.lower()}usdt@optionMarkPrice"
    book = usd_book(market.chain, market.updates)
    first = market.start_ts_ms + int(rng.integers(0, PUSH_EVERY_MS))
    times = list(range(first, market.start_ts_ms + market.duration_ms, PUSH_EVERY_MS))
    latency = rng.integers(1_000_000, 20_000_000, len(times))
    rows = []
    for n, (ts, latest, _) in enumerate(latest_at(market.updates, len(names), times)):
        items = _items(market, names, ts, latest, book)
        if items:
            msg = {"stream": stream, "data": items}
            rows.append((ts * 1_000_000 + int(latency[n]),
                         json.dumps(msg, separators=(",", ":")).encode()))
    return rows
