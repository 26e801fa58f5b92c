"""The OKX options a connection follows, pure: summaries in, ticker (un)subscriptions out.

OKX's ``opt-summary`` pushes list a family's live options (``Listed``); each option
gets one ``tickers`` subscription, whether or not a quote came out yet. An option is
unsubscribed once a summary of any family is stamped at or after its expiry (OKX's
clock, never ours). A family listing more than ``max_instruments`` options keeps the
nearest expiries (``nearest_first``, the order every venue's cap keeps) and reports each
one left out once. No socket and no clock: the session sends what ``take`` hands out,
paced, and counts and logs what ``follow`` reports.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

from streamer.sources.decoded import InstrumentInfo
from streamer.sources.listing import nearest_first
from streamer.sources.okx import instruments
from streamer.sources.okx.protocol import Listed

NEVER_MS = 2**63 - 1


class Followed(NamedTuple):
    """What one summary changed."""

    queued: bool  # options queued to subscribe or unsubscribe
    over_cap: list[str]  # options left out by the cap, each reported once (instrument_cap)
    first_over_cap: bool  # the first left out since none were: the cap is worth a log line


class FollowedTickers:
    """Options subscribed or queued per family, and the queues of requests to send."""

    def __init__(self, max_instruments: int) -> None:
        self.max_instruments = max_instruments  # per family (currency)
        self._tickers: dict[str, set[str]] = {}  # family -> options subscribed or queued
        self._pending: dict[str, None] = {}  # to subscribe, in arrival order
        self._gone: dict[str, None] = {}  # to unsubscribe
        self._expiry_ms: dict[str, int] = {}  # option -> its expiry, once listed
        self._left_out: set[str] = set()  # listed, over the cap: reported once each
        self._exchange_ms = 0  # the latest summary stamp: OKX's clock
        self._next_expiry_ms = NEVER_MS  # the soonest expiry among ``_tickers``

    def new_connection(self) -> None:
        """Nothing subscribed: the new connection subscribes what its summaries list."""
        self._tickers, self._pending, self._gone = {}, {}, {}
        self._next_expiry_ms = NEVER_MS

    @property
    def queued(self) -> bool:
        """Whether a request is waiting to be sent."""
        return bool(self._pending or self._gone)

    def follow(self, listed: Listed) -> Followed:
        """Queue the options a summary lists that have no ``tickers`` subscription yet, and,
        once the exchange's clock passes an expiry, the options expired to go."""
        self._exchange_ms = now_ms = max(self._exchange_ms, listed.ts_ms)
        known = self._tickers.setdefault(listed.family, set())
        new, over, first = self._within_cap(known, [
            n for n in listed.instruments if n not in known and self._expiry(n) > now_ms])
        if new:
            known.update(new)
            self._pending.update(dict.fromkeys(new))
            self._next_expiry_ms = min(self._next_expiry_ms, *map(self._expiry, new))
        gone = self._drop_expired(now_ms) if now_ms >= self._next_expiry_ms else []
        return Followed(bool(new or gone), over, first)

    def take(self, batch_size: int) -> tuple[str, list[str]] | None:
        """The next request: ``("unsubscribe", options)`` first, else ``("subscribe", ...)``,
        at most ``batch_size`` options, taken off their queue; None if nothing is queued."""
        op, queue = ("unsubscribe", self._gone) if self._gone else ("subscribe", self._pending)
        batch = list(itertools.islice(queue, batch_size))
        if not batch:
            return None
        for name in batch:
            del queue[name]
        return op, batch

    def _within_cap(self, known: set[str], new: list[str]) -> tuple[list[str], list[str], bool]:
        """The new options a family has room for, those left out (each once) and whether
        they are the first left out."""
        room = max(self.max_instruments - len(known), 0)
        if len(new) <= room:
            self._left_out.difference_update(new)
            return new, [], False
        new = nearest_first(new, _info)
        kept, over = new[:room], [n for n in new[room:] if n not in self._left_out]
        self._left_out.difference_update(kept)
        first = bool(over) and not self._left_out
        self._left_out.update(over)
        return kept, over, first

    def _drop_expired(self, now_ms: int) -> list[str]:
        """Queue every option expired at ``now_ms`` to be unsubscribed (once per expiry)."""
        gone: list[str] = []
        for known in self._tickers.values():
            expired = {name for name in known if self._expiry(name) <= now_ms}
            known -= expired
            gone += expired
        for name in gone:
            if name in self._pending:  # queued, never sent: nothing to undo
                del self._pending[name]
            else:
                self._gone[name] = None
            del self._expiry_ms[name]
        self._next_expiry_ms = min((self._expiry(name) for known in self._tickers.values()
                                    for name in known), default=NEVER_MS)
        return gone

    def _expiry(self, name: str) -> int:
        """An option's expiry (ms), parsed once; never for a name that does not parse."""
        expiry = self._expiry_ms.get(name)
        if expiry is None:
            inst = instruments.parse_instrument_name(name)
            expiry = self._expiry_ms[name] = inst.info.expiry_ts_ms if inst else NEVER_MS
        return expiry


def _info(name: str) -> InstrumentInfo | None:
    inst = instruments.parse_instrument_name(name)
    return None if inst is None else inst.info
