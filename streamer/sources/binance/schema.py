"""Binance European options stream messages as msgspec Structs, with Binance's own names.

Combined streams wrap every event as ``{"stream": ..., "data": ...}``; answers to
``SUBSCRIBE`` carry the request ``id``. Only the fields we use are named; unknown
fields are ignored, never forbidden. Prices, sizes and IVs are decimal strings.

Two generations of streams are decoded (both from real tardis.dev captures):

* since 2025-12-17: ``<underlying>usdt@optionMarkPrice`` (one array per underlying,
  every second) carries best bid/ask, their IVs, the mark IV and the index price;
* before: ``<symbol>@ticker`` (the same book and IV fields, no index) with the index
  from ``<UNDERLYING>USDT@index``. Kept so that older recordings replay.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

EpochMs = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class RequestError(msgspec.Struct, frozen=True):
    """``error`` of a refused request."""

    code: int = 0
    msg: str = ""


class Envelope(msgspec.Struct, frozen=True):
    """Any frame: a combined-stream event, or the answer to a request ``id``.

    A refusal comes either as ``{"error": {"code", "msg"}, "id"}`` or with ``code``
    and ``msg`` at the top level, depending on the endpoint.
    """

    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")
    id: int | None = None
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: RequestError | None = None
    code: int | None = None
    msg: str = ""


class OptionMarkPrice(msgspec.Struct, frozen=True):
    """One option of an ``@optionMarkPrice`` array.

    ``bo``/``ao`` best bid/ask price (USDT, ``"0.000"`` when none), ``bq``/``aq``
    their sizes (contracts), ``b``/``a`` their IVs (``"-1.0"`` when none), ``vo``
    mark IV, ``i`` index price, ``E`` event time (ms).
    """

    s: str
    E: EpochMs
    i: str = ""
    bo: str = ""
    ao: str = ""
    bq: str = ""
    aq: str = ""
    b: str = ""
    a: str = ""
    vo: str = ""


class Ticker(msgspec.Struct, frozen=True):
    """The pre-2025-12 ``<symbol>@ticker`` event (same book and IV fields, no index)."""

    s: str
    E: EpochMs
    bo: str = ""
    ao: str = ""
    bq: str = ""
    aq: str = ""
    b: str = ""
    a: str = ""
    vo: str = ""


class IndexPrice(msgspec.Struct, frozen=True):
    """The pre-2025-12 ``<UNDERLYING>USDT@index`` event: ``p`` is the index price."""

    s: str
    p: str
    E: EpochMs = 0
