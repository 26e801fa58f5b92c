"""The latest quote per instrument of one underlying, grouped by expiry, with dirty tracking."""

from __future__ import annotations

from collections import defaultdict

from streamer.types import Quote


class ChainBook:
    """Latest Quote per instrument; remembers which expiries changed since the last cut."""

    def __init__(self, venue: str, underlying: str) -> None:
        self.venue = venue
        self.underlying = underlying
        self._by_expiry: dict[int, dict[str, Quote]] = defaultdict(dict)
        self.dirty: set[int] = set()
        self._new: dict[str, Quote] = {}
        self.newest_exchange_ts_ms = 0
        self.newest_received_ts_ns = 0
        self.index_price = float("nan")

    def update(self, quote: Quote) -> None:
        """Store a quote (an older one for the same instrument is replaced)."""
        self._by_expiry[quote.expiry_ts_ms][quote.instrument] = quote
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
        """Latest quotes of one expiry."""
        return list(self._by_expiry.get(expiry_ts_ms, {}).values())

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
        return sum(len(q) for q in self._by_expiry.values())
