"""The page's smiles: each slice's fitted vol on a log-moneyness grid, evaluated here.

The browser draws numbers and evaluates no model: the one evaluator of a published
slice is :class:`streamer.client.slices.Slice`, so the page draws what a consumer of
the topic computes. The message carries no quotes; inside the service the chain
book's latest bid/ask IVs are attached per expiry (out-of-the-money side only), as
columns (``k``, ``bid_iv``, ``ask_iv``; None where a side has no IV). This runs on the
event loop once per published surface while a page is connected: it is vectorised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.client.slices import Slice
from streamer.types import Quote, SurfaceUpdate

FloatArray = npt.NDArray[np.float64]

#: Grid half-width in standard deviations of the ATM vol over the slice's t.
GRID_STDEVS = 3.0
GRID_POINTS = 41
MIN_HALF_WIDTH_K = 0.05
#: Decimals sent: 1e-5 in vol is a thousandth of a vol point, 1e-4 in k a basis point.
VOL_DECIMALS = 5
K_DECIMALS = 4


class QuoteBars(msgspec.Struct, frozen=True, kw_only=True):
    """The bid and ask IVs (decimal vol) of one expiry's quotes, by log-moneyness."""

    k: list[float | None]
    bid_iv: list[float | None]
    ask_iv: list[float | None]


class SmileCurve(msgspec.Struct, frozen=True, kw_only=True):
    """One expiry's fitted smile (``vol`` is None where the model has no value)."""

    expiry: str
    expiry_ts_ms: int
    status: str
    usable: bool
    k: list[float | None]
    vol: list[float | None]
    quotes: QuoteBars | None


class Curves(msgspec.Struct, frozen=True, kw_only=True):
    """The ``curves`` event: the smiles of one surface (key and seq as the surface's)."""

    key: str
    seq: int
    slices: list[SmileCurve]


class QuoteColumns:
    """The quotes behind a surface as arrays, read once per surface."""

    def __init__(self, quotes: Sequence[Quote]) -> None:
        self.expiry = np.fromiter((q.expiry_ts_ms for q in quotes), np.int64, len(quotes))
        self.strike = np.fromiter((q.strike for q in quotes), np.float64, len(quotes))
        self.is_call = np.fromiter((q.is_call for q in quotes), bool, len(quotes))
        self.bid_iv = np.fromiter((q.bid_iv for q in quotes), np.float64, len(quotes))
        self.ask_iv = np.fromiter((q.ask_iv for q in quotes), np.float64, len(quotes))

    def bars(self, expiry_ts_ms: int, forward: float) -> QuoteBars:
        """The out-of-the-money quotes of one expiry with an IV on either side, by k."""
        otm = self.is_call == (self.strike >= forward)
        keep = (self.expiry == expiry_ts_ms) & otm & (np.isfinite(self.bid_iv)
                                                     | np.isfinite(self.ask_iv))
        k = np.log(self.strike[keep] / forward)
        order = np.argsort(k, kind="stable")
        return QuoteBars(k=_rounded(k[order], K_DECIMALS),
                         bid_iv=_rounded(self.bid_iv[keep][order], VOL_DECIMALS),
                         ask_iv=_rounded(self.ask_iv[keep][order], VOL_DECIMALS))


_encoder = msgspec.json.Encoder()


def _rounded(values: FloatArray, decimals: int) -> list[float | None]:
    """Rounded, with NaN and infinities as None (JSON has neither)."""
    out: list[float] = np.round(values, decimals).tolist()
    return [v if math.isfinite(v) else None for v in out]


def _grid(s: Slice) -> FloatArray:
    atm = s.update.atm_vol if math.isfinite(s.update.atm_vol) else 0.8
    half = max(MIN_HALF_WIDTH_K, GRID_STDEVS * atm * math.sqrt(max(s.t, 0.0)))
    return np.linspace(-half, half, GRID_POINTS)


def smile_curve(s: Slice, quotes: QuoteColumns | None) -> SmileCurve:
    """One slice's curve and, when ``quotes`` is given, the bid/ask IVs of its expiry."""
    if not s.usable:
        return SmileCurve(expiry=s.expiry, expiry_ts_ms=s.expiry_ts_ms, status=s.status,
                          usable=False, k=[], vol=[], quotes=None)
    k = _grid(s)
    with np.errstate(all="ignore"):
        vol = s.vol_k(k)
    bars = None if quotes is None else quotes.bars(s.expiry_ts_ms, s.forward)
    return SmileCurve(expiry=s.expiry, expiry_ts_ms=s.expiry_ts_ms, status=s.status,
                      usable=True, k=_rounded(k, K_DECIMALS), vol=_rounded(vol, VOL_DECIMALS),
                      quotes=bars)


def surface_curves(update: SurfaceUpdate, quotes: Sequence[Quote] | None = None) -> bytes:
    """The ``curves`` event of one surface, as JSON."""
    columns = None if quotes is None else QuoteColumns(quotes)
    with np.errstate(all="ignore"):
        slices = [smile_curve(Slice(s, update.model, update.params), columns)
                  for s in update.slices]
    return _encoder.encode(Curves(key=update.key, seq=update.seq, slices=slices))
