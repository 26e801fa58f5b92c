"""The bid/ask-aware fit objective shared by the smile models.

A model vol inside a quote's bid/ask IV band is as good as the market can tell, so it
costs (almost) nothing; outside, it costs its distance to the band in half spreads, as
in Kaiko's calibration of crypto option smiles (arXiv 2207.02989). A pure dead zone
leaves the fit free to drift anywhere inside the bands (ill-posed with as many
parameters as an SVI slice has), so each residual also carries a small pull toward
the mid:

    r_i = s_i (pull (v_i - mid_i) + min(v_i - bid_i, 0) + max(v_i - ask_i, 0))

with ``s_i`` the square root of the quote's weight. With the fit weights of
:func:`streamer.core.quotes.fit_weights` (inverse squared half spreads times relative
vega) the band term is the distance in half spreads, vega-scaled. A quote with no bid
IV has no lower bound; an ask-only quote (no mid) is an upper bound only and has no
pull; with ``pull = 1`` and infinite bands this is plain weighted least squares on mids.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Default weight of the mid residual against the band distance (measured on the real
#: Deribit chains in tests/real: 0 drifts, 1 is least squares on mids).
DEFAULT_PULL = 0.3


class Band(NamedTuple):
    """Per quote (any common shape): mid, bid and ask IVs and sqrt weights.

    Missing values are encoded so the formulas need no masks: no mid is ``mid = 0`` with
    ``has_mid`` False, no bid is ``lower = -inf``, no ask is ``upper = +inf``.
    """

    mid: FloatArray
    lower: FloatArray
    upper: FloatArray
    sqrt_w: FloatArray
    has_mid: npt.NDArray[np.bool_]


def make_band(mid_iv: npt.ArrayLike, bid_iv: npt.ArrayLike | None,
              ask_iv: npt.ArrayLike | None, weights: npt.ArrayLike | None = None) -> Band:
    """The band of each quote; ``bid_iv``/``ask_iv`` None means mids only (no band).

    A bid above the mid or an ask below it (an IV inversion's rounding) is moved to the
    mid, so the band always contains its mid.
    """
    mid = np.asarray(mid_iv, np.float64)
    lo = np.full(mid.shape, np.nan) if bid_iv is None else np.asarray(bid_iv, np.float64)
    hi = np.full(mid.shape, np.nan) if ask_iv is None else np.asarray(ask_iv, np.float64)
    w = np.ones(mid.shape) if weights is None else np.asarray(weights, np.float64)
    has_mid = np.isfinite(mid)
    if bid_iv is None and ask_iv is None:  # no band: the band is the mid itself
        lo, hi = mid, mid
    lower = np.where(np.isfinite(lo) & (lo > 0), lo, -np.inf)
    upper = np.where(np.isfinite(hi), hi, np.inf)
    lower = np.where(has_mid, np.minimum(lower, np.where(has_mid, mid, 0.0)), lower)
    upper = np.where(has_mid, np.maximum(upper, np.where(has_mid, mid, 0.0)), upper)
    sqrt_w = np.sqrt(np.where(np.isfinite(w) & (w > 0), w, 0.0))
    return Band(mid=np.where(has_mid, mid, 0.0), lower=lower, upper=upper, sqrt_w=sqrt_w,
                has_mid=has_mid)


def residuals(vol: FloatArray, band: Band, pull: float = DEFAULT_PULL
              ) -> tuple[FloatArray, FloatArray]:
    """Residuals of model vols against their bands and ``d r / d vol``.

    Parameters
    ----------
    vol : ndarray
        Model vols (decimal), broadcasting with the band's arrays.
    band : Band
        From :func:`make_band`.
    pull : float
        Weight of ``vol - mid`` inside and outside the band (>= 0).

    Returns
    -------
    r, dr_dvol : ndarray
        ``r`` as in the module docstring; its derivative (``s (pull + 1)`` outside the
        band, ``s pull`` inside, 0 where a quote has no weight).
    """
    below, above = vol < band.lower, vol > band.upper
    outside = np.where(below, vol - band.lower, 0.0) + np.where(above, vol - band.upper, 0.0)
    pull_w = np.where(band.has_mid, pull, 0.0)
    r: FloatArray = band.sqrt_w * (pull_w * (vol - band.mid) + outside)
    dr: FloatArray = band.sqrt_w * (pull_w + (below | above))
    return r, dr
