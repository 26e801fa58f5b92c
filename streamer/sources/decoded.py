"""What a venue decoder hands its session: one frame's meaning, and an option's name parsed.

Shared by every venue (Deribit, OKX, Bybit, Binance): the session code handles the
same ``Decoded`` whatever the venue, and each venue's name parser produces the same
``InstrumentInfo``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from streamer.types import Quote, VenueVolIndex

EXPIRY_HOUR_UTC = 8  # Deribit, OKX, Bybit and Binance all expire options at 08:00 UTC
MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1)}


def expiry_ts_ms(yy: int, month: int, day: int) -> int | None:
    """08:00 UTC of the day 20yy-month-day, in ms since the epoch; None if no such day."""
    try:
        expiry = datetime(2000 + yy, month, day, EXPIRY_HOUR_UTC, tzinfo=UTC)
    except ValueError:
        return None
    return int(expiry.timestamp() * 1000)


def day_month_year_expiry(match: re.Match[str]) -> int | None:
    """Expiry (ms) of an option name's ``day``, ``mon`` (``JAN``..``DEC``) and ``yy`` groups.

    Deribit (``BTC-8JUN20-8750-P``) and Bybit (``BTC-5APR23-28000-C``) spell it alike;
    None for a month or day that does not exist.
    """
    month = MONTHS.get(match["mon"])
    return None if month is None else expiry_ts_ms(int(match["yy"]), month, int(match["day"]))


def parse_decimal(text: str | None) -> float | None:
    """A decimal string as a float: absent or ``""`` is NaN (no value); None if it is not a
    finite number (a reject). OKX, Bybit and Binance send numbers as strings."""
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def yymmdd_expiry_and_strike(match: re.Match[str]) -> tuple[int, float] | None:
    """Expiry (ms) and strike of an option name's ``date`` (YYMMDD) and ``strike`` groups.

    OKX (``BTC-USD-231201-36000-C``) and Binance (``BTC-240927-25000-P``) spell both
    alike; None for a day that does not exist or a strike that is not positive.
    """
    date = match["date"]
    expiry = expiry_ts_ms(int(date[:2]), int(date[2:4]), int(date[4:]))
    strike = float(match["strike"])
    return None if expiry is None or strike <= 0 else (expiry, strike)


class InstrumentInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What an option's name says about it."""

    underlying: str
    expiry_ts_ms: int
    strike: float
    is_call: bool
    linear: bool


class Decoded(msgspec.Struct, gc=False):
    """What one frame meant: quotes, rejections (reasons) and control events.

    ``gc=False``: one is built per frame and its contents (quotes, strings, decoded
    JSON) never refer back to it, so it cannot be part of a reference cycle. The
    ticker fast path builds it positionally (``Decoded([quote])``), which is cheaper.
    """

    quotes: list[Quote] = msgspec.field(default_factory=list)
    rejects: list[str] = msgspec.field(default_factory=list)
    test_request: bool = False
    heartbeat: bool = False
    response_id: int | None = None
    result: Any = None
    error_code: int | None = None
    error_message: str = ""
    platform_state: str | None = None
    #: A venue's platform notice as its own schema decoded it (Deribit's PlatformState):
    #: only that venue's protocol reads it, so this module names no venue's types.
    platform: msgspec.Struct | None = None
    vol_indices: list[VenueVolIndex] = msgspec.field(default_factory=list)


EnvelopeT = TypeVar("EnvelopeT")


def decode_envelope(raw: bytes, received_ts_ns: int, envelope: msgspec.json.Decoder[EnvelopeT],
                    dispatch: Callable[[EnvelopeT, int, Decoded], None]) -> Decoded:
    """Decode a frame's envelope and let the venue's ``dispatch`` read it into a Decoded.

    A frame that is not JSON, or whose envelope or inner parts do not fit the schema,
    is one ``malformed`` reject, never an exception (RecursionError is msgspec's
    answer to pathologically deep nesting); what ``dispatch`` added before that stays.
    """
    out = Decoded()
    try:
        dispatch(envelope.decode(raw), received_ts_ns, out)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        out.rejects.append("malformed")
    return out
