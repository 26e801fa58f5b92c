"""One expiry's quotes as numpy arrays ready to fit: forward, k, mid IVs, weights."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from operator import attrgetter

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.core import black76
from streamer.core.forward import implied_forwards
from streamer.core.implied_vol import implied_vol_with_reason
from streamer.core.quotes import QuoteReject, filter_quotes, fit_weights_grouped, otm_mask
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
    #: the venue's own mark IVs (Deribit's), NaN where it sends none
    mark_iv: FloatArray = msgspec.field(default_factory=lambda: np.zeros(0))

    @property
    def n_quotes(self) -> int:
        """Quotes used."""
        return int(self.k.size)


def years_to_expiry(expiry_ts_ms: int, now_ms: int) -> float:
    """ACT/365, seconds-exact."""
    return (expiry_ts_ms - now_ms) / YEAR_MS


SliceBuild = tuple[SliceSnapshot | None, npt.NDArray[np.int8], list[Quote]]
_FIELDS = ("strike", "bid_price", "ask_price", "exchange_ts_ms", "underlying_price", "mark_iv")


def quote_columns(quotes: Sequence[Quote], *fields: str) -> FloatArray:
    """The ``fields`` of every quote as float64 columns: shape ``(len(fields), n)``.

    One flat pass (``np.fromiter``): a list of tuples costs numpy half as much again to
    take apart, and this runs over every quote of a chain every batch."""
    get = attrgetter(*fields)
    flat = (map(get, quotes) if len(fields) == 1
            else itertools.chain.from_iterable(map(get, quotes)))
    values = np.fromiter(flat, np.float64, count=len(fields) * len(quotes))
    return values.reshape(len(quotes), len(fields)).T


def quote_flags(quotes: Sequence[Quote], field: str) -> npt.NDArray[np.bool_]:
    """A boolean field of every quote (``is_call``)."""
    return np.fromiter(map(attrgetter(field), quotes), bool, count=len(quotes))


def build_slice(quotes: list[Quote], expiry_ts_ms: int, now_ms: int, *,
                stale_after_ms: int, max_rel_spread: float, venue_forward: bool = False
                ) -> SliceBuild:
    """Filter, invert and weight one expiry's quotes.

    Returns the snapshot (None when the expiry has expired), a reason code per
    quote (``QuoteReject``; 0 = used or merely in the money) and the quotes in
    that order.
    """
    return build_slices([(expiry_ts_ms, quotes)], now_ms, stale_after_ms=stale_after_ms,
                        max_rel_spread=max_rel_spread, venue_forward=venue_forward)[0]


class _Chain:
    """Every quote of the expiries being built, as flat arrays with per-expiry offsets."""

    def __init__(self, books: Sequence[tuple[int, list[Quote]]]) -> None:
        self.quotes = [q for _, quotes in books for q in quotes]
        bounds = np.cumsum([0] + [len(quotes) for _, quotes in books])
        self.start, self.stop = bounds[:-1], bounds[1:]
        #: per quote, the index of its expiry in ``books``
        self.book = np.repeat(np.arange(len(books)), self.stop - self.start)
        cols = quote_columns(self.quotes, *_FIELDS)
        self.strike, self.bid, self.ask, ts, self.underlying, self.mark_iv = cols
        self.ts = ts.astype(np.int64)
        self.is_call = quote_flags(self.quotes, "is_call")
        self.mid = 0.5 * (self.bid + self.ask)


def _forwards(chain: _Chain, mid: FloatArray, live: npt.NDArray[np.bool_],
              venue_forward: bool) -> tuple[FloatArray, list[str]]:
    """Each live expiry's forward: the underlying price of its newest quote where that is
    the venue's own forward (``venue_forward``), else from its call-put pairs (a call and
    a put at one strike), else that underlying price."""
    n_books = chain.start.size
    newest = np.full(n_books, np.nan)
    expiry = chain.book
    for i in np.flatnonzero(live).tolist():
        lo, hi = chain.start[i], chain.stop[i]
        newest[i] = chain.underlying[lo + int(np.argmax(chain.ts[lo:hi]))]
    venue = venue_forward & (newest > 0) & np.isfinite(newest)
    if np.all(venue | ~live):  # no parity needed
        return np.where(live, newest, np.nan), ["venue"] * n_books
    # a pair: the call and the put of one (expiry, strike); first listed of duplicates
    _, strike_code = np.unique(chain.strike, return_inverse=True)
    key = expiry * (int(strike_code.max(initial=0)) + 1) + strike_code
    calls, puts = np.flatnonzero(chain.is_call), np.flatnonzero(~chain.is_call)
    _, ci, pi = np.intersect1d(key[calls], key[puts], return_indices=True)
    c, p = calls[ci], puts[pi]
    paired = live[expiry[c]]
    c, p = c[paired], p[paired]
    forward, _, parity = implied_forwards(expiry[c], chain.strike[c], mid[c], mid[p], newest)
    methods = ["parity" if ok else "fallback" for ok in parity.tolist()]
    # where the venue's forward is missing, parity stands in
    forward = np.where(venue, newest, forward)
    methods = ["venue" if ok else m for ok, m in zip(venue.tolist(), methods, strict=True)]
    return np.where(live, forward, np.nan), methods


def _implied_vols(chain: _Chain, f_q: FloatArray, t_q: FloatArray,
                  idx: slice | npt.NDArray[np.int64]) -> tuple[FloatArray, npt.NDArray[np.int8]]:
    """The IVs of the mids, then the bids, then the asks of the quotes ``idx``, each with
    its reason code (one call)."""
    return implied_vol_with_reason(
        np.concatenate([chain.mid[idx], chain.bid[idx], chain.ask[idx]]),
        *(np.concatenate((x, x, x)) for x in (f_q[idx], chain.strike[idx], t_q[idx],
                                              chain.is_call[idx])))


def build_slices(books: Sequence[tuple[int, list[Quote]]], now_ms: int, *,
                 stale_after_ms: int, max_rel_spread: float, venue_forward: bool = False
                 ) -> list[SliceBuild]:
    """:func:`build_slice` of several expiries (``(expiry_ts_ms, quotes)`` each) at once.

    The quote filter, the implied vols (mid, bid and ask) and the vegas run as one
    numpy call over every quote of every expiry: on 30-60 quotes a slice numpy's
    per-call overhead, not the arithmetic, is the cost. Each expiry's forward is the
    venue's own (``venue_forward``: the quotes' ``underlying_price``) or comes from its
    call-put pairs. The results are those of one expiry at a time.
    """
    chain = _Chain(books)
    n = len(chain.quotes)
    fresh = chain.ts >= now_ms - stale_after_ms
    t_of = np.array([years_to_expiry(e, now_ms) for e, _ in books], np.float64)
    sizes = chain.stop - chain.start
    live = (t_of > 0) & (sizes > 0)
    forward, methods = _forwards(chain, np.where(fresh, chain.mid, np.nan), live, venue_forward)
    f_q, t_q = np.repeat(forward, sizes), np.repeat(t_of, sizes)
    codes = np.zeros(n, np.int8)
    live_q = np.repeat(live, sizes)
    # Usually every expiry is live: then every quote's column as it is, not a copy of it.
    every = bool(live.all())
    sel = slice(None) if every else live_q
    codes[sel] = filter_quotes(chain.bid[sel], chain.ask[sel], f_q[sel], chain.strike[sel],
                               t_q[sel], chain.is_call[sel], max_rel_spread=max_rel_spread)
    codes[live_q & (codes == 0) & ~fresh] = QuoteReject.STALE
    # One inversion call for mid, bid and ask of every live quote.
    if every:
        ivs, iv_reason = _implied_vols(chain, f_q, t_q, slice(None))
    else:
        idx = np.flatnonzero(live_q)
        ivs = np.full(3 * n, np.nan)
        iv_reason = np.zeros(3 * n, np.int8)
        all_idx = np.concatenate([idx, idx + n, idx + 2 * n])
        ivs[all_idx], iv_reason[all_idx] = _implied_vols(chain, f_q, t_q, idx)
    iv, bid_iv, ask_iv = ivs[:n], ivs[n:2 * n], ivs[2 * n:]
    codes[(codes == 0) & (iv_reason[:n] != 0)] = QuoteReject.IV_FAILED
    use = live_q & (codes == 0) & otm_mask(chain.strike, f_q, chain.is_call)
    weights = np.zeros(n)
    weights[use] = fit_weights_grouped(
        chain.book[use], len(books), bid_iv[use], ask_iv[use],
        black76.vega(f_q[use], chain.strike[use], t_q[use], iv[use]))
    # Each expiry's fit inputs are one run of the chain's used quotes: views, not a
    # numpy call per expiry and column.
    k = np.log(chain.strike[use] / f_q[use])
    iv_u, bid_u, ask_u, w_u, mark_u = (x[use] for x in (iv, bid_iv, ask_iv, weights,
                                                         chain.mark_iv))
    used_before = np.concatenate([[0], np.cumsum(use)])
    out: list[SliceBuild] = []
    for (expiry, quotes), ok, t, f, method, lo, hi, first, end in zip(
            books, live.tolist(), t_of.tolist(), forward.tolist(), methods,
            chain.start.tolist(), chain.stop.tolist(), used_before[chain.start].tolist(),
            used_before[chain.stop].tolist(), strict=True):
        if not ok:
            out.append((None, np.zeros(len(quotes), np.int8), quotes))
            continue
        snapshot = SliceSnapshot(expiry_ts_ms=expiry, t=t, forward=f, forward_method=method,
                                 k=k[first:end], iv=iv_u[first:end], bid_iv=bid_u[first:end],
                                 ask_iv=ask_u[first:end], weights=w_u[first:end],
                                 mark_iv=mark_u[first:end])
        out.append((snapshot, codes[lo:hi], quotes))
    return out


def count_rejects(codes: npt.NDArray[np.int8], quotes: list[Quote], since_ns: int) -> Counter[str]:
    """Reject reasons of quotes received after ``since_ns`` (each update counted once)."""
    if len(codes) != len(quotes):
        raise ValueError("one reason code per quote")
    counts: Counter[str] = Counter()
    for i in np.flatnonzero(codes).tolist():  # the rejected few, not every quote
        if quotes[i].received_ts_ns > since_ns:
            counts[QuoteReject(int(codes[i])).label] += 1
    return counts
