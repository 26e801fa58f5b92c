"""Smile dynamics: the ATM point at a fixed tenor, the fixed-strike regression, SSR, deltas.

Notation (docs/dynamics.md has the derivations): ``k = ln(K/F)``; ``sigma_ATM`` the
implied vol at ``k = 0``; ``skew = d sigma / d k`` at ``k = 0``.

An *observation* is one instrument requoted: its implied vol (each quote at its own
forward) moved by ``dvol_i`` at fixed strike while its forward moved by ``dlnf_i``; the
fitted smile's slope at its strike is ``slope_i``. When the smile moves as
``sigma(k + SSR ln(S/S0))`` (Bergomi 2009, "Smile dynamics IV"; Bergomi 2016,
*Stochastic Volatility Modeling*, ch. 2), to first order

    dvol_i = (SSR - 1) * slope_i * dlnf_i + noise_i,

so the fixed-strike coefficient ``b = SSR - 1`` is the weighted least-squares slope of
``dvol`` on ``x = slope * dlnf`` through the origin, each observation weighted by the
inverse variance of its IV change (from the quotes' bid/ask half spreads). SSR is 1
under sticky strike, 0 under sticky moneyness, about 2 for local vol at short
maturities. At the money: spot-vol beta ``d sigma_ATM / d ln S = SSR * skew`` and
fixed-strike beta ``d sigma(K fixed) / d ln S = (SSR - 1) * skew``, finite where the
skew crosses zero. The regression keeps only its weighted sums, so a rolling window is
an exponential decay and the memory is five numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from streamer.core import black76
from streamer.core.native import extension

FloatArray = npt.NDArray[np.float64]
RegimeName = Literal["sticky_strike", "sticky_moneyness", "local_vol", "unknown"]

Z_95 = 1.959963984540054
#: The SSR each regime implies (Bergomi 2016, ch. 2): the classifier picks the nearest.
REGIME_SSR: dict[RegimeName, float] = {"sticky_moneyness": 0.0, "sticky_strike": 1.0,
                                       "local_vol": 2.0}


class AtmPoint(NamedTuple):
    """ATM vol, skew (d sigma / d k) and log forward at one tenor."""

    vol: float
    skew: float
    log_forward: float


class FixedStrikeSums(NamedTuple):
    """Weighted sums of the fixed-strike regression (weights: 1 / variance of each
    observation); ``n`` counts observations (decayed, so not always whole)."""

    sxx: float = 0.0
    sxy: float = 0.0
    syy: float = 0.0
    n: float = 0.0
    taken: int = 0  # observations ever added (not decayed)

    def decayed(self, factor: float) -> FixedStrikeSums:
        """Every past observation's weight times ``factor`` (0 < factor <= 1)."""
        return FixedStrikeSums(self.sxx * factor, self.sxy * factor, self.syy * factor,
                               self.n * factor, self.taken)

    def plus(self, x: npt.ArrayLike, y: npt.ArrayLike, variance: npt.ArrayLike
             ) -> FixedStrikeSums:
        """These sums with observations ``(x, y)`` of the given variances added."""
        terms = ObservationTerms.of(x, y, variance)
        return self.combined(terms.sums(np.ones(terms.w.size, bool)))

    def combined(self, more: FixedStrikeSums) -> FixedStrikeSums:
        """These sums and ``more`` (undecayed) together."""
        return FixedStrikeSums(self.sxx + more.sxx, self.sxy + more.sxy, self.syy + more.syy,
                               self.n + more.n, self.taken + more.taken)


class ObservationTerms(NamedTuple):
    """Each observation's weight and products, once for the sums of several pools."""

    w: FloatArray  # 1 / variance
    xx: FloatArray
    xy: FloatArray
    yy: FloatArray

    @classmethod
    def of(cls, x: npt.ArrayLike, y: npt.ArrayLike, variance: npt.ArrayLike
           ) -> ObservationTerms:
        xa, ya = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
        return cls(1.0 / np.asarray(variance, np.float64).ravel(), xa * xa, xa * ya, ya * ya)

    def sums(self, pool: npt.NDArray[np.bool_]) -> FixedStrikeSums:
        """The sums of the observations in ``pool`` alone (a mask)."""
        w = self.w[pool]
        n = w.size
        return FixedStrikeSums(float(w @ self.xx[pool]), float(w @ self.xy[pool]),
                               float(w @ self.yy[pool]), n, n)


class FixedStrikeFit(NamedTuple):
    """The SSR from a fixed-strike regression, its ``z`` interval and the fit's R²."""

    ssr: float
    ssr_low: float
    ssr_high: float
    r2: float
    n: int


def fixed_strike_fit(sums: FixedStrikeSums, *, z: float = Z_95) -> FixedStrikeFit:
    """SSR = 1 + the WLS slope of ``dvol`` on ``slope * dlnf`` (through the origin).

    The standard error scales the weights by the residuals' own variance (the half
    spreads set the relative noise of observations, not its level); the interval is
    widened to Student t. NaN with fewer than 3 observations or no spread in ``x``.
    """
    n = round(sums.n)
    if sums.n < 3 or not sums.sxx > 0:
        return FixedStrikeFit(np.nan, np.nan, np.nan, np.nan, n)
    b = sums.sxy / sums.sxx
    rss = max(sums.syy - b * sums.sxy, 0.0)
    stderr = math.sqrt(rss / (sums.n - 1.0) / sums.sxx)  # >= 0: rss clipped, n >= 3, sxx > 0
    half = _t_quantile(z, max(n - 1, 1)) * stderr
    r2 = 1.0 - rss / sums.syy if sums.syy > 0 else np.nan
    ssr = 1.0 + b
    return FixedStrikeFit(float(ssr), float(ssr - half), float(ssr + half), float(r2), n)


def classify_regime(ssr: float, low: float, high: float, n: int, *, min_obs: int,
                    max_halfwidth: float) -> RegimeName:
    """The regime whose SSR (0, 1, 2) is nearest, when the estimate is precise enough.

    ``unknown`` with fewer than ``min_obs`` observations, an interval wider than
    ``2 * max_halfwidth``, or an SSR more than 0.5 from every regime's value.
    """
    if n < min_obs or not (math.isfinite(ssr) and math.isfinite(low) and math.isfinite(high)):
        return "unknown"
    if (high - low) / 2.0 > max_halfwidth:
        return "unknown"
    name, value = min(REGIME_SSR.items(), key=lambda item: abs(item[1] - ssr))
    return name if abs(value - ssr) <= 0.5 else "unknown"


class SmileDeltas(NamedTuple):
    """Forward deltas of one option under each assumption about the smile's motion."""

    black76: FloatArray
    sticky_strike: FloatArray
    sticky_moneyness: FloatArray
    smile_adjusted: FloatArray


def atm_at_tenors(t: npt.ArrayLike, atm_vol: npt.ArrayLike, atm_skew: npt.ArrayLike,
                  forward: npt.ArrayLike, tenors: npt.ArrayLike
                  ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """ATM vol, skew and log forward at each of ``tenors`` years, between expiries.

    Parameters
    ----------
    t, atm_vol, atm_skew, forward : array_like, shape (n,)
        Per expiry: years to expiry, ATM vol (decimal), d sigma / d k at k = 0, forward.
        Rows with a non-finite or non-positive entry are ignored.
    tenors : array_like, shape (m,)
        Years. No extrapolation: NaN where no two usable expiries bracket the tenor
        (one sitting exactly on it is enough).

    Returns
    -------
    vol, skew, log_forward : ndarray, shape (m,)

    Notes
    -----
    Linear in t are the ATM total variance ``w = sigma^2 t`` (linear interpolation of
    an increasing ``w`` keeps the calendar free of arbitrage), its slope
    ``dw/dk = 2 sigma t skew`` and ``ln F``; vol and skew are read back from them.
    """
    tt, vol, skew, fwd = (np.asarray(a, np.float64).ravel()
                          for a in (t, atm_vol, atm_skew, forward))
    target = np.asarray(tenors, np.float64).ravel()
    ok = (np.isfinite(tt) & np.isfinite(vol) & np.isfinite(skew) & np.isfinite(fwd)
          & (tt > 0) & (vol > 0) & (fwd > 0))
    if not ok.any():
        nan = np.full(target.shape, np.nan)
        return nan, nan.copy(), nan.copy()
    tt, vol, skew, fwd = tt[ok], vol[ok], skew[ok], fwd[ok]
    order = np.argsort(tt, kind="stable")
    tt, vol, skew, fwd = tt[order], vol[order], skew[order], fwd[order]
    inside = (target >= tt[0]) & (target <= tt[-1])
    w = np.where(inside, np.interp(target, tt, vol * vol * tt), np.nan)
    dw = np.interp(target, tt, 2.0 * vol * tt * skew)
    sigma: FloatArray = np.sqrt(w / target)
    slope: FloatArray = dw / (2.0 * sigma * target)
    log_f: FloatArray = np.where(inside, np.interp(target, tt, np.log(fwd)), np.nan)
    return sigma, slope, log_f


def _kernel() -> Callable[..., bool] | None:
    module = extension("streamer.core._atm_tenors", "atm_points")
    return None if module is None else cast(Callable[..., bool], module.atm_points)


#: The C kernel of :func:`atm_vol_skew_at_tenors` where it was built (None: numpy's).
_NATIVE = _kernel()


def atm_vol_skew_at_tenors(t: npt.ArrayLike, atm_vol: npt.ArrayLike, atm_skew: npt.ArrayLike,
                           forward: npt.ArrayLike, tenors: npt.ArrayLike
                           ) -> tuple[list[float], list[float]]:
    """:func:`atm_at_tenors`' vol and skew (the same bits), as floats: the C kernel
    (``_atm_tenors.c``) where it was built and no two usable expiries share a time."""
    if _NATIVE is not None:
        cols = [np.ascontiguousarray(x, np.float64).ravel()
                for x in (t, atm_vol, atm_skew, forward, tenors)]
        vol, skew = np.empty(cols[4].size), np.empty(cols[4].size)
        if _NATIVE(*cols, vol, skew):
            return vol.tolist(), skew.tolist()
    vol, skew, _ = atm_at_tenors(t, atm_vol, atm_skew, forward, tenors)
    return vol.tolist(), skew.tolist()


def atm_at_tenor(t: npt.ArrayLike, atm_vol: npt.ArrayLike, atm_skew: npt.ArrayLike,
                 forward: npt.ArrayLike, tenor: float) -> AtmPoint | None:
    """:func:`atm_at_tenors` at one tenor; None where it is not bracketed."""
    vol, skew, log_f = atm_at_tenors(t, atm_vol, atm_skew, forward, [tenor])
    if not np.isfinite(vol[0]):
        return None
    return AtmPoint(float(vol[0]), float(skew[0]), float(log_f[0]))


def _t_quantile(z: float, dof: int) -> float:
    """Student-t quantile from the normal one (Cornish–Fisher; < 0.2% off for dof >= 5)."""
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof * dof)


def fixed_strike_dvol(slope: npt.ArrayLike, ssr: npt.ArrayLike) -> FloatArray:
    """``d sigma(K) / d ln F = (SSR - 1) * d sigma / d k`` for a smile slope at the strike.

    Exact when the smile translates in ``k`` (``sigma(k + SSR * ln(F/F0))``); beside the
    money it is the usual first-order reading of a measured SSR.
    """
    result: FloatArray = (np.asarray(ssr, np.float64) - 1.0) * np.asarray(slope, np.float64)
    return result


def smile_adjusted_delta(forward: npt.ArrayLike, strike: npt.ArrayLike, t: npt.ArrayLike,
                         vol: npt.ArrayLike, is_call: npt.ArrayLike,
                         dvol_dlnf: npt.ArrayLike) -> FloatArray:
    """Black-76 forward delta plus ``vega * d sigma(K) / d F``.

    Parameters
    ----------
    forward, strike, t, vol, is_call : array_like
        As in :mod:`streamer.core.black76` (vol: the strike's own implied vol).
    dvol_dlnf : array_like
        How the strike's implied vol moves with the log forward at fixed strike:
        :func:`fixed_strike_dvol`, or the published ``fixed_strike_beta`` at the money
        (it stays finite where the skew, and so the SSR, is near zero).

    Returns
    -------
    ndarray
        d price / d F; multiply by ``F / S`` for the delta to spot when ``F = S e^(b t)``.
    """
    f = np.asarray(forward, np.float64)
    vega = black76.vega(f, strike, t, vol)
    result: FloatArray = (black76.delta(f, strike, t, vol, is_call)
                          + vega * np.asarray(dvol_dlnf, np.float64) / f)
    return result


def smile_deltas(forward: npt.ArrayLike, strike: npt.ArrayLike, t: npt.ArrayLike,
                 vol: npt.ArrayLike, slope: npt.ArrayLike, is_call: npt.ArrayLike,
                 ssr: npt.ArrayLike) -> SmileDeltas:
    """Black-76, sticky-strike, sticky-moneyness and SSR-implied forward deltas.

    ``slope`` is ``d sigma / d k`` of the smile at the strike. Sticky strike leaves
    the strike's vol in place (the Black-76 delta); sticky moneyness moves it by
    ``-slope`` per unit of ``ln F``; the measured dynamics by ``(SSR - 1) * slope``.
    """
    plain = black76.delta(forward, strike, t, vol, is_call)
    return SmileDeltas(
        black76=plain, sticky_strike=plain.copy(),
        sticky_moneyness=smile_adjusted_delta(forward, strike, t, vol, is_call,
                                              -np.asarray(slope, np.float64)),
        smile_adjusted=smile_adjusted_delta(forward, strike, t, vol, is_call,
                                            fixed_strike_dvol(slope, ssr)))

