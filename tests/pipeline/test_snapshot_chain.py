"""``build_slices`` (one numpy pass over a chain) against the one-expiry-at-a-time path.

The reference below is ``build_slice`` as it was before the chain-level pass: the same
filter, forward, inversion and weights, one expiry per call. The chain mixes the cases
the pass must keep apart: an expired expiry, an empty one, stale quotes, quotes without
a bid, crossed and one-sided quotes, expiries of very different sizes.
"""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt
import pytest

from streamer.core import black76
from streamer.core.forward import implied_forward
from streamer.core.implied_vol import implied_vol_with_reason
from streamer.core.quotes import QuoteReject, filter_quotes, fit_weights, otm_mask
from streamer.pipeline.chain_book import ChainBook
from streamer.pipeline.snapshot import (
    SliceSnapshot,
    build_slice,
    build_slices,
    expiry_columns,
    years_to_expiry,
)
from streamer.types import Quote

NOW_MS = 1_767_225_600_000
DAY_MS = 86_400_000
SPOT = 90_000.0
STALE_MS = 30_000


def _forward(strike: npt.NDArray[np.float64], is_call: npt.NDArray[np.bool_],
             mid: npt.NDArray[np.float64], fallback: float) -> tuple[float, str]:
    """The expiry's forward from its call-put pairs, one expiry at a time."""
    _, c, p = np.intersect1d(strike[is_call], strike[~is_call], return_indices=True)
    if not c.size:
        return fallback, "fallback"
    est = implied_forward(strike[is_call][c], mid[is_call][c], mid[~is_call][p], fallback)
    return est.forward, est.method


def _reference(quotes: list[Quote], expiry_ts_ms: int, now_ms: int
               ) -> tuple[SliceSnapshot | None, npt.NDArray[np.int8]]:
    t = years_to_expiry(expiry_ts_ms, now_ms)
    codes = np.zeros(len(quotes), np.int8)
    if t <= 0 or not quotes:
        return None, codes
    strike = np.array([q.strike for q in quotes])
    is_call = np.array([q.is_call for q in quotes])
    bid = np.array([q.bid_price for q in quotes])
    ask = np.array([q.ask_price for q in quotes])
    ts = np.array([q.exchange_ts_ms for q in quotes])
    fresh = ts >= now_ms - STALE_MS
    mid = 0.5 * (bid + ask)
    forward, method = _forward(strike, is_call, np.where(fresh, mid, np.nan),
                               quotes[int(np.argmax(ts))].underlying_price)
    codes = filter_quotes(bid, ask, forward, strike, t, is_call, max_rel_spread=1.0)
    codes[(codes == 0) & ~fresh] = QuoteReject.STALE
    iv, reason = implied_vol_with_reason(mid, forward, strike, t, is_call)
    bid_iv = implied_vol_with_reason(bid, forward, strike, t, is_call)[0]
    ask_iv = implied_vol_with_reason(ask, forward, strike, t, is_call)[0]
    codes[(codes == 0) & (reason != 0)] = QuoteReject.IV_FAILED
    use = (codes == 0) & otm_mask(strike, forward, is_call)
    vega = black76.vega(forward, strike[use], t, iv[use])
    return SliceSnapshot(
        expiry_ts_ms=expiry_ts_ms, t=t, forward=forward, forward_method=method,
        k=np.log(strike[use] / forward), iv=iv[use], bid_iv=bid_iv[use], ask_iv=ask_iv[use],
        weights=fit_weights(bid_iv[use], ask_iv[use], vega) if use.any() else np.zeros(0)
    ), codes


def _chain(rng: np.random.Generator, days: float, n_strikes: int) -> list[Quote]:
    expiry = NOW_MS + int(days * DAY_MS)
    t = days / 365.0
    fwd = SPOT * (1 + 0.05 * t)
    strikes = np.unique(np.round(fwd * np.exp(np.linspace(-1, 1, n_strikes) * np.sqrt(t)), -1))
    quotes = []
    for strike in strikes:
        for is_call in (True, False):
            vol = 0.6 - 0.1 * np.log(strike / fwd) + 0.2 * np.log(strike / fwd) ** 2
            price = float(black76.price(fwd, strike, max(t, 1e-6), vol, is_call))
            half = max(0.01 * price, 1.0) * rng.uniform(0.5, 2.0)
            bid, ask = price - half, price + half
            roll = rng.uniform()
            if roll < 0.05:
                bid = float("nan")  # no bid
            elif roll < 0.08:
                bid, ask = ask, bid  # crossed
            ts = NOW_MS - (60_000 if rng.uniform() < 0.1 else 1_000)  # some stale
            quotes.append(Quote(
                venue="deribit", underlying="BTC", instrument=f"BTC-{days}-{strike}-{is_call}",
                expiry_ts_ms=expiry, strike=float(strike), is_call=is_call,
                bid_price=bid, ask_price=ask, underlying_price=fwd, index_price=SPOT,
                exchange_ts_ms=ts, received_ts_ns=ts * 1_000_000))
    return quotes


def _books() -> list[tuple[int, list[Quote]]]:
    rng = np.random.default_rng(5)
    books = [(NOW_MS - DAY_MS, _chain(rng, 1.0, 11)[:4])]  # expired: NOW is past it
    books.append((NOW_MS + 3 * DAY_MS, []))  # listed, no quotes yet
    for days, n in ((0.5, 9), (2.0, 25), (14.0, 41), (90.0, 61), (300.0, 17)):
        quotes = _chain(rng, days, n)
        books.append((quotes[0].expiry_ts_ms, quotes))
    return books


def _same(a: SliceSnapshot | None, b: SliceSnapshot | None) -> None:
    assert (a is None) == (b is None)
    if a is None or b is None:
        return
    assert (a.expiry_ts_ms, a.t, a.forward, a.forward_method) == (
        b.expiry_ts_ms, b.t, b.forward, b.forward_method)
    for name in ("k", "iv", "bid_iv", "ask_iv", "weights"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-13, atol=0,
                                   equal_nan=True, err_msg=name)


def test_chain_pass_equals_one_expiry_at_a_time() -> None:
    books = _books()
    columns = [(e, expiry_columns(quotes)) for e, quotes in books]
    built = build_slices(columns, NOW_MS, stale_after_ms=STALE_MS, max_rel_spread=1.0)
    assert len(built) == len(books)
    rejected = set()
    for (expiry, quotes), (_, cols), (snap, codes, back) in zip(books, columns, built,
                                                                strict=True):
        ref, ref_codes = _reference(quotes, expiry, NOW_MS)
        assert back is cols.quotes
        assert back == quotes
        np.testing.assert_array_equal(codes, ref_codes)
        _same(snap, ref)
        rejected |= {QuoteReject(int(c)) for c in codes if c}
    assert built[0][0] is None  # expired
    assert built[1][0] is None  # empty
    assert {QuoteReject.STALE, QuoteReject.NO_BID, QuoteReject.CROSSED} <= rejected


@pytest.mark.parametrize("i", range(2, 7))
def test_build_slice_of_one_expiry_is_the_chain_pass_of_it(i: int) -> None:
    expiry, quotes = _books()[i]
    one = build_slice(quotes, expiry, NOW_MS, stale_after_ms=STALE_MS, max_rel_spread=1.0)
    ref, ref_codes = _reference(quotes, expiry, NOW_MS)
    np.testing.assert_array_equal(one[1], ref_codes)
    _same(one[0], ref)


def test_an_empty_chain_builds_nothing() -> None:
    assert build_slices([], NOW_MS, stale_after_ms=STALE_MS, max_rel_spread=1.0) == []


def test_the_venues_own_forward_is_each_expirys_forward_where_it_sends_one() -> None:
    """``venue_forward``: the newest quote's ``underlying_price`` (the forward Deribit,
    OKX and Bybit compute their IVs on), not the parity estimate from the mids; an
    expiry whose quotes carry none falls back to parity on its own."""
    books = []
    for i, (expiry, quotes) in enumerate(_books()[2:]):
        said = float("nan") if i == 1 else quotes[0].underlying_price * (1.0 + 0.001 * (i + 1))
        books.append((expiry, [msgspec.structs.replace(q, underlying_price=said)
                               for q in quotes]))
    columns = [(e, expiry_columns(quotes)) for e, quotes in books]
    parity = build_slices(columns, NOW_MS, stale_after_ms=STALE_MS, max_rel_spread=1.0)
    venue = build_slices(columns, NOW_MS, stale_after_ms=STALE_MS, max_rel_spread=1.0,
                         venue_forward=True)
    for i, ((_, quotes), (p, _, _), (v, _, _)) in enumerate(zip(books, parity, venue,
                                                                strict=True)):
        assert p is not None
        assert v is not None
        assert p.forward_method == "parity"
        if i == 1:  # no venue forward: parity
            assert (v.forward, v.forward_method) == (p.forward, "parity")
            continue
        assert (v.forward, v.forward_method) == (quotes[0].underlying_price, "venue")
        assert v.forward != p.forward


def test_a_mid_no_vol_reaches_is_iv_failed_in_or_out_of_the_money() -> None:
    """In-the-money mids are not inverted, only checked against the upper bound: the codes
    stay those of inverting every mid."""
    expiry, quotes = _books()[5]  # 90 days: strikes from 0.6 to 1.6 forwards
    fwd = quotes[0].underlying_price
    itm_call = next(i for i, q in enumerate(quotes) if q.is_call and q.strike < 0.8 * fwd)
    itm_put = next(i for i, q in enumerate(quotes) if not q.is_call and q.strike > 1.2 * fwd)
    otm_call = next(i for i, q in enumerate(quotes) if q.is_call and q.strike > 1.2 * fwd)
    for i, price in ((itm_call, 1.01 * fwd), (itm_put, quotes[itm_put].strike),
                     (otm_call, 1.5 * fwd)):
        quotes[i] = msgspec.structs.replace(quotes[i], bid_price=price, ask_price=price,
                                            exchange_ts_ms=NOW_MS)
    snap, codes, _ = build_slice(quotes, expiry, NOW_MS, stale_after_ms=STALE_MS,
                                 max_rel_spread=1.0)
    ref, ref_codes = _reference(quotes, expiry, NOW_MS)
    assert [codes[i] for i in (itm_call, itm_put, otm_call)] == [QuoteReject.IV_FAILED] * 3
    np.testing.assert_array_equal(codes, ref_codes)
    _same(snap, ref)


def test_the_chain_books_columns_build_what_its_quotes_build() -> None:
    """The engine's path (the book's own columns) against columns read off its quotes,
    after updates that move quotes in place and expiries that drop out."""
    rng = np.random.default_rng(11)
    book = ChainBook("deribit", "BTC")
    books = _books()
    for _, quotes in books:
        for q in quotes:
            book.update(q)
    for _, quotes in books[2:]:  # some instruments quoted again, in a shuffled order
        for i in rng.permutation(len(quotes))[:len(quotes) // 3].tolist():
            book.update(msgspec.structs.replace(quotes[i], bid_price=quotes[i].bid_price * 0.99))
    book.drop_expired(NOW_MS)
    expiries = book.expiries()
    from_book = build_slices([(e, book.columns(e)) for e in expiries], NOW_MS,
                             stale_after_ms=STALE_MS, max_rel_spread=1.0)
    from_quotes = build_slices([(e, expiry_columns(book.quotes(e))) for e in expiries], NOW_MS,
                               stale_after_ms=STALE_MS, max_rel_spread=1.0)
    for (a, codes_a, quotes_a), (b, codes_b, quotes_b) in zip(from_book, from_quotes,
                                                              strict=True):
        assert quotes_a == quotes_b
        np.testing.assert_array_equal(codes_a, codes_b)
        assert msgspec.json.encode(a, enc_hook=lambda x: x.tolist()) == msgspec.json.encode(
            b, enc_hook=lambda x: x.tolist())
