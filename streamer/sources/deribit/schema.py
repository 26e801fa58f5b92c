"""Deribit wire messages as msgspec Structs, with Deribit's own field names.

Only the fields we use are named ("view" Structs); unknown fields are ignored,
never forbidden, because exchanges add fields.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

# Bounded so an absurd value is a decode reject, not an int that breaks msgpack later.
EpochMs = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class RpcError(msgspec.Struct, frozen=True):
    """``error`` member of a JSON-RPC response."""

    code: int
    message: str = ""


class Envelope(msgspec.Struct, frozen=True):
    """Any frame: a notification (``method``) or a response (``id``)."""

    jsonrpc: str = "2.0"
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw(b"null")
    id: int | None = None
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: RpcError | None = None


class SubscriptionParams(msgspec.Struct, frozen=True):
    """``params`` of a ``subscription`` notification."""

    channel: str
    data: msgspec.Raw


class VolatilityIndex(msgspec.Struct, frozen=True):
    """``deribit_volatility_index.{index_name}`` data: DVOL in percent, ms timestamp."""

    volatility: float
    timestamp: int
    index_name: str


class HeartbeatParams(msgspec.Struct, frozen=True):
    """``params`` of a ``heartbeat`` notification."""

    type: str


class Ticker(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The ``ticker.{instrument}.{interval}`` payload fields we use.

    Premiums are in the settlement coin for inverse options (BTC, ETH) and in
    USDC for linear ones; IVs are in percent; a missing side arrives as 0.0 or null.
    Fields are declared in the order Deribit sends them: msgspec tries the field
    after the last one matched first, so each key is found at once.
    """

    underlying_price: float | None = None
    timestamp: EpochMs
    state: str = "open"
    mark_iv: float | None = None
    instrument_name: str
    index_price: float | None = None
    bid_iv: float | None = None
    best_bid_price: float | None = None
    best_bid_amount: float | None = None
    best_ask_price: float | None = None
    best_ask_amount: float | None = None
    ask_iv: float | None = None


class TickerParams(msgspec.Struct, frozen=True, gc=False):
    """``params`` of a ticker notification, its data decoded in the same pass."""

    channel: str
    data: Ticker


class TickerNotification(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A whole ticker notification in one typed decode (the decoder's fast path).

    Stricter than :class:`Envelope` (``jsonrpc`` and ``method`` must be exactly
    these, which also spares two string objects) and never more lenient: it carries
    every Envelope field with the same types, so a frame it accepts is one the
    generic path would accept and read the same way, and a frame it refuses goes
    the generic way.
    """

    jsonrpc: Literal["2.0"] = "2.0"
    method: Literal["subscription"]
    params: TickerParams | None = None
    id: int | None = None
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: RpcError | None = None


class Instrument(msgspec.Struct, frozen=True):
    """One entry of a ``public/get_instruments`` result."""

    instrument_name: str
    kind: str = "option"
    expiration_timestamp: int = 0
    strike: float | None = None
    option_type: str | None = None
    base_currency: str = ""
    quote_currency: str = ""
    settlement_currency: str | None = None
    is_active: bool = True


class PlatformState(msgspec.Struct, frozen=True):
    """A ``platform_state`` notification: maintenance, or a price index (un)locked.

    ``{"price_index": "sol_usdc", "locked": true}`` locks one index; without
    ``price_index`` a lock is platform-wide.
    """

    price_index: str | None = None
    locked: bool | None = None
    maintenance: bool | None = None


class PlatformStatus(msgspec.Struct, frozen=True):
    """The ``public/status`` result: ``locked`` is ``"true"``, ``"partial"`` or ``"false"``."""

    locked: str | bool = "false"
    locked_indices: list[str] = msgspec.field(default_factory=list)
