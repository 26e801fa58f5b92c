"""Bybit v5 messages (public option websocket, REST instrument list) as msgspec Structs.

Payload fields are camelCase on the wire (``bidPrice``, ``markPriceIv``): those
Structs use snake_case names with ``rename="camel"``. Envelope fields are already
snake_case (``req_id``, ``ret_msg``). Only the fields we use are named; unknown
fields are ignored, never forbidden. Numbers in payloads are decimal strings.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

EpochMs = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Envelope(msgspec.Struct, frozen=True):
    """Any frame: a topic push (``topic``), or an answer to ``op`` (ping, subscribe).

    The option endpoint answers a ping with ``{"op": "pong", "args": [...]}`` and a
    subscribe with ``{"success": ..., "type": "COMMAND_RESP", "data": {...}}``; the
    other endpoints echo ``op`` with ``success`` and ``ret_msg``. Both are accepted.
    """

    topic: str | None = None
    type: str | None = None
    ts: EpochMs | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")
    op: str | None = None
    success: bool | None = None
    ret_msg: str = ""
    req_id: str | None = None


class CommandData(msgspec.Struct, frozen=True, rename="camel"):
    """``data`` of a ``COMMAND_RESP``: which topics were (not) subscribed."""

    success_topics: list[str] = msgspec.field(default_factory=list)
    fail_topics: list[str] = msgspec.field(default_factory=list)


class Ticker(msgspec.Struct, frozen=True, rename="camel"):
    """``data`` of a ``tickers.{symbol}`` push for an option.

    Prices in the settlement coin (USDC, or USDT for ``-USDT`` symbols); IVs are
    decimals; ``"0"`` means no order on that side. Options push snapshots; a field
    absent from a delta keeps its previous value, hence every field is optional.
    """

    symbol: str
    bid_price: str | None = None
    bid_size: str | None = None
    bid_iv: str | None = None
    ask_price: str | None = None
    ask_size: str | None = None
    ask_iv: str | None = None
    mark_price_iv: str | None = None
    underlying_price: str | None = None
    index_price: str | None = None


class InstrumentEntry(msgspec.Struct, frozen=True, rename="camel"):
    """One option of ``GET /v5/market/instruments-info?category=option``."""

    symbol: str
    status: str = "Trading"


class InstrumentsResult(msgspec.Struct, frozen=True,
                       rename={"entries": "list", "next_page_cursor": "nextPageCursor"}):
    """``result`` of the instrument list: one page and the cursor of the next."""

    entries: list[InstrumentEntry] = msgspec.field(default_factory=list)
    next_page_cursor: str = ""


class InstrumentsResponse(msgspec.Struct, frozen=True, rename="camel"):
    """The REST reply around :class:`InstrumentsResult`."""

    ret_code: int
    ret_msg: str = ""
    result: InstrumentsResult = msgspec.field(default_factory=InstrumentsResult)
