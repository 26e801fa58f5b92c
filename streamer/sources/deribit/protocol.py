"""Deribit protocol, pure: request builders and the decoder (bytes in, events out).

No socket and no clock: the session feeds received frames with their receive
time; ``streamer replay`` feeds tick-file lines the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from streamer.errors import RateLimited, VenueError
from streamer.sources.base import InstrumentCache
from streamer.sources.decoded import (
    Decoded,
    InstrumentInfo,
    day_month_year_expiry,
    decode_envelope,
)
from streamer.sources.deribit.fast_path import fast_path
from streamer.sources.deribit.normalise import VENUE, ticker_quote
from streamer.sources.deribit.schema import (
    Envelope,
    HeartbeatParams,
    Instrument,
    PlatformState,
    PlatformStatus,
    SubscriptionParams,
    Ticker,
    VolatilityIndex,
)
from streamer.types import VenueVolIndex

PLATFORM_STATE = "platform_state"
#: Deribit's "too_many_requests": it closes the connection after sending it.
TOO_MANY_REQUESTS = 10028
VOLATILITY_INDEX = "deribit_volatility_index."
_OPTION = re.compile(
    r"^(?P<base>[A-Z0-9]+)(?:_(?P<settle>[A-Z]+))?-(?P<day>\d{1,2})(?P<mon>[A-Z]{3})(?P<yy>\d{2})"
    r"-(?P<strike>\d+(?:d\d+)?)-(?P<cp>[CP])$")
_FUTURE = re.compile(r"^[A-Z0-9_]+-(PERPETUAL|\d{1,2}[A-Z]{3}\d{2})$")


def parse_instrument_name(name: str) -> InstrumentInfo | None:
    """``BTC-8JUN20-8750-P`` or ``MATIC_USDC-9MAR24-1d02-C``; None for anything else."""
    match = _OPTION.match(name)
    expiry = None if match is None else day_month_year_expiry(match)
    if match is None or expiry is None:
        return None
    strike = float(match["strike"].replace("d", "."))
    return InstrumentInfo(underlying=match["base"], expiry_ts_ms=expiry,
                          strike=strike, is_call=match["cp"] == "C",
                          linear=match["settle"] is not None)


def classify_unparsable(name: str) -> str:
    """Reject reason for an instrument name that is not a plain option."""
    parts = name.split("-")
    if _FUTURE.match(name):
        return "not_option"
    if (len(parts) >= 3 and parts[1].isalpha()) or (len(parts) >= 2 and any(
            parts[1].startswith(tag) for tag in ("STRD", "CSR", "PSR", "CS", "PS", "RR", "STG",
                                                  "CBUT", "PBUT", "CCAL", "PCAL", "ICOND"))):
        return "combo"
    return "unknown_instrument"


def _request(method: str, params: dict[str, Any], request_id: int) -> bytes:
    return msgspec.json.encode({"jsonrpc": "2.0", "id": request_id, "method": method,
                                "params": params})


def subscribe_request(channels: list[str], request_id: int) -> bytes:
    """``public/subscribe`` for at most 250 channels."""
    return _request("public/subscribe", {"channels": channels}, request_id)


def set_heartbeat_request(interval_s: int, request_id: int) -> bytes:
    """``public/set_heartbeat`` (Deribit accepts intervals of 10 s and more)."""
    return _request("public/set_heartbeat", {"interval": interval_s}, request_id)


def unsubscribe_request(channels: list[str], request_id: int) -> bytes:
    """``public/unsubscribe`` for at most 250 channels."""
    return _request("public/unsubscribe", {"channels": channels}, request_id)


def status_request(request_id: int) -> bytes:
    """``public/status``: which currencies (price indices) are locked right now."""
    return _request("public/status", {}, request_id)


def test_request_reply(request_id: int) -> bytes:
    """``public/test``, the answer to a heartbeat ``test_request``."""
    return _request("public/test", {}, request_id)


test_request_reply.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def get_instruments_request(currency: str, request_id: int) -> bytes:
    """``public/get_instruments`` for live options of one currency."""
    return _request("public/get_instruments",
                    {"currency": currency, "kind": "option", "expired": False}, request_id)


def volatility_index_channel(currency: str) -> str:
    """DVOL of a currency (``deribit_volatility_index.btc_usd``)."""
    return f"{VOLATILITY_INDEX}{currency.lower()}_usd"


def ticker_channel(instrument: str, interval: str) -> str:
    """Channel name of an instrument's ticker."""
    return f"ticker.{instrument}.{interval}"


def instrument_names(result: Any) -> set[str]:
    """Active instruments of a ``public/get_instruments`` result (none if unreadable)."""
    try:
        listed = msgspec.convert(result, list[Instrument])
    except msgspec.ValidationError:
        return set()
    return {i.instrument_name for i in listed if i.is_active}


def unconfirmed(requested: Sequence[str], result: Any) -> list[str]:
    """Channels of a subscribe request that its reply's channel list leaves out."""
    confirmed = {c for c in result if isinstance(c, str)} if isinstance(result, list) else set()
    return [c for c in requested if c not in confirmed]


def reply_error(decoded: Decoded) -> VenueError | None:
    """What a reply's error says: ``RateLimited`` for 10028 (the next connection cools
    down), else the venue refusing that request; None for an answer."""
    if decoded.error_code is None:
        return None
    kind = RateLimited if decoded.error_code == TOO_MANY_REQUESTS else VenueError
    return kind(f"error {decoded.error_code}: {decoded.error_message}")


class PlatformLocks:
    """The locks Deribit reports in force that matter to our currencies (pure state).

    Maintenance and platform-wide locks always matter; a price index lock matters
    when the index names one of our currencies (``btc_usd`` for BTC, ``sol_usdc`` for
    USDC). ``platform_state`` notifications change the set; a ``public/status``
    answer replaces it (after a reconnect, notifications sent meanwhile were missed).
    """

    PLATFORM = "platform"

    def __init__(self, currencies: Iterable[str]) -> None:
        self._currencies = {c.upper() for c in currencies}
        self._held: set[str] = set()

    @property
    def locked(self) -> bool:
        """Whether anything we stream from is locked."""
        return bool(self._held)

    def describe(self) -> str:
        """What is locked, for a log line."""
        return ", ".join(sorted(self._held)) or "nothing"

    def notified(self, decoded: Decoded) -> bool:
        """Apply the frame's ``platform_state`` notification, if any; True when
        :attr:`locked` changed."""
        return isinstance(decoded.platform, PlatformState) and self.apply(decoded.platform)

    def apply(self, state: PlatformState) -> bool:
        """Apply one notification; True when :attr:`locked` changed."""
        before = self.locked
        if state.price_index is None:
            wide = state.maintenance if state.maintenance is not None else state.locked
            if wide:
                self._held.add(self.PLATFORM)
            elif wide is not None:
                self._held.discard(self.PLATFORM)
                if state.locked is False:  # a platform-wide unlock frees every index
                    self._held.clear()
        elif state.locked is not None and self._relevant(state.price_index):
            (self._held.add if state.locked else self._held.discard)(state.price_index)
        return before != self.locked

    def reset(self, status: PlatformStatus) -> bool:
        """Replace the locks by a ``public/status`` answer; True when :attr:`locked` changed."""
        before = self.locked
        self._held = {i for i in status.locked_indices if self._relevant(i)}
        if status.locked is True or status.locked == "true":
            self._held.add(self.PLATFORM)
        return before != self.locked

    def _relevant(self, index: str) -> bool:
        return any(part.upper() in self._currencies for part in index.split("_"))


class DeribitDecoder:
    """Turns raw frames into Quotes and control events; never raises."""

    def __init__(self, native: bool | None = None) -> None:
        """``native``: the fast path to take (fast_path.py); None for the best built."""
        self._envelope = msgspec.json.Decoder(Envelope)
        self._sub = msgspec.json.Decoder(SubscriptionParams)
        self._heartbeat = msgspec.json.Decoder(HeartbeatParams)
        self._platform = msgspec.json.Decoder(PlatformState)
        self._vol_index = msgspec.json.Decoder(VolatilityIndex)
        self._ticker = msgspec.json.Decoder(Ticker)
        self._instruments = InstrumentCache(parse_instrument_name, classify_unparsable)
        self._fast = fast_path(self._instruments, native)

    def instrument(self, name: str) -> InstrumentInfo | str:
        """Parsed (and cached) instrument, or the reject reason for its name."""
        return self._instruments[name]

    def decode(self, raw: bytes, received_ts_ns: int) -> Decoded:
        """Decode one frame received at ``received_ts_ns``.

        Fast path first (fast_path.py): a ticker notification straight to its Quote
        or reject reason. Anything it declines goes the generic way, which finds
        what the frame is or the reason to reject it.
        """
        quote_or_reason = self._fast(raw, received_ts_ns)
        if quote_or_reason is None:
            return self._decode(raw, received_ts_ns)
        if isinstance(quote_or_reason, str):
            return Decoded(rejects=[quote_or_reason])
        return Decoded([quote_or_reason])

    def _decode(self, raw: bytes, received_ts_ns: int) -> Decoded:
        return decode_envelope(raw, received_ts_ns, self._envelope, self._dispatch)

    def _dispatch(self, env: Envelope, received_ts_ns: int, out: Decoded) -> None:
        if env.method == "subscription":
            self._subscription(env.params, received_ts_ns, out)
        elif env.method == "heartbeat":
            out.heartbeat = True
            out.test_request = self._heartbeat.decode(env.params).type == "test_request"
        elif env.id is not None:
            self._response(env, out)
        else:
            out.rejects.append("unexpected_message")

    def _response(self, env: Envelope, out: Decoded) -> None:
        out.response_id = env.id
        if env.error is not None:
            out.error_code, out.error_message = env.error.code, env.error.message
        else:
            out.result = msgspec.json.decode(env.result)

    def _subscription(self, params: msgspec.Raw, received_ts_ns: int, out: Decoded) -> None:
        sub = self._sub.decode(params)
        if sub.channel.startswith("ticker."):
            self._ticker_frame(sub.data, received_ts_ns, out)
        elif sub.channel == PLATFORM_STATE:
            out.platform = state = self._platform.decode(sub.data)
            out.platform_state = (str(state.maintenance) if state.maintenance is not None
                                  else bytes(sub.data).decode(errors="replace"))
        elif sub.channel.startswith(VOLATILITY_INDEX):
            self._volatility_index(sub.data, received_ts_ns, out)
        else:
            out.rejects.append("unsubscribed_channel")

    def _volatility_index(self, data: msgspec.Raw, received_ts_ns: int, out: Decoded) -> None:
        index = self._vol_index.decode(data)
        if not (math.isfinite(index.volatility) and index.volatility > 0):
            out.rejects.append("bad_volatility_index")
            return
        out.vol_indices.append(VenueVolIndex(
            venue=VENUE, underlying=index.index_name.split("_")[0].upper(),
            index_name=index.index_name, vol=index.volatility / 100.0,
            exchange_ts_ms=index.timestamp, received_ts_ns=received_ts_ns))

    def _ticker_frame(self, data: msgspec.Raw, received_ts_ns: int, out: Decoded) -> None:
        try:
            tick = self._ticker.decode(data)
        except msgspec.ValidationError:
            # Expired instruments carry strings where numbers are expected.
            out.rejects.append("expired" if b'"expired"' in bytes(data) or b'"closed"' in bytes(
                data) else "malformed")
            return
        quote_or_reason = ticker_quote(tick, self._instruments, received_ts_ns)
        if isinstance(quote_or_reason, str):
            out.rejects.append(quote_or_reason)
        else:
            out.quotes.append(quote_or_reason)
