"""The synthetic market as Bybit v5 option ``tickers.{symbol}`` snapshots.

One snapshot per update (Bybit's option tickers are snapshots only, at most one per
100 ms per symbol), stamped with the update's time and received after its latency.
Bybit's units: names as Deribit's (``BTC-6DEC24-100000-C``), premiums in USDC on a
5 USDC (BTC) or 0.1 USDC (ETH) tick, IVs decimal, ``underlyingPrice`` the forward
of the expiry, ``indexPrice`` the spot, ``"0"`` for a missing side; every number a
decimal string.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from streamer.core import black76
from streamer.core.implied_vol import implied_vol
from streamer.devtools.synth_deribit import instrument_names
from streamer.devtools.synth_quotes import text, theta_per_day, usd_book, usd_places
from streamer.devtools.synth_updates import UnderlyingMarket

FIRST_SEQUENCE = 3_414_600_000  # the number in a push's ``id``, as Bybit's cross sequence


def _fields(market: UnderlyingMarket) -> dict[str, Any]:
    """Every field that varies per update, vectorised over all updates."""
    chain, u = market.chain, market.updates
    k_abs, call = chain.strike[u.inst], chain.is_call[u.inst]
    bid, ask = usd_book(chain, u)
    with np.errstate(invalid="ignore"):
        bid_iv = np.nan_to_num(implied_vol(bid, u.fwd, k_abs, u.t, call), nan=0.0)
        ask_iv = np.nan_to_num(implied_vol(ask, u.fwd, k_abs, u.t, call), nan=0.0)
    return {"bid": bid, "ask": ask, "bid_iv": bid_iv, "ask_iv": ask_iv,
            "mark": black76.price(u.fwd, k_abs, u.t, u.vol, call),
            "delta": black76.delta(u.fwd, k_abs, u.t, u.vol, call),
            "gamma": black76.gamma(u.fwd, k_abs, u.t, u.vol),
            "vega": black76.vega(u.fwd, k_abs, u.t, u.vol) / 100.0,
            "theta": theta_per_day(u.fwd, k_abs, u.t, u.vol)}


def _ticker(market: UnderlyingMarket, q: dict[str, Any], j: int, symbol: str
            ) -> dict[str, str]:
    u = market.updates
    has_bid = q["bid"][j] > 0
    places = usd_places(market.chain.underlying)
    return {"symbol": symbol,
            "bidPrice": text(q["bid"][j], places) if has_bid else "0",
            "bidSize": text(u.bid_amt[j], 2) if has_bid else "0",
            "bidIv": text(q["bid_iv"][j], 4) if has_bid else "0",
            "askPrice": text(q["ask"][j], places), "askSize": text(u.ask_amt[j], 2),
            "askIv": text(q["ask_iv"][j], 4), "lastPrice": text(q["ask"][j], places),
            "highPrice24h": "0", "lowPrice24h": "0", "markPrice": text(q["mark"][j], 8),
            "indexPrice": text(u.spot[j], 2), "markPriceIv": text(u.vol[j], 4),
            "underlyingPrice": text(u.fwd[j], 2), "openInterest": "12.5",
            "turnover24h": "0", "volume24h": "0", "totalVolume": "25", "totalTurnover": "2500000",
            "delta": text(q["delta"][j], 8), "gamma": text(q["gamma"][j], 8),
            "vega": text(q["vega"][j], 8), "theta": text(q["theta"][j], 8),
            "predictedDeliveryPrice": "0", "change24h": "0"}


def encode(market: UnderlyingMarket, rng: np.random.Generator) -> list[tuple[int, bytes]]:
    """(receive time ns, push) of every update; Bybit needs no draws of its own."""
    del rng
    names, u, q = instrument_names(market.chain), market.updates, _fields(market)
    rows = []
    for j in range(u.inst.size):
        symbol, ts = names[u.inst[j]], int(u.ts_ms[j])
        topic = f"tickers.{symbol}"
        msg = {"id": f"{topic}-{FIRST_SEQUENCE + j}-{ts}", "topic": topic, "ts": ts,
               "data": _ticker(market, q, j, symbol), "type": "snapshot"}
        rows.append((ts * 1_000_000 + int(u.latency_ns[j]),
                     json.dumps(msg, separators=(",", ":")).encode()))
    return rows
