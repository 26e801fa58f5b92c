"""The synthetic market as Deribit ``ticker.{instrument}.100ms`` notifications.

One notification per update, stamped with the update's time and received after its
latency. Deribit's units: premiums in coin on Deribit's tick, IVs in percent,
``underlying_price`` the forward (its future, or a synthetic ``SYN.`` index where no
future is listed), 0.0 for a missing side. This is the format of the bundled sample:
any change here changes its bytes.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from streamer.core import black76
from streamer.core.implied_vol import implied_vol
from streamer.devtools.synth_quotes import coin_book
from streamer.devtools.synth_updates import Chain, UnderlyingMarket


def instrument_names(chain: Chain) -> list[str]:
    """``BTC-6DEC24-100000-C`` for every instrument of the chain."""
    return [f"{chain.underlying}-{label}-{int(k)}-{'C' if call else 'P'}"
            for label, k, call in zip(chain.label, chain.strike, chain.is_call, strict=True)]


def _index_names(chain: Chain) -> list[str]:
    return [f"{chain.underlying}-{label}" if future else f"SYN.{chain.underlying}-{label}"
            for label, future in zip(chain.label, chain.has_future, strict=True)]


def _fields(market: UnderlyingMarket) -> dict[str, Any]:
    """Every field that varies per update, vectorised over all updates."""
    chain, u = market.chain, market.updates
    k_abs, call = chain.strike[u.inst], chain.is_call[u.inst]
    bid, ask = coin_book(chain, u)
    bid_iv = np.nan_to_num(implied_vol(bid * u.fwd, u.fwd, k_abs, u.t, call) * 100, nan=0.0)
    ask_iv = np.nan_to_num(implied_vol(ask * u.fwd, u.fwd, k_abs, u.t, call) * 100, nan=0.0)
    return {"fwd": u.fwd, "vol": u.vol, "bid": bid, "ask": ask,
            "mark": black76.price(u.fwd, k_abs, u.t, u.vol, call) / u.fwd,
            "bid_iv": np.round(bid_iv, 2), "ask_iv": np.round(ask_iv, 2),
            "delta": black76.delta(u.fwd, k_abs, u.t, u.vol, call),
            "gamma": black76.gamma(u.fwd, k_abs, u.t, u.vol) * u.fwd,
            "vega": black76.vega(u.fwd, k_abs, u.t, u.vol) / 100.0,
            "bid_amt": u.bid_amt, "ask_amt": u.ask_amt}


def _message(name: str, index_name: str, ts_ms: int, spot: float, q: dict[str, Any], j: int
             ) -> bytes:
    mark = float(q["mark"][j])
    data = {
        "underlying_price": float(q["fwd"][j]), "underlying_index": index_name,
        "timestamp": ts_ms,
        "stats": {"volume": 12.3, "price_change": -1.5, "low": 0.0105, "high": 0.0125},
        "state": "open", "settlement_price": round(mark, 8), "open_interest": 85.2,
        "min_price": 0.0001, "max_price": round(mark * 2 + 0.01, 4),
        "mark_price": round(mark, 8), "mark_iv": round(float(q["vol"][j]) * 100, 2),
        "last_price": None, "interest_rate": 0.0, "instrument_name": name,
        "index_price": round(spot, 2),
        "greeks": {"vega": round(float(q["vega"][j]), 5), "theta": 0.0, "rho": 0.0,
                   "gamma": round(float(q["gamma"][j]), 5),
                   "delta": round(float(q["delta"][j]), 5)},
        "estimated_delivery_price": round(spot, 2),
        "bid_iv": float(q["bid_iv"][j]), "best_bid_price": float(q["bid"][j]),
        "best_bid_amount": float(q["bid_amt"][j]) if q["bid"][j] > 0 else 0.0,
        "best_ask_price": float(q["ask"][j]), "best_ask_amount": float(q["ask_amt"][j]),
        "ask_iv": float(q["ask_iv"][j])}
    msg = {"jsonrpc": "2.0", "method": "subscription",
           "params": {"channel": f"ticker.{name}.100ms", "data": data}}
    return json.dumps(msg, separators=(",", ":")).encode()


def encode(market: UnderlyingMarket, rng: np.random.Generator) -> list[tuple[int, bytes]]:
    """(receive time ns, notification) of every update; Deribit needs no draws of its own."""
    del rng
    names, index = instrument_names(market.chain), _index_names(market.chain)
    u, q = market.updates, _fields(market)
    return [(int(u.ts_ms[j]) * 1_000_000 + int(u.latency_ns[j]),
             _message(names[u.inst[j]], index[u.inst[j]], int(u.ts_ms[j]), float(u.spot[j]),
                      q, j)) for j in range(u.inst.size)]
