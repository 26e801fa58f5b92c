"""One expiry's quotes as numpy arrays ready to fit: forward, k, mid IVs, weights."""

from __future__ import annotations

from collections import Counter

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.core import black76
from streamer.core.forward import implied_forward
from streamer.core.implied_vol import implied_vol_with_reason
from streamer.core.quotes import QuoteReject, filter_quotes, fit_weights, otm_mask
from streamer.types import Quote

YEAR_MS = 365.0 * 86_400_000.0
FloatArray = npt.NDArray[np.float64]


class SliceSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The fit inputs of one expiry (OTM quotes that passed every filter)."""

    expiry_ts_ms: int
    t: float
    forward: float
    forward_method: str
    k: FloatArray
    iv: FloatArray
    bid_iv: FloatArray
    ask_iv: FloatArray
    weights: FloatArray

    @property
    def n_quotes(self) -> int:
        """Quotes used."""
        return int(self.k.size)


def years_to_expiry(expiry_ts_ms: int, now_ms: int) -> float:
    """ACT/365, seconds-exact."""
    return (expiry_ts_ms - now_ms) / YEAR_MS


def _forward(strike: FloatArray, is_call: npt.NDArray[np.bool_], mid: FloatArray,
             fallback: float) -> tuple[float, str]:
    calls = {k: m for k, c, m in zip(strike, is_call, mid, strict=True) if c}
    pairs = [(k, calls[k], m) for k, c, m in zip(strike, is_call, mid, strict=True)
             if not c and k in calls]
    if not pairs:
        return fallback, "fallback"
    k, c, p = (np.array(col) for col in zip(*pairs, strict=True))
    est = implied_forward(k, c, p, fallback)
    return est.forward, est.method


def build_slice(quotes: list[Quote], expiry_ts_ms: int, now_ms: int, *,
                stale_after_ms: int, max_rel_spread: float
                ) -> tuple[SliceSnapshot | None, npt.NDArray[np.int8], list[Quote]]:
    """Filter, invert and weight one expiry's quotes.

    Returns the snapshot (None when the expiry has expired), a reason code per
    quote (``QuoteReject``; 0 = used or merely in the money) and the quotes in
    that order.
    """
    t = years_to_expiry(expiry_ts_ms, now_ms)
    codes = np.zeros(len(quotes), np.int8)
    if t <= 0 or not quotes:
        return None, codes, quotes
    strike = np.array([q.strike for q in quotes])
    is_call = np.array([q.is_call for q in quotes])
    bid = np.array([q.bid_price for q in quotes])
    ask = np.array([q.ask_price for q in quotes])
    ts = np.array([q.exchange_ts_ms for q in quotes])
    newest = int(np.argmax(ts))
    fresh = ts >= now_ms - stale_after_ms
    mid = 0.5 * (bid + ask)
    forward, method = _forward(strike, is_call, np.where(fresh, mid, np.nan),
                               quotes[newest].underlying_price)
    codes = filter_quotes(bid, ask, forward, strike, t, is_call, max_rel_spread=max_rel_spread)
    codes[(codes == 0) & ~fresh] = QuoteReject.STALE
    # One inversion call for mid, bid and ask: the per-call overhead dominates small slices.
    n = len(quotes)
    ivs, iv_reason = implied_vol_with_reason(np.concatenate([mid, bid, ask]), forward,
                                             np.tile(strike, 3), t, np.tile(is_call, 3))
    iv = ivs[:n]
    codes[(codes == 0) & (iv_reason[:n] != 0)] = QuoteReject.IV_FAILED
    use = (codes == 0) & otm_mask(strike, forward, is_call)
    bid_iv, ask_iv = ivs[n:2 * n][use], ivs[2 * n:][use]
    vega = black76.vega(forward, strike[use], t, iv[use])
    snapshot = SliceSnapshot(
        expiry_ts_ms=expiry_ts_ms, t=t, forward=forward, forward_method=method,
        k=np.log(strike[use] / forward), iv=iv[use], bid_iv=bid_iv, ask_iv=ask_iv,
        weights=fit_weights(bid_iv, ask_iv, vega) if use.any() else np.zeros(0))
    return snapshot, codes, quotes


def count_rejects(codes: npt.NDArray[np.int8], quotes: list[Quote], since_ns: int) -> Counter[str]:
    """Reject reasons of quotes received after ``since_ns`` (each update counted once)."""
    counts: Counter[str] = Counter()
    for code, quote in zip(codes, quotes, strict=True):
        if code and quote.received_ts_ns > since_ns:
            counts[QuoteReject(int(code)).label] += 1
    return counts
