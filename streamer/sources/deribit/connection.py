"""What one Deribit connection asks for, in order and paced, pure: replies in, bytes out.

No socket and no clock: the session sends what ``take_outbox`` hands out, feeds each
reply in (``on_reply``, with the time) and calls ``on_timer`` at ``deadline``. The
script, per connection: ``public/set_heartbeat``; ``public/get_instruments`` per
currency; ``public/subscribe`` to ``platform_state``, the DVOL indices and the tickers
(the shared ``Subscriptions``: batches, a channel left out asked once more); then
``public/status`` for locks already in force, and the connection is ``up``. Then every
``refresh_s``: the instruments again, delisted tickers unsubscribed, new ones
subscribed. Each request is answered before the next, with ``request_gap_s`` after it
(under Deribit's rate limit); one unanswered for ``request_timeout_s`` raises
``TimeoutError``. A refused subscribe counts every channel of it and raises
``VenueRefused`` (a new connection asks again, after backoff); a 10028 raises
``RateLimited``; any other refusal is the venue's ``VenueError``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Generator, Iterable, Sequence
from functools import partial
from typing import Any, NamedTuple

import msgspec

from streamer.errors import RateLimited, VenueError, VenueRefused
from streamer.sources.base import QuoteSink
from streamer.sources.decoded import Decoded
from streamer.sources.deribit import protocol
from streamer.sources.deribit.normalise import VENUE
from streamer.sources.deribit.protocol import PLATFORM_STATE, PlatformLocks, reply_error
from streamer.sources.deribit.schema import PlatformStatus
from streamer.sources.listing import Listings
from streamer.sources.pending import REQUEST_TIMEOUT_S
from streamer.sources.subscriptions import Subscriptions

# The session's logger: the venue's log lines keep the name they always had.
log = logging.getLogger("streamer.sources.deribit.session")


class Ask(NamedTuple):
    """Send ``request(id)`` and wait for its reply."""

    request: Callable[[int], bytes]


class Pause(NamedTuple):
    """Send nothing for ``seconds``."""

    seconds: float


UP = "up"  # the script's mark: everything subscribed, the locks known
Script = Generator[Ask | Pause | str, Any, None]


class DeribitConnection:
    """One connection's requests: the script above, driven by replies and deadlines."""

    def __init__(self, currencies: Sequence[str], sink: QuoteSink, *, heartbeat_s: int,
                 interval: str, refresh_s: float, request_gap_s: float,
                 subscriptions: Subscriptions, listings: Listings, locks: PlatformLocks,
                 on_lock_change: Callable[[], None],
                 request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.currencies = list(currencies)
        self.sink = sink
        self.heartbeat_s, self.interval = heartbeat_s, interval
        self.refresh_s, self.request_gap_s = refresh_s, request_gap_s
        self.subscriptions, self.listings, self.locks = subscriptions, listings, locks
        self.on_lock_change = on_lock_change
        self.request_timeout_s = request_timeout_s
        self.up = False  # subscribed and the locks known (the script passed ``UP``)
        #: When ``on_timer`` is due: a pause's end or a request's timeout (None: never).
        self.deadline: float | None = None
        self._ids = itertools.count(1)
        self._outbox: list[bytes] = []
        self._waiting: int | None = None  # the id of the request waiting on its reply
        self._script = self._run()

    # -- the driver ----------------------------------------------------------------------
    def start(self, now: float) -> None:
        """Begin: the first request goes to the outbox."""
        self._step(self._script.send(None), now)

    def next_id(self) -> int:
        """A fresh request id (also for messages no reply is waited on: ``public/test``)."""
        return next(self._ids)

    def take_outbox(self) -> list[bytes]:
        """The requests to send now, in order."""
        out, self._outbox = self._outbox, []
        return out

    def on_reply(self, decoded: Decoded, now: float) -> None:
        """A reply; one to a request no one waits on is ignored. Raises what the script
        raises for a refusal (the connection ends)."""
        if decoded.response_id is None or decoded.response_id != self._waiting:
            return
        self._waiting = None
        error = reply_error(decoded)
        step = (self._script.send(decoded.result) if error is None
                else self._script.throw(error))
        self._step(step, now)

    def on_timer(self, now: float) -> None:
        """At ``deadline``: a pause over, the next request out; or a request unanswered."""
        if self.deadline is None or now < self.deadline:
            return
        if self._waiting is not None:
            raise TimeoutError  # as asyncio.wait_for: the session logs it and reconnects
        self._step(self._script.send(None), now)

    def _step(self, step: Ask | Pause | str, now: float) -> None:
        while step == UP:
            self.up = True
            step = self._script.send(None)
        if isinstance(step, Ask):
            self._waiting = self.next_id()
            self._outbox.append(step.request(self._waiting))
            self.deadline = now + self.request_timeout_s
        elif isinstance(step, Pause):
            self.deadline = now + step.seconds

    # -- the script ----------------------------------------------------------------------
    def _run(self) -> Script:
        yield Ask(partial(protocol.set_heartbeat_request, self.heartbeat_s))
        listed = yield from self._instruments()
        yield from self._subscribe([PLATFORM_STATE, *self._indices(), *self._tickers(listed)])
        yield from self._platform_status()
        yield UP
        while True:
            yield Pause(self.refresh_s)
            listed = yield from self._instruments()
            yield from self._unsubscribe_delisted(listed)
            yield from self._subscribe(self._tickers(listed))

    def _instruments(self) -> Generator[Ask | Pause, Any, set[str]]:
        for currency in self.currencies:
            result = yield Ask(partial(protocol.get_instruments_request, currency))
            self.listings.update(currency, protocol.instrument_names(result))
            yield Pause(self.request_gap_s)
        return self.listings.names()

    def _subscribe(self, channels: list[str]) -> Generator[Ask | Pause, Any, None]:
        subs = self.subscriptions
        new = subs.want(channels)
        while (batch := subs.next_batch()) is not None:
            try:
                result = yield Ask(partial(protocol.subscribe_request, batch))
            except RateLimited:
                subs.refused_all()
                raise
            except VenueError as exc:
                subs.refused_all()
                self._count_rejected(batch)
                log.error("%s: subscription of %d channel(s) refused (%s): %s; reconnecting "
                          "with backoff", VENUE, len(batch), exc, some(batch))
                raise VenueRefused(str(exc)) from exc  # back off; a new connection asks again
            missing = subs.answered(protocol.unconfirmed(batch, result))
            if missing:
                self._count_rejected(missing)
                log.error("%s: %d channel(s) not confirmed twice, left out on this "
                          "connection: %s", VENUE, len(missing), some(missing))
            yield Pause(self.request_gap_s)
        if new:
            log.info("%s: subscribed to %d channels", VENUE, len(subs.subscribed))

    def _platform_status(self) -> Generator[Ask | Pause, Any, None]:
        """Locks in force now: notifications sent while we were away were missed."""
        try:
            status = msgspec.convert((yield Ask(protocol.status_request)), PlatformStatus)
        except RateLimited:
            raise
        except (VenueError, msgspec.ValidationError) as exc:
            log.warning("%s: public/status unusable (%s); locks as last notified", VENUE, exc)
            return
        if self.locks.reset(status):
            self.on_lock_change()

    def _unsubscribe_delisted(self, listed: set[str]) -> Generator[Ask | Pause, Any, None]:
        wanted = {PLATFORM_STATE, *self._indices(), *self._tickers(listed)}
        gone = self.subscriptions.delisted(wanted)
        for batch in gone:
            yield Ask(partial(protocol.unsubscribe_request, batch))
            self.subscriptions.unsubscribed(batch)
            yield Pause(self.request_gap_s)
        if gone:
            names = [c for batch in gone for c in batch]
            log.info("%s: unsubscribed %d channel(s) of delisted instruments: %s", VENUE,
                     len(names), some(names))

    def _indices(self) -> list[str]:
        """DVOL of every currency, published beside our own variance index."""
        return [protocol.volatility_index_channel(c) for c in self.currencies]

    def _tickers(self, instruments: Iterable[str]) -> list[str]:
        return sorted(protocol.ticker_channel(n, self.interval) for n in instruments)

    def _count_rejected(self, channels: list[str]) -> None:
        for _ in channels:
            self.sink.on_reject(VENUE, "subscribe_rejected")


def some(channels: Sequence[str], shown: int = 5) -> str:
    """The first few channels, for a log line."""
    more = len(channels) - shown
    return ", ".join(channels[:shown]) + (f" and {more} more" if more > 0 else "")
