"""A Deribit ticker to our Quote: units, missing values, and the reasons to reject.

The reference rules. The native fast path (``_fast_path.c``) applies the same rules
in the same order, and tests/sources/test_deribit_fast_path.py holds it to that.
"""

from __future__ import annotations

import math

from streamer.sources.base import InstrumentCache
from streamer.sources.decoded import InstrumentInfo
from streamer.sources.deribit.schema import Ticker
from streamer.types import Quote

VENUE = "deribit"
_NAN = math.nan
_INF = math.inf


def ticker_quote(tick: Ticker, instruments: InstrumentCache[InstrumentInfo],
                 received_ts_ns: int) -> Quote | str:
    """The tick's Quote, or why there is none (the instrument's reason, or the tick's)."""
    name = tick.instrument_name
    info = instruments[name]
    if isinstance(info, str):
        return info
    if tick.state != "open":
        return "expired"
    fwd = tick.underlying_price
    if fwd is None or not 0.0 < fwd < _INF:
        return "no_underlying_price"
    # Deribit sends 0.0 or null for a missing value; NaN here (`x or NaN`).
    bid = tick.best_bid_price or _NAN
    ask = tick.best_ask_price or _NAN
    if bid < 0 or ask < 0:
        return "negative_price"
    if bid > ask:
        return "crossed"
    if not info.linear:  # inverse options quote premiums in coin
        bid *= fwd
        ask *= fwd
    bid_iv, ask_iv, mark_iv = tick.bid_iv, tick.ask_iv, tick.mark_iv
    # Positional, in Quote's field order (see Quote: keywords cost more than the rest).
    return Quote(
        VENUE, info.underlying, name, info.expiry_ts_ms, info.strike, info.is_call,
        bid, ask, fwd, tick.index_price or _NAN, tick.timestamp, received_ts_ns,
        tick.best_bid_amount or _NAN, tick.best_ask_amount or _NAN,
        bid_iv / 100.0 if bid_iv else _NAN, ask_iv / 100.0 if ask_iv else _NAN,
        mark_iv / 100.0 if mark_iv else _NAN)
