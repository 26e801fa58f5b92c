"""How a fitted smile sits in the market's bid-ask IV intervals: :class:`SpreadStats`.

The statistics of a chain's published slices come from four sums per slice (the median
half spread, the squared errors in half spreads, the quotes inside their band, the quotes)
over the slices' quotes padded to rows. The C kernel ``_spread_stats.c`` (built by
setup.py where there is a compiler) takes them in one call: numpy's ~40 calls on a dozen
rows of 10-60 quotes, not the arithmetic, were their cost. The numpy path stays the
reference and the fallback (tests/pipeline/test_spread_stats_native.py: the same bits).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.core.median import row_median
from streamer.core.native import extension

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
#: Half-spreads narrower than this (decimal vol) count as this in ``rmse_half_spreads``
#: (``_spread_stats.c`` has its own copy).
MIN_HALF_SPREAD_VOL = 1e-4


class SpreadStats(msgspec.Struct, frozen=True, kw_only=True):
    """How a fitted smile sits in the market's bid-ask IV intervals (docs/dynamics.md).

    ``half_spread_vol``: median of ``(ask_iv - bid_iv) / 2`` over the quotes with both
    IVs, decimal vol. ``rmse_half_spreads``: RMS of ``(model - mid) / h`` with ``h`` the
    distance from the mid IV to the bid IV (model below the mid) or the ask IV (above),
    floored at ``MIN_HALF_SPREAD_VOL``. ``within_spread_fraction``: share of quotes with
    ``bid_iv <= model <= ask_iv``. A missing bid IV (a bid below intrinsic) counts as 0,
    a missing ask IV as no upper bound. All NaN without quotes.
    """

    half_spread_vol: float = float("nan")
    rmse_half_spreads: float = float("nan")
    within_spread_fraction: float = float("nan")


def spread_stats(model_iv: FloatArray, mid_iv: FloatArray, bid_iv: FloatArray,
                 ask_iv: FloatArray) -> SpreadStats:
    """:class:`SpreadStats` of model IVs against the quotes' mid, bid and ask IVs.

    Parameters
    ----------
    model_iv, mid_iv, bid_iv, ask_iv : ndarray, shape (n,)
        Decimal vols per quote; ``bid_iv`` and ``ask_iv`` may hold NaN (missing side).
    """
    if mid_iv.size == 0:
        return SpreadStats()
    return spread_stats_rows(model_iv[None, :], mid_iv[None, :], bid_iv[None, :],
                             ask_iv[None, :], np.ones((1, mid_iv.size), bool))[0]


def spread_stats_rows(model_iv: FloatArray, mid_iv: FloatArray, bid_iv: FloatArray,
                      ask_iv: FloatArray, quoted: BoolArray) -> list[SpreadStats]:
    """:func:`spread_stats` of many slices at once, padded to rows of shape (n, m)
    (``quoted`` False for padding; a row with no quote gets the NaN stats)."""
    # the sums as numpy's (its pairwise row sums fix the bits), the rest in Python floats:
    # the same IEEE operations as numpy's on a handful of rows, without its per-call cost
    return [SpreadStats(half_spread_vol=h, rmse_half_spreads=math.sqrt(sq / n),
                        within_spread_fraction=n_in / n) if n else SpreadStats()
            for h, sq, n_in, n in spread_sums(model_iv, mid_iv, bid_iv, ask_iv, quoted)]


def _kernel() -> Callable[..., None] | None:
    module = extension("streamer.pipeline._spread_stats", "spread_sums")
    return None if module is None else cast(Callable[..., None], module.spread_sums)


#: The C kernel where it was built (None: the numpy path).
_NATIVE = _kernel()


def spread_sums(model_iv: FloatArray, mid_iv: FloatArray, bid_iv: FloatArray,
                ask_iv: FloatArray, quoted: BoolArray) -> list[list[float]]:
    """Per row: the median half spread (NaN without two-sided quotes), the sum of squared
    errors in half spreads, the quotes inside their band and the quotes; by the kernel
    where it was built and the rows are all of one (n, m) shape, else by numpy (the one
    place that decides)."""
    kernel = _NATIVE
    shape = quoted.shape
    if (kernel is None or len(shape) != 2 or shape[1] == 0
            or not model_iv.shape == mid_iv.shape == bid_iv.shape == ask_iv.shape == shape):
        return spread_sums_numpy(model_iv, mid_iv, bid_iv, ask_iv, quoted)
    out = np.empty((shape[0], 4))
    kernel(_f64(model_iv), _f64(mid_iv), _f64(bid_iv), _f64(ask_iv),
           np.ascontiguousarray(quoted, np.bool_), out, shape[1])
    sums: list[list[float]] = out.tolist()
    return sums


def spread_sums_numpy(model_iv: FloatArray, mid_iv: FloatArray, bid_iv: FloatArray,
                      ask_iv: FloatArray, quoted: BoolArray) -> list[list[float]]:
    """:func:`spread_sums` in numpy: the reference and the fallback."""
    has_bid, has_ask = np.isfinite(bid_iv), np.isfinite(ask_iv)
    bid = np.where(has_bid, bid_iv, 0.0)
    ask = np.where(has_ask, ask_iv, np.inf)
    with np.errstate(invalid="ignore"):
        half = row_median(0.5 * (ask_iv - bid_iv), quoted & has_bid & has_ask)
        err = model_iv - mid_iv
        side = np.where(err >= 0.0, ask - mid_iv, mid_iv - bid)
        z = np.where(quoted, err / np.maximum(side, MIN_HALF_SPREAD_VOL), 0.0)
        inside = quoted & (model_iv >= bid) & (model_iv <= ask)
    sums: list[list[float]] = np.column_stack(
        [half, (z * z).sum(axis=1), inside.sum(axis=1), quoted.sum(axis=1)]).tolist()
    return sums


def _f64(x: FloatArray) -> FloatArray:
    return np.ascontiguousarray(x, np.float64)
