"""OKX instrument names and channel arguments, pure: what to parse and what to send.

An option is named ``BTC-USD-231201-36000-C`` and belongs to the family ``BTC-USD``
(``-USD-`` options are coin-margined: premiums in BTC). A family's ``index-tickers``
and ``opt-summary`` channels, and each option's ``tickers``, are asked for with
subscription arguments keyed ``channel:key`` alike in requests and acks.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import msgspec

from streamer.sources.decoded import InstrumentInfo, yymmdd_expiry_and_strike
from streamer.sources.okx.schema import Arg

COIN_MARGINED_QUOTE = "USD"  # BTC-USD-...: premiums in BTC
_OPTION = re.compile(r"^(?P<base>[A-Z0-9]+)-(?P<quote>[A-Z]+)-(?P<date>\d{6})"
                     r"-(?P<strike>\d+(?:\.\d+)?)-(?P<cp>[CP])$")
_NOT_OPTION = re.compile(r"^[A-Z0-9]+-[A-Z]+(?:-(?:SWAP|\d{6}))?$")


class Instrument(NamedTuple):
    """A parsed option name and its family (``BTC-USD``)."""

    info: InstrumentInfo
    family: str


def parse_instrument_name(name: str) -> Instrument | None:
    """``BTC-USD-231201-36000-C`` (expiry 2023-12-01 08:00 UTC); None for anything else."""
    match = _OPTION.match(name)
    dated = None if match is None else yymmdd_expiry_and_strike(match)
    if match is None or dated is None:
        return None
    expiry, strike = dated
    info = InstrumentInfo(underlying=match["base"], expiry_ts_ms=expiry,
                          strike=strike, is_call=match["cp"] == "C",
                          linear=match["quote"] != COIN_MARGINED_QUOTE)
    return Instrument(info, f"{match['base']}-{match['quote']}")


def classify_unparsable(name: str) -> str:
    """Reject reason for an instrument name that is not a plain option."""
    return "not_option" if _NOT_OPTION.match(name) else "unknown_instrument"


def instrument_family(currency: str) -> str:
    """``BTC`` -> ``BTC-USD`` (the coin-margined family); a family is kept as it is."""
    return currency if "-" in currency else f"{currency}-{COIN_MARGINED_QUOTE}"


def family_args(family: str) -> list[Arg]:
    """The per-family channels: the index price (first: the fallback forward) and summaries."""
    return [Arg(channel="index-tickers", inst_id=family),
            Arg(channel="opt-summary", inst_family=family)]


def ticker_arg(instrument: str) -> Arg:
    """The ``tickers`` channel of one instrument."""
    return Arg(channel="tickers", inst_id=instrument)


def arg_key(arg: Arg) -> str:
    """``channel:key`` of a subscription argument, the same for requests and acks."""
    return f"{arg.channel}:{arg.inst_id or arg.inst_family or arg.uly or ''}"


_encoder = msgspec.json.Encoder()


def subscribe_request(args: list[Arg], op: str = "subscribe") -> bytes:
    """``{"op": "subscribe", "args": [...]}``, or ``unsubscribe`` (64 KB at most)."""
    return _encoder.encode({"op": op, "args": args})
