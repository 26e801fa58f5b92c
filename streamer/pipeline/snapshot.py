"""One expiry's quotes as numpy arrays ready to fit: forward, k, mid IVs, weights."""

from __future__ import annotations

import bisect
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
from streamer.core.quotes import (
    QuoteReject,
    beyond_upper_bound,
    filter_quotes,
    fit_weights_grouped,
    otm_mask,
)
from streamer.pipeline.chain_book import COLUMN_FIELDS, ExpiryColumns
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


def quote_columns(quotes: Sequence[Quote], *fields: str) -> FloatArray:
    """The ``fields`` of every quote as float64 columns: shape ``(len(fields), n)``.

    One flat pass (``np.fromiter``): a list of tuples costs numpy half as much again to
    take apart. The chain book keeps its own columns as quotes arrive
    (:meth:`ChainBook.columns`): read those where the quotes are the book's."""
    get = attrgetter(*fields)
    flat = (map(get, quotes) if len(fields) == 1
            else itertools.chain.from_iterable(map(get, quotes)))
    values = np.fromiter(flat, np.float64, count=len(fields) * len(quotes))
    return values.reshape(len(quotes), len(fields)).T


def quote_flags(quotes: Sequence[Quote], field: str) -> npt.NDArray[np.bool_]:
    """A boolean field of every quote (``is_call``)."""
    return np.fromiter(map(attrgetter(field), quotes), bool, count=len(quotes))


def expiry_columns(quotes: Sequence[Quote]) -> ExpiryColumns:
    """Quotes not held in a chain book as the columns the book keeps of its own."""
    return ExpiryColumns(list(quotes), quote_columns(quotes, *COLUMN_FIELDS))


def build_slice(quotes: list[Quote], expiry_ts_ms: int, now_ms: int, *,
                stale_after_ms: int, max_rel_spread: float, venue_forward: bool = False
                ) -> SliceBuild:
    """Filter, invert and weight one expiry's quotes.

    Returns the snapshot (None when the expiry has expired), a reason code per
    quote (``QuoteReject``; 0 = used or merely in the money) and the quotes in
    that order.
    """
    return build_slices([(expiry_ts_ms, expiry_columns(quotes))], now_ms,
                        stale_after_ms=stale_after_ms, max_rel_spread=max_rel_spread,
                        venue_forward=venue_forward)[0]


class _Chain:
    """Every quote of the expiries being built, as flat arrays with per-expiry offsets."""

    def __init__(self, books: Sequence[tuple[int, ExpiryColumns]]) -> None:
        sizes = np.array([len(c.quotes) for _, c in books], np.intp)
        self.stop = np.cumsum(sizes)
        self.start = self.stop - sizes
        self.n = int(self.stop[-1])
        #: per quote, the index of its expiry in ``books``
        self.book = np.repeat(np.arange(sizes.size), sizes)
        values = np.concatenate([c.values for _, c in books], axis=1)  # contiguous columns
        #: ``ts``: exchange time, epoch ms (exact in float64)
        self.strike, self.bid, self.ask, self.ts, self.underlying, self.mark_iv, call = values
        self.is_call = call != 0.0
        self.mid = 0.5 * (self.bid + self.ask)


def _newest(chain: _Chain, live: npt.NDArray[np.bool_]) -> FloatArray:
    """Per live expiry, the underlying price of its newest quote (the first of equals)."""
    quoted = chain.stop > chain.start
    latest = np.maximum.reduceat(chain.ts, chain.start[quoted])  # per quoted expiry
    rank = np.cumsum(quoted) - 1  # an expiry's row in ``latest``
    at = np.flatnonzero(chain.ts == latest[rank[chain.book]])
    expiry = chain.book[at]
    first = at[np.concatenate([[True], expiry[1:] != expiry[:-1]])]  # one per quoted expiry
    newest = np.full(chain.start.size, np.nan)
    newest[quoted] = chain.underlying[first]
    newest[~live] = np.nan
    return newest


def _forwards(chain: _Chain, fresh: npt.NDArray[np.bool_], live: npt.NDArray[np.bool_],
              venue_forward: bool) -> tuple[FloatArray, list[str]]:
    """Each live expiry's forward: the underlying price of its newest quote where that is
    the venue's own forward (``venue_forward``), else from the mids of its ``fresh``
    call-put pairs (a call and a put at one strike), else that underlying price."""
    n_books = chain.start.size
    newest = _newest(chain, live)
    expiry = chain.book
    venue = venue_forward & (newest > 0) & np.isfinite(newest)
    if np.all(venue | ~live):  # no parity needed; ``newest`` is NaN where not live
        return newest, ["venue"] * n_books
    # a pair: the call and the put of one (expiry, strike); first listed of duplicates
    _, strike_code = np.unique(chain.strike, return_inverse=True)
    key = expiry * (int(strike_code.max(initial=0)) + 1) + strike_code
    calls, puts = np.flatnonzero(chain.is_call), np.flatnonzero(~chain.is_call)
    _, ci, pi = np.intersect1d(key[calls], key[puts], return_indices=True)
    c, p = calls[ci], puts[pi]
    paired = live[expiry[c]]
    c, p = c[paired], p[paired]
    mid = np.where(fresh, chain.mid, np.nan)
    forward, _, parity = implied_forwards(expiry[c], chain.strike[c], mid[c], mid[p], newest)
    methods = ["parity" if ok else "fallback" for ok in parity.tolist()]
    # where the venue's forward is missing, parity stands in
    forward = np.where(venue, newest, forward)
    methods = ["venue" if ok else m for ok, m in zip(venue.tolist(), methods, strict=True)]
    return np.where(live, forward, np.nan), methods


def _filter(chain: _Chain, f_q: FloatArray, t_q: FloatArray, fresh: npt.NDArray[np.bool_],
            live_q: npt.NDArray[np.bool_] | None, max_rel_spread: float
            ) -> npt.NDArray[np.int8]:
    """Each quote's reason code from the quote filters and staleness; 0 for the quotes of
    an expiry that is not live (``live_q``; None: every one is)."""
    # Usually every expiry is live: then every quote's column as it is, not a copy of it.
    sel = slice(None) if live_q is None else live_q
    codes = np.zeros(chain.n, np.int8)
    codes[sel] = filter_quotes(chain.bid[sel], chain.ask[sel], f_q[sel], chain.strike[sel],
                               t_q[sel], chain.is_call[sel], max_rel_spread=max_rel_spread)
    stale = ~fresh & (codes == 0)
    codes[stale if live_q is None else stale & live_q] = QuoteReject.STALE
    return codes


def _invert(chain: _Chain, codes: npt.NDArray[np.int8], kept: npt.NDArray[np.bool_],
            f_q: FloatArray, t_q: FloatArray) -> tuple[npt.NDArray[np.intp], FloatArray]:
    """The quotes used, ascending: the out-of-the-money ones of ``kept`` (every filter
    passed) with a mid IV, and their mid, bid and ask IVs (rows of a ``(3, n)`` array);
    ``IV_FAILED`` in ``codes`` where a kept quote's mid has no vol.

    One inversion call, of the used quotes' mids, bids and asks; an in-the-money quote is
    never fitted, so its mid is only checked for a vol to have (``beyond_upper_bound``).
    """
    otm = otm_mask(chain.strike, f_q, chain.is_call)
    codes[kept & ~otm & beyond_upper_bound(chain.mid, f_q, chain.strike, chain.is_call)
          ] = QuoteReject.IV_FAILED
    wing = np.flatnonzero(kept & otm)
    at = np.concatenate((wing, wing, wing))  # flat: numpy's fast paths need no broadcast
    ivs, reason = implied_vol_with_reason(
        np.concatenate((chain.mid[wing], chain.bid[wing], chain.ask[wing])),
        f_q[at], chain.strike[at], t_q[at], chain.is_call[at])
    ivs = ivs.reshape(3, wing.size)
    failed = reason[:wing.size] != 0
    if not failed.any():
        return wing, ivs
    codes[wing[failed]] = QuoteReject.IV_FAILED
    return wing[~failed], ivs[:, ~failed]


def build_slices(books: Sequence[tuple[int, ExpiryColumns]], now_ms: int, *,
                 stale_after_ms: int, max_rel_spread: float, venue_forward: bool = False
                 ) -> list[SliceBuild]:
    """:func:`build_slice` of several expiries (``(expiry_ts_ms, columns)`` each) at once.

    The quote filter runs as one numpy call over every quote of every expiry, the
    implied vols (mid, bid and ask) and the vegas as one over the quotes used: on 30-60
    quotes a slice numpy's per-call overhead, not the arithmetic, is the cost. The
    columns are the chain book's own (:meth:`ChainBook.columns`), not read off the Quotes.
    Each expiry's forward is the venue's own (``venue_forward``: the quotes'
    ``underlying_price``) or comes from its call-put pairs. The results are those of one
    expiry at a time.
    """
    if not books:
        return []
    chain = _Chain(books)
    t_of = (np.array([e for e, _ in books], np.int64) - now_ms) / YEAR_MS  # years_to_expiry
    live = (t_of > 0) & (chain.stop > chain.start)
    fresh = chain.ts >= now_ms - stale_after_ms
    forward, methods = _forwards(chain, fresh, live, venue_forward)
    f_q, t_q = forward[chain.book], t_of[chain.book]
    live_q = None if live.all() else live[chain.book]
    codes = _filter(chain, f_q, t_q, fresh, live_q, max_rel_spread)
    kept = codes == 0
    idx, ivs = _invert(chain, codes, kept if live_q is None else kept & live_q, f_q, t_q)
    iv, bid_iv, ask_iv = ivs
    f_u = f_q[idx]
    weights = fit_weights_grouped(chain.book[idx], len(books), bid_iv, ask_iv,
                                  black76.vega(f_u, chain.strike[idx], t_q[idx], iv))
    k = np.log(chain.strike[idx] / f_u)
    mark = chain.mark_iv[idx]
    # Each expiry's fit inputs are one run of the chain's used quotes: views, not a
    # numpy call per expiry and column.
    runs = idx.searchsorted(np.append(chain.start, chain.n)).tolist()
    out: list[SliceBuild] = []
    for i, ((expiry, columns), ok, t, f, lo, hi) in enumerate(zip(
            books, live.tolist(), t_of.tolist(), forward.tolist(), chain.start.tolist(),
            chain.stop.tolist(), strict=True)):
        a, b = runs[i], runs[i + 1]
        snapshot = SliceSnapshot(
            expiry_ts_ms=expiry, t=t, forward=f, forward_method=methods[i], k=k[a:b],
            iv=iv[a:b], bid_iv=bid_iv[a:b], ask_iv=ask_iv[a:b], weights=weights[a:b],
            mark_iv=mark[a:b]) if ok else None
        out.append((snapshot, codes[lo:hi], columns.quotes))
    return out


def count_rejects(codes: npt.NDArray[np.int8], quotes: list[Quote], since_ns: int) -> Counter[str]:
    """Reject reasons of quotes received after ``since_ns`` (each update counted once)."""
    return count_chain_rejects([(None, codes, quotes)], since_ns)


def count_chain_rejects(built: Sequence[SliceBuild], since_ns: int) -> Counter[str]:
    """:func:`count_rejects` of several expiries' builds (:func:`build_slices`), in the
    chain's order: one pass over all their codes, and only the rejected few quotes looked
    up (not every expiry's quotes joined into one list each batch)."""
    if not built:
        return Counter()
    codes = built[0][1] if len(built) == 1 else np.concatenate([c for _, c, _ in built])
    stops = list(itertools.accumulate(len(q) for _, _, q in built))
    # build_slices' codes are its quotes' by construction: one check of the whole chain
    if len(codes) != stops[-1]:
        raise ValueError("one reason code per quote")
    counts: Counter[str] = Counter()
    rejected = np.flatnonzero(codes)  # the rejected few, not every quote
    for i, code in zip(rejected.tolist(), codes[rejected].tolist(), strict=True):
        j = bisect.bisect_right(stops, i)  # the expiry of the chain's quote i
        if built[j][2][i - (stops[j - 1] if j else 0)].received_ts_ns > since_ns:
            counts[_LABELS[code]] += 1
    return counts


_LABELS = {reason.value: reason.label for reason in QuoteReject}
