"""The bid/ask-aware fit objective shared by the smile models.

A model vol inside a quote's bid/ask IV band is as good as the market can tell, so it
costs nothing there; outside, it costs its distance to the band in half spreads, as in
Kaiko's calibration of crypto option smiles (arXiv 2207.02989). A pure dead zone leaves
the fit free to drift anywhere inside the bands (ill-posed with as many parameters as an
SVI slice has), so each residual also carries a pull toward the band's centre:

    r_i = u_i (p s (v_i - c_i) + (min(v_i - bid_i, 0) + max(v_i - ask_i, 0)) / h_i)

with ``h_i`` the quote's half spread in vol (floored at ``MIN_HALF_SPREAD``; a one-sided
quote takes the slice's median), ``s`` the slice's median ``1 / h``, so the pull is
uniform in vol points whatever the quote's spread, ``p`` the pull, ``u_i`` an optional
per-quote weight (vega, say) and ``c_i`` the centre ``(bid_i + ask_i) / 2`` of the band in
IV (the mid IV where a side is missing). Measured on the real Deribit chains against
Deribit's marks (median over slices): pulling to the IV centre rather than the IV of the
mid price, 0.49 -> 0.41 vp; a uniform pull rather than one in half spreads, 0.46 -> 0.41
vp; the weights in half spreads the pipeline used for mids (with vega), 0.48.

Two options (off by default; SVI uses both, :mod:`streamer.core.models.svi`):

- a *margin* ``m`` in half spreads moves the band's edges inward, to
  ``bid_i + m h_i`` and ``ask_i - m h_i`` (``h_i`` the true half spread, ``m <= 1``): the
  fit aims inside the band, not at its edge, where the quote's IVs computed from our
  forward may sit a few tenths of a vol point off the venue's own;
- a *tail* ``c`` in half spreads makes the distance cost Huber's (Huber 1964): quadratic
  up to ``c`` half spreads outside the (narrowed) band, linear beyond, so a quote the
  smile cannot reach costs in proportion to its miss rather than its square and the fit
  no longer bends a whole wing toward it (which pushed its neighbours out of their bands).

Measured with SVI on the real Deribit chains (``python -m streamer.devtools.scorecard``:
two-sided quotes inside Deribit's bid/ask IVs, hourly / snapshot file, then the median
RMSE to its marks): no margin or tail, pull 1, 93.8 / 92.7 % at 0.43 / 0.82 vp; margin
0.5, pull 0.25, tail 0.5, 96.5 / 93.6 % at 0.44 / 0.88 vp. Cold fits of each snapshot's
final quotes, the same at 96.7 / 93.6 %, put the alternatives beside it: margin 0.3, pull
0.3 without a tail 95.8 / 93.6 % (0.44 / 0.84 vp); with it 95.9 / 94.0 %; a smaller pull
trades RMSE for share (0.1: 97.2 % hourly but 0.97 vp on the snapshot); a pull that
weakens with the spread (wide wing quotes pull less) lost RMSE (0.47-0.55 vp hourly).

A quote with no bid IV has no lower bound; an ask-only quote (no mid) is an upper bound
only, with no pull. Without bid and ask this is weighted least squares on the mids
(neither margin nor tail applies).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from streamer.core.median import row_median

FloatArray = npt.NDArray[np.float64]

#: Weight of the pull toward the band's centre against the band distance (see above).
DEFAULT_PULL = 1.0
#: Half spreads (decimal vol) narrower than this count as this: a quote a tick wide would
#: otherwise pin the smile to the tick.
MIN_HALF_SPREAD = 0.0025


class Objective(NamedTuple):
    """The objective's settings (module docstring): pull ``p``, margin ``m`` and tail ``c``,
    in the order of :func:`make_band`'s arguments."""

    pull: float = DEFAULT_PULL
    margin: float = 0.0
    tail: float = math.inf


class Band(NamedTuple):
    """Per quote (any common shape): what :func:`residuals` needs, precomputed.

    ``lower``/``upper`` are ``-inf``/``+inf`` for a missing side (and the edges moved in
    by the margin); ``pull_w`` is 0 where a quote has no centre (ask-only) or no weight.
    """

    centre: FloatArray
    lower: FloatArray
    upper: FloatArray
    band_w: FloatArray  # u / h
    pull_w: FloatArray  # u p s
    tail: FloatArray  # u c: where the distance cost turns linear (inf: never)


def make_band(mid_iv: npt.ArrayLike, bid_iv: npt.ArrayLike | None,
              ask_iv: npt.ArrayLike | None, weights: npt.ArrayLike | None = None,
              pull: float = DEFAULT_PULL, margin: float = 0.0,
              tail: float = math.inf) -> Band:
    """The band objective's terms for one slice's quotes.

    Parameters
    ----------
    mid_iv : array_like, shape (n,), or (slices, n) for several slices at once
        Mid IVs (decimal; NaN for an ask-only quote or padding).
    bid_iv, ask_iv : array_like, the shape of ``mid_iv``, or None
        Bid and ask IVs, NaN where that side is missing; both None: no band (least
        squares on the mids with ``weights``).
    weights : array_like, the shape of ``mid_iv``, optional
        Extra per-quote weights of the squared residuals (default 1; 0 for padding).
    pull : float
        ``p`` of the module docstring (>= 0).
    margin : float
        ``m`` of the module docstring, in [0, 1] (0: the band's own edges).
    tail : float
        ``c`` of the module docstring, > 0 (inf: the distance cost is quadratic throughout).
    """
    mid = np.asarray(mid_iv, np.float64)
    u = np.ones(mid.shape) if weights is None else np.asarray(weights, np.float64)
    u = np.sqrt(np.where(np.isfinite(u) & (u > 0), u, 0.0))
    has_mid = np.isfinite(mid)
    if bid_iv is None and ask_iv is None:
        centre = np.where(has_mid, mid, 0.0)
        return Band(centre=centre, lower=centre, upper=centre, band_w=u,
                    pull_w=np.where(has_mid, u * pull, 0.0), tail=np.full(mid.shape, np.inf))
    lo = np.full(mid.shape, np.nan) if bid_iv is None else np.asarray(bid_iv, np.float64)
    hi = np.full(mid.shape, np.nan) if ask_iv is None else np.asarray(ask_iv, np.float64)
    lo = np.where(np.isfinite(lo) & (lo > 0), lo, np.nan)
    hi = np.where(np.isfinite(hi) & (hi > 0), hi, np.nan)
    both = np.isfinite(lo) & np.isfinite(hi) & (hi >= lo)
    centre = np.where(both, 0.5 * (lo + hi), np.where(has_mid, mid, 0.0))
    half = np.where(both, 0.5 * (hi - lo), np.nan)
    rows = half.reshape(-1, half.shape[-1]) if half.ndim else half.reshape(1, 1)
    fill = row_median(rows, both.reshape(rows.shape), 0.01).reshape((*half.shape[:-1], 1))
    half = np.maximum(np.where(both, half, fill), MIN_HALF_SPREAD)
    inv_h = 1.0 / half
    quoted = has_mid | both
    scale = row_median(inv_h.reshape(rows.shape), quoted.reshape(rows.shape), 1.0).reshape(
        fill.shape)
    inward = np.where(both, margin * 0.5 * (hi - lo), 0.0)  # both: lo <= centre - inward
    lower = np.where(np.isfinite(lo), np.minimum(lo + inward, np.where(quoted, centre, np.inf)),
                     -np.inf)
    upper = np.where(np.isfinite(hi), np.maximum(hi - inward, np.where(quoted, centre, -np.inf)),
                     np.inf)
    return Band(centre=centre, lower=lower, upper=upper, band_w=u * inv_h,
                pull_w=np.where(quoted, u * pull * scale, 0.0),
                tail=np.where(u > 0, u * tail, np.inf))


def residuals(vol: FloatArray, band: Band) -> tuple[FloatArray, FloatArray]:
    """Residuals of model vols against their bands and ``d r / d vol``.

    Parameters
    ----------
    vol : ndarray
        Model vols (decimal), broadcasting with the band's arrays.
    band : Band
        From :func:`make_band` (or rows of stacked bands).

    Returns
    -------
    r, dr_dvol : ndarray
        ``r`` as in the module docstring; its derivative (``pull_w`` inside the band,
        ``pull_w + band_w`` outside it up to the tail, less beyond).
    """
    below, above = vol < band.lower, vol > band.upper
    outside = np.where(below, vol - band.lower, 0.0) + np.where(above, vol - band.upper, 0.0)
    z = band.band_w * outside
    far = np.abs(z) > band.tail
    c = np.where(far, band.tail, 1.0)  # finite where used
    # Huber beyond the tail: r^2 = 2 c |z| - c^2, so cost and slope are continuous at c
    root = np.sqrt(np.where(far, 2.0 * c * np.abs(z) - c * c, 1.0))
    r: FloatArray = band.pull_w * (vol - band.centre) + np.where(far, np.sign(z) * root, z)
    dz = np.where(far, c / root, 1.0)
    dr: FloatArray = band.pull_w + band.band_w * dz * (below | above)
    return r, dr


def stack(bands: list[Band], n: int) -> Band:
    """Bands of several slices as rows padded to ``n`` points (padding: zero weight)."""
    def rows(field: int, fill: float) -> FloatArray:
        out = np.full((len(bands), n), fill)
        for i, b in enumerate(bands):
            out[i, :b[field].size] = b[field]
        return out
    return Band(centre=rows(0, 1.0), lower=rows(1, 1.0), upper=rows(2, 1.0),
                band_w=rows(3, 0.0), pull_w=rows(4, 0.0), tail=rows(5, np.inf))


def take(band: Band, rows: npt.ArrayLike) -> Band:
    """Some rows of a stacked band."""
    idx = np.asarray(rows)
    return Band(*(np.asarray(x)[idx] for x in band))
