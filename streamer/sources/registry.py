"""Venue adapters by configured name: the session class, its decoder and its live URL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from streamer.config import BybitConfig, DeribitConfig, OkxConfig, VenueConfig
from streamer.errors import ConfigError
from streamer.sources.base import QuoteSink
from streamer.sources.binance import protocol as binance_protocol
from streamer.sources.binance.session import BinanceSession
from streamer.sources.bybit import protocol as bybit_protocol
from streamer.sources.bybit.session import BybitSession
from streamer.sources.decoded import Decoded
from streamer.sources.deribit.protocol import DeribitDecoder
from streamer.sources.deribit.session import DeribitSession
from streamer.sources.okx import protocol as okx_protocol
from streamer.sources.okx.session import OkxSession

LIVE = "live"

LIVE_URLS = {
    "deribit": "wss://www.deribit.com/ws/api/v2",
    "okx": okx_protocol.DEFAULT_URL,
    "bybit": bybit_protocol.DEFAULT_URL,
    "binance": binance_protocol.DEFAULT_URL,
}

DECODERS: dict[str, Callable[[], Decoder]] = {
    "deribit": DeribitDecoder,
    "okx": okx_protocol.OkxDecoder,
    "bybit": bybit_protocol.BybitDecoder,
    "binance": binance_protocol.BinanceDecoder,
}


class Decoder(Protocol):
    """Raw venue message → quotes and counted rejects."""

    def decode(self, raw: bytes, received_ns: int) -> Decoded: ...


class Session(Protocol):
    """A running venue connection."""

    async def run(self) -> None: ...


def resolve_url(venue: VenueConfig) -> str:
    """``live`` → the venue's public endpoint; anything else is used as given."""
    return LIVE_URLS[venue.name] if venue.url == LIVE else venue.url


def make_session(venue: VenueConfig, url: str, sink: QuoteSink, **extra: Any) -> Session:
    """The session for a venue, with the settings that apply to it.

    Subscribe pacing left unset (None) in the config is the venue's own default.
    """
    common: dict[str, Any] = {"heartbeat_s": venue.heartbeat_s, **extra}
    for name in ("subscribe_batch", "requests_per_s"):
        if (value := getattr(venue, name)) is not None:
            common[name] = value
    if isinstance(venue, DeribitConfig):
        return DeribitSession(url, venue.currencies, sink, interval=venue.interval,
                              refresh_instruments_s=venue.refresh_instruments_s,
                              max_instruments=venue.max_instruments, **common)
    if isinstance(venue, OkxConfig):
        return OkxSession(url, venue.currencies, sink, max_instruments=venue.max_instruments,
                          **common)
    if isinstance(venue, BybitConfig):
        rest = venue.rest_url or bybit_protocol.DEFAULT_REST_URL
        return BybitSession(url, venue.currencies, sink, rest_url=rest,
                            refresh_instruments_s=venue.refresh_instruments_s,
                            max_instruments=venue.max_instruments, **common)
    return BinanceSession(url, venue.currencies, sink, **common)


def make_decoder(name: str) -> Decoder:
    """A fresh decoder for a venue's raw messages (replays and recordings)."""
    factory = DECODERS.get(name)
    if factory is None:
        raise ConfigError(f"no decoder for venue {name!r}; expected one of {sorted(DECODERS)}")
    return factory()


def guess_venue(raws: list[bytes]) -> str | None:
    """The venue whose decoder finds the most quotes in these raw messages (None: no venue's)."""
    found = {}
    for name, factory in DECODERS.items():
        decoder = factory()
        found[name] = sum(len(decoder.decode(raw, 0).quotes) for raw in raws)
    best = max(found, key=lambda name: found[name])
    return best if found[best] else None
