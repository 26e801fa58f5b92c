"""The Deribit decoder's fast path: a ticker notification straight to its Quote.

Nearly every frame of a live feed is a ``ticker.*`` notification, so the decoder
first tries this path: ``fast(frame, received_ts_ns)`` gives the Quote, or the
reason the tick is rejected, or None to decline. A declined frame goes the
decoder's generic way, which finds what it is (a response, a heartbeat, an expired
ticker) or why it is malformed. Two implementations, one behaviour:

* :class:`MsgspecFastPath`, the reference: one typed msgspec decode of the whole
  notification, then :func:`~streamer.sources.deribit.normalise.ticker_quote`;
* the native one (``_fast_path.c``, built by setup.py where there is a C compiler),
  which reads the frame in one pass, declines anything unusual (escapes, non-ASCII,
  duplicate keys, response members) and gives, for what it accepts, exactly what
  the reference gives (tests/sources/test_deribit_fast_path.py).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from streamer.sources.base import InstrumentCache
from streamer.sources.decoded import InstrumentInfo
from streamer.sources.deribit.normalise import VENUE, ticker_quote
from streamer.sources.deribit.schema import TickerNotification
from streamer.types import Quote

FastPath = Callable[[bytes, int], Quote | str | None]


class MsgspecFastPath:
    """The reference fast path, in Python on msgspec."""

    def __init__(self, instruments: InstrumentCache[InstrumentInfo]) -> None:
        self._decoder = msgspec.json.Decoder(TickerNotification)
        self._instruments = instruments

    def __call__(self, raw: bytes, received_ts_ns: int) -> Quote | str | None:
        try:
            note = self._decoder.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return None
        params = note.params
        if params is None or not params.channel.startswith("ticker."):
            return None
        return ticker_quote(params.data, self._instruments, received_ts_ns)


def native_fast_path(instruments: InstrumentCache[InstrumentInfo]) -> FastPath | None:
    """The native fast path, or None where it was not built (no C compiler at install)."""
    try:
        from streamer.sources.deribit._fast_path import TickerQuoter
    except ImportError:
        return None
    return TickerQuoter(Quote, instruments, VENUE)


def fast_path(instruments: InstrumentCache[InstrumentInfo], native: bool | None = None) -> FastPath:
    """The native fast path where built (``native=None``), or the one asked for.

    ``native=True`` where it was not built is an error: a caller that asks for it
    (a test, a benchmark) must not measure the other one unknowingly.
    """
    if native is False:
        return MsgspecFastPath(instruments)
    fast = native_fast_path(instruments)
    if fast is None and native:
        raise RuntimeError("the native Deribit fast path is not built (no C compiler at "
                           "install?): reinstall with gcc and the Python headers present")
    return fast or MsgspecFastPath(instruments)
