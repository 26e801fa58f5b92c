"""What a venue decoder hands its session: one frame's meaning, and an option's name parsed.

Shared by every venue (Deribit, OKX, Bybit, Binance): the session code handles the
same ``Decoded`` whatever the venue, and each venue's name parser produces the same
``InstrumentInfo``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streamer.sources.deribit.schema import PlatformState
from streamer.types import Quote


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
    platform: PlatformState | None = None
