"""ChainBook: the latest quote per instrument, by expiry, and which expiries changed."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.pipeline.chain_book import COLUMN_FIELDS, ChainBook
from streamer.pipeline.snapshot import expiry_columns
from streamer.types import Quote

E1, E2 = 1_000_000, 2_000_000  # expiry timestamps, ms


def _quote(instrument: str, expiry: int, *, bid: float = 1.0, exchange_ms: int = 10,
           received_ns: int = 100, index: float = 50.0) -> Quote:
    return Quote(venue="deribit", underlying="BTC", instrument=instrument, expiry_ts_ms=expiry,
                 strike=100.0, is_call=True, bid_price=bid, ask_price=bid + 0.1,
                 underlying_price=index, index_price=index, exchange_ts_ms=exchange_ms,
                 received_ts_ns=received_ns)


def test_a_newer_quote_replaces_the_instruments_older_one() -> None:
    book = ChainBook("deribit", "BTC")
    book.update(_quote("A", E1, bid=1.0))
    book.update(_quote("B", E1, bid=2.0))
    book.update(_quote("A", E1, bid=3.0))
    assert len(book) == 2
    assert sorted(q.bid_price for q in book.quotes(E1)) == [2.0, 3.0]
    assert book.quotes(E2) == []


def test_take_dirty_names_each_changed_expiry_once_ascending_then_clears() -> None:
    book = ChainBook("deribit", "BTC")
    book.update(_quote("B", E2))
    book.update(_quote("A", E1))
    book.update(_quote("A2", E1))
    assert book.take_dirty() == [E1, E2]
    assert book.take_dirty() == []
    book.update(_quote("B", E2, bid=5.0))
    assert book.take_dirty() == [E2]


def test_take_new_gives_each_updated_instruments_latest_quote_then_clears() -> None:
    book = ChainBook("deribit", "BTC")
    book.update(_quote("A", E1, bid=1.0))
    book.update(_quote("A", E1, bid=4.0))
    assert [q.bid_price for q in book.take_new()] == [4.0]
    assert book.take_new() == []


def test_the_index_price_comes_from_the_newest_exchange_time_only() -> None:
    book = ChainBook("deribit", "BTC")
    book.update(_quote("A", E1, exchange_ms=20, received_ns=300, index=51.0))
    book.update(_quote("B", E1, exchange_ms=10, received_ns=200, index=49.0))  # older, late
    assert book.index_price == 51.0
    assert book.newest_exchange_ts_ms == 20
    assert book.newest_received_ts_ns == 300


def test_an_expired_expiry_is_dropped_with_its_dirty_mark() -> None:
    book = ChainBook("deribit", "BTC")
    book.update(_quote("A", E1))
    book.update(_quote("B", E2))
    assert book.drop_expired(E1) == [E1]  # at its expiry instant: gone
    assert book.expiries() == [E2]
    assert book.take_dirty() == [E2]
    assert book.quotes(E1) == []
    assert len(book) == 1


def test_a_quote_is_stored_as_given() -> None:
    book = ChainBook("deribit", "BTC")
    quote = _quote("A", E1)
    book.update(quote)
    assert msgspec.structs.asdict(book.quotes(E1)[0]) == msgspec.structs.asdict(quote)


def test_columns_are_the_quotes_fields_in_the_books_order() -> None:
    book = ChainBook("deribit", "BTC")
    for i in range(40):  # past the first row capacity: the rows grow with the quotes
        book.update(_quote(f"I{i}", E1, bid=float(i), exchange_ms=i))
    book.update(_quote("I3", E1, bid=99.0, exchange_ms=50))
    columns = book.columns(E1)
    assert columns.quotes == book.quotes(E1)
    assert [q.instrument for q in columns.quotes][:4] == ["I0", "I1", "I2", "I3"]
    assert columns.bid[3] == 99.0
    assert columns.exchange_ts_ms[3] == 50.0
    assert columns.values.shape == (len(COLUMN_FIELDS), 40)
    assert book.columns(E2).values.shape == (len(COLUMN_FIELDS), 0)
    assert book.columns(E2).quotes == []


def test_a_quote_listed_again_after_its_expiry_was_dropped_starts_a_new_book() -> None:
    book = ChainBook("deribit", "BTC")
    book.update(_quote("A", E1, bid=1.0))
    book.drop_expired(E1)
    book.update(_quote("B", E1, bid=2.0))
    assert [q.instrument for q in book.quotes(E1)] == ["B"]
    np.testing.assert_array_equal(book.columns(E1).bid, [2.0])


_prices = st.floats(-1.0, 1e4) | st.sampled_from([math.nan, math.inf, 0.0])
_update = st.tuples(st.just("update"), st.integers(0, 11), st.integers(0, 2), st.booleans(),
                    _prices, _prices, st.floats(1.0, 2e5), st.integers(0, 10**13),
                    _prices | st.just(math.nan))
_expire = st.tuples(st.just("expire"), st.integers(0, 3))
_take = st.tuples(st.just("take"))


def _random_quote(instrument: int, expiry: int, is_call: bool, bid: float, ask: float,
                  underlying: float, exchange_ms: int, mark_iv: float) -> Quote:
    return Quote(venue="deribit", underlying="BTC", instrument=f"I{instrument}",
                 expiry_ts_ms=(expiry + 1) * E1, strike=1000.0 * (instrument + 1),
                 is_call=is_call, bid_price=bid, ask_price=ask, underlying_price=underlying,
                 index_price=underlying, exchange_ts_ms=exchange_ms,
                 received_ts_ns=exchange_ms * 1_000_000, mark_iv=mark_iv)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_update, _expire, _take), max_size=120))
def test_the_books_columns_are_its_quotes_fields_after_any_history(ops: list[Any]) -> None:
    """Inserts, updates (an instrument may move to another expiry), expiries dropped, dirty
    sets taken: every accessor agrees with a dict of dicts and with columns read off the
    quotes."""
    book = ChainBook("deribit", "BTC")
    reference: dict[int, dict[str, Quote]] = {}
    for op, *args in ops:
        if op == "update":
            quote = _random_quote(*args)
            book.update(quote)
            reference.setdefault(quote.expiry_ts_ms, {})[quote.instrument] = quote
        elif op == "expire":
            now = args[0] * E1
            assert book.drop_expired(now) == [e for e in reference if e <= now]
            reference = {e: q for e, q in reference.items() if e > now}
        else:
            book.take_dirty()
            book.take_new()
        assert book.expiries() == sorted(reference)
        assert len(book) == sum(len(q) for q in reference.values())
        for expiry, quotes in reference.items():
            columns = book.columns(expiry)
            assert book.quotes(expiry) == columns.quotes == list(quotes.values())
            np.testing.assert_array_equal(columns.values,
                                          expiry_columns(columns.quotes).values)
            np.testing.assert_array_equal(columns.is_call,
                                          [q.is_call for q in columns.quotes])
