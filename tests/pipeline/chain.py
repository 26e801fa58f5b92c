"""A synthetic option chain: every expiry's true smile is a raw SVI slice, quoted as
Quotes at listed strikes with bid/ask around the true Black-76 prices."""

from __future__ import annotations

import numpy as np

from streamer.core import black76
from streamer.core.models import svi
from streamer.pipeline.snapshot import SliceSnapshot
from streamer.types import Quote

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOW_NS = NOW_MS * 1_000_000
DAY_MS = 86_400_000
SPOT = 90_000.0


def expiry_ms(days: int) -> int:
    """An expiry ``days`` after NOW_MS, at 08:00 UTC as Deribit's are."""
    return NOW_MS + days * DAY_MS + 8 * 3_600_000


def truth(days: int) -> svi.SVIParams:
    """The true smile of the expiry ``days`` away."""
    return svi.SVIParams(a=0.0004 * days, b=0.0025 * np.sqrt(days), rho=-0.3, m=0.01,
                         sigma=0.12)


def chain_quotes(expiry_days: tuple[int, ...], *, underlying: str = "BTC",
                 received_ns: int = NOW_NS, n_strikes: int = 21) -> list[Quote]:
    """A call and a put at each of ``n_strikes`` strikes of every expiry."""
    quotes = []
    for days in expiry_days:
        t = (expiry_ms(days) - NOW_MS) / (365 * DAY_MS)
        width = 0.3 * np.sqrt(days / 30)
        strikes = np.unique(np.round(SPOT * np.exp(np.linspace(-width, width, n_strikes)), -2))
        vol = np.sqrt(svi.total_variance(np.log(strikes / SPOT), truth(days)) / t)
        for is_call in (True, False):
            prices = black76.price(SPOT, strikes, t, vol, is_call)
            for strike, price in zip(strikes.tolist(), prices.tolist(), strict=True):
                half = max(0.004 * price, 0.5)
                quotes.append(Quote(
                    venue="deribit", underlying=underlying,
                    instrument=f"{underlying}-{days}-{strike:.0f}-{'C' if is_call else 'P'}",
                    expiry_ts_ms=expiry_ms(days), strike=strike, is_call=is_call,
                    bid_price=max(price - half, 0.0), ask_price=price + half,
                    underlying_price=SPOT, index_price=SPOT, exchange_ts_ms=NOW_MS,
                    received_ts_ns=received_ns))
    return quotes


#: Times to expiry (years) of :func:`surface_snaps`'s expiries.
SURFACE_TIMES = (0.02, 0.1, 0.3, 0.6)


def surface_snaps(zigzag: float = 0.0, broken: int = 2) -> list[SliceSnapshot]:
    """Snapshots of four expiries (``SURFACE_TIMES``, ``expiry_ts_ms`` 1-4) on one smooth
    smile in k, bid/ask half a vol point either side; expiry ``broken`` zigzags by
    ``zigzag`` vol points around it (the quote at the money left alone, so its market ATM
    stays put): no smooth smile fits it."""
    out = []
    for i, t in enumerate(SURFACE_TIMES):
        k = np.linspace(-0.3, 0.3, 15) * np.sqrt(t / 0.1)
        iv = 0.55 - 0.15 * k + 0.4 * k * k
        if i == broken:
            iv = iv + zigzag * (-1.0) ** np.arange(k.size) * (np.abs(k) > 1e-9)
        out.append(SliceSnapshot(expiry_ts_ms=i + 1, t=t, forward=1.0, forward_method="parity",
                                 k=k, iv=iv, bid_iv=iv - 0.005, ask_iv=iv + 0.005,
                                 weights=np.ones(k.size)))
    return out
