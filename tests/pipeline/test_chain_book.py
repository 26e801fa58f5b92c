"""ChainBook: the latest quote per instrument, by expiry, and which expiries changed."""

from __future__ import annotations

import msgspec

from streamer.pipeline.chain_book import ChainBook
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
