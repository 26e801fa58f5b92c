"""The options a venue lists, per currency, bounded: what a session subscribes to.

Two rules every listing session shares. One empty answer keeps the instruments known
(a venue's hiccup must not unsubscribe a whole currency). A currency listing more than
``max_instruments`` options keeps that many, nearest expiry first and, within an expiry,
by strike (what a desk fits first), and counts each one left out as ``instrument_cap``:
an unbounded listing (100k channels) takes minutes to subscribe, and the venue never
reports up meanwhile.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

from streamer.config import DEFAULT_MAX_INSTRUMENTS
from streamer.sources.base import QuoteSink
from streamer.sources.decoded import InstrumentInfo

#: The reject reason of a listed option left out by the cap.
INSTRUMENT_CAP = "instrument_cap"
__all__ = ["DEFAULT_MAX_INSTRUMENTS", "INSTRUMENT_CAP", "Listings", "nearest_first"]


class Listings:
    """The options last listed per currency, after both rules above."""

    def __init__(self, venue: str, sink: QuoteSink, parse: Callable[[str], InstrumentInfo | None],
                 *, max_instruments: int = DEFAULT_MAX_INSTRUMENTS,
                 logger: logging.Logger | None = None) -> None:
        self.venue, self.sink, self.parse = venue, sink, parse
        self.max_instruments = max_instruments
        self.log = logger or logging.getLogger(__name__)
        self._listed: dict[str, set[str]] = {}
        self._capped: set[str] = set()  # currencies whose cap was said in the log

    def update(self, currency: str, names: set[str]) -> None:
        """A fresh listing of one currency's options."""
        known = self._listed.get(currency)
        if not names and known:
            self.log.warning("%s: no %s options listed; keeping the %d known", self.venue,
                             currency, len(known))
            return
        if len(names) > self.max_instruments:
            names = self._capped_to(currency, names)
        self._listed[currency] = names

    def names(self) -> set[str]:
        """Every currency's options."""
        return set().union(*self._listed.values())

    def _capped_to(self, currency: str, names: set[str]) -> set[str]:
        kept = nearest_first(names, self.parse)[: self.max_instruments]
        for _ in range(len(names) - len(kept)):
            self.sink.on_reject(self.venue, INSTRUMENT_CAP)
        if currency not in self._capped:
            self._capped.add(currency)
            self.log.warning("%s: %d %s options listed, over the cap of %d "
                             "(venues[].max_instruments): subscribing the nearest expiries "
                             "only", self.venue, len(names), currency, self.max_instruments)
        return set(kept)



def nearest_first(names: Iterable[str], parse: Callable[[str], InstrumentInfo | None]
                  ) -> list[str]:
    """Options in the order a cap keeps them: nearest expiry first, then by strike (names
    that do not parse last)."""
    def nearest(name: str) -> tuple[float, float, str]:
        info = parse(name)
        if info is None:
            return math.inf, math.inf, name
        return float(info.expiry_ts_ms), info.strike, name
    return sorted(names, key=nearest)
