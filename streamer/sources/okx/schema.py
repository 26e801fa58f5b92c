"""OKX v5 public websocket messages as msgspec Structs.

OKX spells fields in camelCase (``instId``, ``fwdPx``): the Structs use snake_case
names with ``rename="camel"``, so the wire names are exactly OKX's. Only the fields
we use are named; unknown fields are ignored, never forbidden. Every number arrives
as a decimal string, ``""`` when absent; the decoder parses them (timestamps, always
present, are parsed by msgspec in lax mode).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

# Decoded from OKX's decimal string by msgspec (``strict=False``); bounded so an absurd
# value is a decode reject.
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Arg(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """``arg`` of a push, an event or a request: the channel and what it is keyed by."""

    channel: str = ""
    inst_id: str | None = None
    inst_family: str | None = None
    uly: str | None = None  # before 2023-06-20 OKX keyed option channels by ``uly``


class Envelope(msgspec.Struct, frozen=True, rename="camel"):
    """Any JSON frame: an event (``subscribe``, ``error``, ``notice``...) or a data push."""

    event: str | None = None
    arg: Arg | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")
    code: str | int = ""
    msg: str = ""


class OptSummary(msgspec.Struct, frozen=True, rename="camel"):
    """One instrument of an ``opt-summary`` push (per instrument family).

    ``fwd_px`` is the forward of the instrument's expiry (absent before 2022);
    vols are decimals, ``"0"`` or ``""`` when there is no bid or ask.
    """

    inst_id: str
    ts: EpochMs
    fwd_px: str = ""
    bid_vol: str = ""
    ask_vol: str = ""
    mark_vol: str = ""


class Ticker(msgspec.Struct, frozen=True, rename="camel"):
    """One instrument of a ``tickers`` push: top of book.

    Prices of coin-margined options (``BTC-USD-...``) are in the coin; sizes are
    in contracts; ``""`` means no order on that side.
    """

    inst_id: str
    ts: EpochMs
    bid_px: str = ""
    ask_px: str = ""
    bid_sz: str = ""
    ask_sz: str = ""


class IndexTicker(msgspec.Struct, frozen=True, rename="camel"):
    """One entry of an ``index-tickers`` push (``instId`` is the index, e.g. ``BTC-USD``)."""

    inst_id: str
    idx_px: str
    ts: str = ""
