"""build_slice: one expiry's quotes as fit inputs (forward, k, mid IVs, weights), and why
each quote it leaves out was left out."""

from __future__ import annotations

from collections import Counter

import msgspec
import numpy as np
import pytest

from streamer.core.models import svi
from streamer.core.quotes import QuoteReject
from streamer.pipeline.snapshot import (
    SliceBuild,
    build_slice,
    count_chain_rejects,
    count_rejects,
    years_to_expiry,
)
from streamer.types import Quote
from tests.pipeline.chain import NOW_MS, NOW_NS, SPOT, chain_quotes, expiry_ms, truth

DAYS = 30


def _build(quotes: list[Quote], now_ms: int = NOW_MS) -> SliceBuild:
    return build_slice(quotes, expiry_ms(DAYS), now_ms, stale_after_ms=60_000,
                       max_rel_spread=1.0)


def test_a_clean_chain_gives_its_out_of_the_money_quotes_at_the_true_vols() -> None:
    quotes = chain_quotes((DAYS,))
    snap, codes, same = _build(quotes)
    assert snap is not None
    assert same == quotes
    assert not codes.any()  # nothing rejected (in the money is not a rejection)
    assert snap.t == years_to_expiry(expiry_ms(DAYS), NOW_MS)
    assert snap.forward == pytest.approx(SPOT, rel=1e-9)  # put-call parity, no carry
    # one quote a strike: the call above the forward, the put below
    assert snap.n_quotes == len(quotes) // 2
    assert np.unique(snap.k).size == snap.n_quotes
    true_vol = np.sqrt(svi.total_variance(snap.k, truth(DAYS)) / snap.t)
    np.testing.assert_allclose(snap.iv, true_vol, atol=1e-6)
    assert np.all(snap.bid_iv < snap.iv)
    assert np.all(snap.iv < snap.ask_iv)
    assert np.all(snap.weights > 0)


def test_an_expired_expiry_has_no_snapshot() -> None:
    quotes = chain_quotes((DAYS,))
    snap, codes, _ = _build(quotes, expiry_ms(DAYS))
    assert snap is None
    assert codes.shape == (len(quotes),)
    assert not codes.any()


def test_stale_and_crossed_quotes_are_left_out_with_their_reason() -> None:
    quotes = chain_quotes((DAYS,))
    otm = [i for i, q in enumerate(quotes) if q.is_call == (q.strike > SPOT)]
    stale_i, crossed_i = otm[3], otm[-3]
    quotes[stale_i] = msgspec.structs.replace(quotes[stale_i], exchange_ts_ms=NOW_MS - 60_001)
    q = quotes[crossed_i]
    quotes[crossed_i] = msgspec.structs.replace(q, bid_price=q.ask_price * 1.5)
    snap, codes, _ = _build(quotes)
    assert snap is not None
    assert codes[stale_i] == QuoteReject.STALE
    assert codes[crossed_i] == QuoteReject.CROSSED
    assert np.count_nonzero(codes) == 2
    assert snap.n_quotes == len(quotes) // 2 - 2
    left_out = np.log(np.array([quotes[stale_i].strike, quotes[crossed_i].strike]) / snap.forward)
    assert not np.isin(left_out, snap.k).any()


def test_count_rejects_counts_only_the_quotes_received_since_the_last_cut() -> None:
    quotes = chain_quotes((DAYS,))
    quotes[0] = msgspec.structs.replace(quotes[0], received_ts_ns=NOW_NS + 1)
    codes = np.zeros(len(quotes), np.int8)
    codes[0] = codes[1] = QuoteReject.CROSSED  # quotes[1] was counted by an earlier cut
    assert count_rejects(codes, quotes, NOW_NS) == {"crossed": 1}


def test_a_chains_rejects_are_counted_as_each_expirys_on_its_own() -> None:
    books = [chain_quotes((days,)) for days in (7, DAYS, 90)]
    books[1][3] = msgspec.structs.replace(books[1][3], received_ts_ns=NOW_NS + 1)
    books[2][0] = msgspec.structs.replace(books[2][0], received_ts_ns=NOW_NS + 1)
    books[2][-1] = msgspec.structs.replace(books[2][-1], received_ts_ns=NOW_NS + 1)
    codes = [np.zeros(len(q), np.int8) for q in books]
    codes[1][3] = QuoteReject.CROSSED
    codes[2][0] = codes[2][-1] = QuoteReject.STALE
    codes[0][2] = QuoteReject.STALE  # received before the last cut: not counted again
    built: list[SliceBuild] = [(None, c, q) for c, q in zip(codes, books, strict=True)]
    expected = sum((count_rejects(c, q, NOW_NS) for c, q in zip(codes, books, strict=True)),
                   start=Counter[str]())
    assert count_chain_rejects(built, NOW_NS) == expected == {"crossed": 1, "stale": 2}
    assert count_chain_rejects([], NOW_NS) == {}
    with pytest.raises(ValueError, match="one reason code per quote"):
        count_chain_rejects([(None, codes[0][:-1], books[0])], NOW_NS)
