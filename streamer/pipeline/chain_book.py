"""The latest quote per instrument of one underlying, grouped by expiry, with dirty tracking.

Each expiry also keeps its quotes' numeric fields as one float64 array (a row per field,
a column per instrument), written as each quote arrives: a batch reads every quote of its
expiries, and reading them back out of the Structs every cut cost more than the rest of
building the snapshots, although only a few dozen quotes change between cuts.
"""

from __future__ import annotations

from operator import attrgetter
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from streamer.types import Quote

FloatArray = npt.NDArray[np.float64]

#: the Quote fields of :class:`ExpiryColumns`, in column order (``is_call`` as 0.0/1.0;
#: epoch milliseconds are exact in float64)
COLUMN_FIELDS = ("strike", "bid_price", "ask_price", "exchange_ts_ms", "underlying_price",
                 "mark_iv", "is_call")
fields_of = attrgetter(*COLUMN_FIELDS)
_FIRST_CAPACITY = 16
_NO_ROWS = np.empty((len(COLUMN_FIELDS), 0))
_NO_ROWS.flags.writeable = False


class ExpiryColumns(NamedTuple):
    """One expiry's quotes and their fields: entry ``i`` of each column is ``quotes[i]``'s."""

    quotes: list[Quote]
    #: shape ``(len(COLUMN_FIELDS), len(quotes))``: a field's column is one contiguous row
    values: FloatArray

    def _field(self, row: int) -> FloatArray:
        column: FloatArray = self.values[row]
        return column

    @property
    def strike(self) -> FloatArray:
        return self._field(0)

    @property
    def bid(self) -> FloatArray:
        return self._field(1)

    @property
    def ask(self) -> FloatArray:
        return self._field(2)

    @property
    def exchange_ts_ms(self) -> FloatArray:
        return self._field(3)

    @property
    def underlying_price(self) -> FloatArray:
        return self._field(4)

    @property
    def mark_iv(self) -> FloatArray:
        return self._field(5)

    @property
    def is_call(self) -> npt.NDArray[np.bool_]:
        calls: npt.NDArray[np.bool_] = self.values[6] != 0.0
        return calls


class _Expiry:
    """One expiry's latest quotes, in first-arrival order, and their fields."""

    def __init__(self) -> None:
        self.at: dict[str, int] = {}  # instrument -> its place in ``quotes`` and the columns
        self.quotes: list[Quote] = []
        self.values = np.empty((len(COLUMN_FIELDS), _FIRST_CAPACITY))

    def put(self, quote: Quote) -> None:
        i = self.at.get(quote.instrument)
        if i is None:
            i = self.at[quote.instrument] = len(self.quotes)
            self.quotes.append(quote)
            if i == self.values.shape[1]:  # full: double, so appends stay amortised O(1)
                self.values = np.concatenate([self.values, np.empty_like(self.values)], axis=1)
        else:
            self.quotes[i] = quote
        self.values[:, i] = fields_of(quote)

    def columns(self) -> ExpiryColumns:
        return ExpiryColumns(list(self.quotes), self.values[:, :len(self.quotes)])


class ChainBook:
    """Latest Quote per instrument; remembers which expiries changed since the last cut."""

    def __init__(self, venue: str, underlying: str) -> None:
        self.venue = venue
        self.underlying = underlying
        self._by_expiry: dict[int, _Expiry] = {}
        self.dirty: set[int] = set()
        self._new: dict[str, Quote] = {}
        self.newest_exchange_ts_ms = 0
        self.newest_received_ts_ns = 0
        self.index_price = float("nan")

    def update(self, quote: Quote) -> None:
        """Store a quote (an older one for the same instrument is replaced)."""
        expiry = self._by_expiry.get(quote.expiry_ts_ms)
        if expiry is None:
            expiry = self._by_expiry[quote.expiry_ts_ms] = _Expiry()
        expiry.put(quote)
        self._new[quote.instrument] = quote
        self.dirty.add(quote.expiry_ts_ms)
        if quote.exchange_ts_ms >= self.newest_exchange_ts_ms:
            self.newest_exchange_ts_ms = quote.exchange_ts_ms
            self.index_price = quote.index_price
        self.newest_received_ts_ns = max(self.newest_received_ts_ns, quote.received_ts_ns)

    def drop_expired(self, now_ms: int) -> list[int]:
        """Forget expiries at or before ``now_ms``; returns the dropped expiry timestamps."""
        gone = [e for e in self._by_expiry if e <= now_ms]
        for expiry in gone:
            del self._by_expiry[expiry]
            self.dirty.discard(expiry)
        return gone

    def expiries(self) -> list[int]:
        """Live expiries, ascending."""
        return sorted(self._by_expiry)

    def quotes(self, expiry_ts_ms: int) -> list[Quote]:
        """Latest quotes of one expiry, in the order each instrument first arrived."""
        expiry = self._by_expiry.get(expiry_ts_ms)
        return [] if expiry is None else list(expiry.quotes)

    def columns(self, expiry_ts_ms: int) -> ExpiryColumns:
        """:meth:`quotes` of one expiry with their fields as columns.

        The columns are a view of the book: the next :meth:`update` of that expiry
        writes into them, so copy what must outlive it."""
        expiry = self._by_expiry.get(expiry_ts_ms)
        return ExpiryColumns([], _NO_ROWS) if expiry is None else expiry.columns()

    def take_dirty(self) -> list[int]:
        """Expiries changed since the previous call, ascending; clears the set."""
        dirty = sorted(self.dirty)
        self.dirty.clear()
        return dirty

    def take_new(self) -> list[Quote]:
        """The latest quote of each instrument updated since the previous call; clears."""
        new = list(self._new.values())
        self._new.clear()
        return new

    def __len__(self) -> int:
        return sum(len(e.quotes) for e in self._by_expiry.values())
