"""The page's smiles: each slice's fitted vol on a log-moneyness grid, evaluated here.

The browser draws numbers and evaluates no model: the one evaluator of a published
slice is :class:`streamer.client.slices.Slice`, so the page draws what a consumer of
the topic computes. The message carries no quotes; inside the service the chain
book's latest bid/ask IVs are attached per expiry (out-of-the-money side only).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec
import numpy as np

from streamer.client.slices import Slice
from streamer.types import Quote, SurfaceUpdate

#: Grid half-width in standard deviations of the ATM vol over the slice's t.
GRID_STDEVS = 3.0
GRID_POINTS = 61
MIN_HALF_WIDTH_K = 0.05


class QuoteBar(msgspec.Struct, frozen=True, kw_only=True):
    """One option's bid and ask IV at its log-moneyness, decimal vol."""

    k: float
    strike: float
    bid_iv: float | None
    ask_iv: float | None


class SmileCurve(msgspec.Struct, frozen=True, kw_only=True):
    """One expiry's fitted smile (``vol`` is None where the model has no value)."""

    expiry: str
    expiry_ts_ms: int
    status: str
    usable: bool
    k: list[float]
    vol: list[float | None]
    quotes: list[QuoteBar] | None


class Curves(msgspec.Struct, frozen=True, kw_only=True):
    """The ``curves`` event: the smiles of one surface (key and seq as the surface's)."""

    key: str
    seq: int
    slices: list[SmileCurve]


_encoder = msgspec.json.Encoder()


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _grid(s: Slice) -> np.ndarray:
    atm = s.update.atm_vol if math.isfinite(s.update.atm_vol) else 0.8
    half = max(MIN_HALF_WIDTH_K, GRID_STDEVS * atm * math.sqrt(max(s.t, 0.0)))
    return np.linspace(-half, half, GRID_POINTS)


def _bars(s: Slice, quotes: Iterable[Quote]) -> list[QuoteBar]:
    bars = []
    for q in quotes:
        if q.expiry_ts_ms != s.expiry_ts_ms or q.is_call != (q.strike >= s.forward):
            continue
        bid, ask = _finite(q.bid_iv), _finite(q.ask_iv)
        if bid is None and ask is None:
            continue
        bars.append(QuoteBar(k=math.log(q.strike / s.forward), strike=q.strike,
                             bid_iv=bid, ask_iv=ask))
    return sorted(bars, key=lambda b: b.k)


def smile_curve(s: Slice, quotes: list[Quote] | None) -> SmileCurve:
    """One slice's curve and, when ``quotes`` is given, its quotes' bid/ask IVs."""
    if not s.usable:
        return SmileCurve(expiry=s.expiry, expiry_ts_ms=s.expiry_ts_ms, status=s.status,
                          usable=False, k=[], vol=[], quotes=None)
    k = _grid(s)
    with np.errstate(all="ignore"):
        vol = s.vol_k(k)
    bars = None if quotes is None else _bars(s, quotes)
    return SmileCurve(expiry=s.expiry, expiry_ts_ms=s.expiry_ts_ms, status=s.status,
                      usable=True, k=[float(x) for x in k],
                      vol=[_finite(float(v)) for v in vol], quotes=bars)


def surface_curves(update: SurfaceUpdate, quotes: list[Quote] | None = None) -> bytes:
    """The ``curves`` event of one surface, as JSON."""
    slices = [smile_curve(Slice(s, update.model, update.params), quotes)
              for s in update.slices]
    return _encoder.encode(Curves(key=update.key, seq=update.seq, slices=slices))
