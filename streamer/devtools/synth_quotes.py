"""What the venue encoders share: a top of book priced from the true vol, and decimal text.

A bid is the Black-76 price at ``vol - half`` rounded down to the venue's tick, an ask
the price at ``vol + half`` rounded up, at least a tick above the bid; a pulled bid
or one that rounds to nothing is absent (0). Coin-margined venues (Deribit, OKX) quote
premiums in coin, linear ones (Bybit, Binance) in USD(C/T).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from streamer.core import black76
from streamer.devtools.synth_updates import Chain, Updates

Floats = npt.NDArray[np.float64]

#: USD tick of the linear venues' options (Bybit and Binance list BTC in 5s, ETH in 0.1s).
USD_TICK = {"BTC": 5.0, "ETH": 0.1}
DEFAULT_USD_TICK = 0.01


def round_coin(price: Floats, up: bool) -> Floats:
    """Deribit's tick: 0.0001 coin below 0.005, 0.0005 above."""
    tick = np.where(price < 0.005, 0.0001, 0.0005)
    steps = np.ceil(price / tick - 1e-9) if up else np.floor(price / tick + 1e-9)
    return np.round(steps * tick, 4)


def coin_book(chain: Chain, u: Updates) -> tuple[Floats, Floats]:
    """(bid, ask) of every update in coin; a missing bid is 0."""
    k_abs, call = chain.strike[u.inst], chain.is_call[u.inst]
    low = black76.price(u.fwd, k_abs, u.t, np.maximum(u.vol - u.half, 0.01), call)
    bid = round_coin(low / u.fwd, False)
    ask = round_coin(black76.price(u.fwd, k_abs, u.t, u.vol + u.half, call) / u.fwd, True)
    ask = np.maximum(ask, np.maximum(bid, 0.0001) + np.where(bid < 0.005, 0.0001, 0.0005))
    return np.where(u.pulled, 0.0, bid), ask


def usd_book(chain: Chain, u: Updates) -> tuple[Floats, Floats]:
    """(bid, ask) of every update in USD on the underlying's ``USD_TICK``; a missing bid is 0."""
    tick = USD_TICK.get(chain.underlying, DEFAULT_USD_TICK)
    k_abs, call = chain.strike[u.inst], chain.is_call[u.inst]
    low = black76.price(u.fwd, k_abs, u.t, np.maximum(u.vol - u.half, 0.01), call)
    high = black76.price(u.fwd, k_abs, u.t, u.vol + u.half, call)
    bid = np.floor(low / tick + 1e-9) * tick
    ask = np.maximum(np.ceil(high / tick - 1e-9) * tick, np.maximum(bid, tick) + tick)
    return np.where(u.pulled, 0.0, bid), ask


def usd_places(underlying: str) -> int:
    """Decimals that write any price on the underlying's USD tick (at least one, as ``"5.0"``)."""
    tick = USD_TICK.get(underlying, DEFAULT_USD_TICK)
    return max(1, math.ceil(-math.log10(tick) - 1e-9))


def theta_per_day(fwd: Floats, strike: Floats, t: Floats, vol: Floats) -> Floats:
    """Black-76 time decay per calendar day (undiscounted: the same for calls and puts)."""
    decay: Floats = -black76.vega(fwd, strike, t, vol) * vol / (2.0 * t) / 365.0
    return decay


def text(value: float, places: int) -> str:
    """A number as an exchange's decimal string with ``places`` digits, e.g. ``"0.0005"``."""
    return f"{value:.{places}f}"


def trimmed(value: float, places: int) -> str:
    """As :func:`text` without trailing zeros, as OKX writes numbers (``"111"``, ``"0.012"``)."""
    out = f"{value:.{places}f}"
    return out.rstrip("0").rstrip(".") if "." in out else out


def yymmdd(ts_ms: int) -> str:
    """The expiry date in OKX's and Binance's instrument names, e.g. ``241206``."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%y%m%d")
