"""The page's smiles: each slice's fitted vol on a log-moneyness grid, evaluated here.

The browser draws numbers and evaluates no model: the one evaluator of a published
slice is :class:`streamer.client.slices.Slice`, so the page draws what a consumer of
the topic computes. The message carries no quotes; inside the service the chain
book's latest bid/ask IVs are attached per expiry (out-of-the-money side only), as
columns (``k``, ``bid_iv``, ``ask_iv``; null where a side has no IV). This runs on the
event loop once per published surface while a page is connected: it is vectorised, and
NaN goes out as JSON null by msgspec's own encoding (no per-number Python pass).
"""

from __future__ import annotations

import itertools
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
    """The bid and ask IVs (decimal vol) of one expiry's quotes, by log-moneyness (a side
    with no IV is NaN here, null in the JSON)."""

    k: list[float]
    bid_iv: list[float]
    ask_iv: list[float]


class SmileCurve(msgspec.Struct, frozen=True, kw_only=True):
    """One expiry's fitted smile (``vol`` is NaN, null in the JSON, where the model has no
    value)."""

    expiry: str
    expiry_ts_ms: int
    status: str
    usable: bool
    k: list[float]
    vol: list[float]
    quotes: QuoteBars | None
    #: the slice's own model when it is not the surface's (a per-slice fallback: ``svi``)
    model: str = ""


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

    def bars(self, expiries_ts_ms: Sequence[int], forwards: Sequence[float]
             ) -> list[QuoteBars]:
        """Per expiry (with its forward), its out-of-the-money quotes with an IV on either
        side, by k: one pass over the chain for all of them."""
        if not expiries_ts_ms:
            return []
        expiries = np.asarray(expiries_ts_ms, np.int64)
        order = np.argsort(expiries, kind="stable")
        at = np.searchsorted(expiries[order], self.expiry)
        slot = order[np.minimum(at, len(order) - 1)]  # the quote's slice, if it has one
        with np.errstate(all="ignore"):
            k = np.log(self.strike / np.asarray(forwards, np.float64)[slot])
        keep = ((expiries[slot] == self.expiry) & (self.is_call == (k >= 0))
                & (np.isfinite(self.bid_iv) | np.isfinite(self.ask_iv)))
        ranked = np.lexsort((k[keep], slot[keep]))  # by slice, then by k
        rounded_k = _rounded(k[keep][ranked], K_DECIMALS)
        bid = _rounded(self.bid_iv[keep][ranked], VOL_DECIMALS)
        ask = _rounded(self.ask_iv[keep][ranked], VOL_DECIMALS)
        bounds = np.searchsorted(slot[keep][ranked], np.arange(len(expiries) + 1)).tolist()
        return [QuoteBars(k=rounded_k[a:b], bid_iv=bid[a:b], ask_iv=ask[a:b])
                for a, b in itertools.pairwise(bounds)]


_encoder = msgspec.json.Encoder()


def _rounded(values: FloatArray, decimals: int) -> list[float]:
    """Rounded; NaN and infinities stay, and the encoder writes them as null (JSON has
    neither)."""
    out: list[float] = np.round(values, decimals).tolist()
    return out


def _grids(slices: Sequence[Slice]) -> FloatArray:
    """Each slice's k grid (a row): GRID_STDEVS ATM standard deviations either side."""
    atm = np.array([s.update.atm_vol for s in slices], np.float64)
    t = np.array([s.t for s in slices], np.float64)
    with np.errstate(invalid="ignore"):
        half = GRID_STDEVS * np.where(np.isfinite(atm), atm, 0.8) * np.sqrt(np.maximum(t, 0.0))
    half = np.maximum(MIN_HALF_WIDTH_K, np.nan_to_num(half, nan=MIN_HALF_WIDTH_K))
    result: FloatArray = half[:, None] * np.linspace(-1.0, 1.0, GRID_POINTS)
    return result


def smile_curve(s: Slice, k: FloatArray, bars: QuoteBars | None) -> SmileCurve:
    """One slice's curve on its grid ``k``, with the bid/ask IVs of its expiry if given."""
    if not s.usable:
        return SmileCurve(expiry=s.expiry, expiry_ts_ms=s.expiry_ts_ms, status=s.status,
                          usable=False, k=[], vol=[], quotes=None, model=s.update.model)
    with np.errstate(all="ignore"):
        vol = s.vol_k(k)
    return SmileCurve(expiry=s.expiry, expiry_ts_ms=s.expiry_ts_ms, status=s.status,
                      usable=True, k=_rounded(k, K_DECIMALS), vol=_rounded(vol, VOL_DECIMALS),
                      quotes=bars, model=s.update.model)


def surface_curves(update: SurfaceUpdate, quotes: Sequence[Quote] | None = None) -> bytes:
    """The ``curves`` event of one surface, as JSON."""
    slices = [Slice(s, update.model, update.params) for s in update.slices]
    bars: list[QuoteBars | None] = [None] * len(slices)
    if quotes is not None:
        bars = list(QuoteColumns(quotes).bars([s.expiry_ts_ms for s in slices],
                                              [s.forward for s in slices]))
    curves = [smile_curve(s, k, b) for s, k, b in zip(slices, _grids(slices), bars, strict=True)]
    return _encoder.encode(Curves(key=update.key, seq=update.seq, slices=curves))
