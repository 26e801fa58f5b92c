"""Smile dynamics: the ATM point at a fixed tenor, spot-vol regressions, SSR, smile deltas.

Notation (docs/dynamics.md has the derivations): ``k = ln(K/F)``; ``sigma_ATM`` the
implied vol at ``k = 0``; ``skew = d sigma / d k`` at ``k = 0``. Over a pair of surfaces
``i`` the ATM vol moves by ``dvol_i`` while the log forward moves by ``dlnf_i``.

- Spot-vol beta: the OLS slope of ``dvol`` on ``dlnf``, ``beta = d sigma_ATM / d ln S``.
- Skew stickiness ratio (Bergomi 2009, "Smile dynamics IV"; Bergomi 2016, *Stochastic
  Volatility Modeling*, ch. 2): ``SSR = beta / skew``, estimated as the OLS slope of
  ``dvol`` on ``skew * dlnf`` over the pairs whose skew is away from zero. 1 under
  sticky strike, 0 under sticky moneyness, about 2 for local vol at short maturities.
- Fixed-strike beta: ``d sigma(K fixed) / d ln S = beta - skew = (SSR - 1) * skew``, the
  OLS slope of ``dvol - skew * dlnf`` on ``dlnf``; finite where the SSR is not.

Every regression has an intercept (it absorbs slow drifts such as the roll-down of a
fixed-expiry smile) and is refitted once without the pairs whose residual exceeds
``TRIM`` robust standard deviations (a failed fit, a stale slice). Nothing is clipped.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from streamer.core import black76
from streamer.core.median import median

FloatArray = npt.NDArray[np.float64]
RegimeName = Literal["sticky_strike", "sticky_moneyness", "local_vol", "unknown"]

Z_95 = 1.959963984540054
TRIM = 4.0
_MAD_TO_SD = 1.482602218505602
#: The SSR each regime implies (Bergomi 2016, ch. 2): the classifier picks the nearest.
REGIME_SSR: dict[RegimeName, float] = {"sticky_moneyness": 0.0, "sticky_strike": 1.0,
                                       "local_vol": 2.0}


class AtmPoint(NamedTuple):
    """ATM vol, skew (d sigma / d k) and log forward at one tenor."""

    vol: float
    skew: float
    log_forward: float


class Regression(NamedTuple):
    """OLS of y on x with an intercept; NaN slope when there are fewer than 3 points."""

    slope: float
    intercept: float
    stderr: float
    r2: float
    n: int


class DynamicsEstimate(NamedTuple):
    """Spot-vol beta, SSR (its regression) with a confidence interval, fixed-strike beta."""

    beta: Regression
    ssr: Regression
    ssr_low: float
    ssr_high: float
    fixed_strike_beta: float


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


def _plain_ols(x: FloatArray, y: FloatArray) -> tuple[Regression, FloatArray]:
    n = x.size
    if n < 3:
        return Regression(np.nan, np.nan, np.nan, np.nan, int(n)), np.zeros(n)
    xm, ym = x.sum() / n, y.sum() / n
    dx, dy = x - xm, y - ym
    sxx, syy = float(dx @ dx), float(dy @ dy)
    if sxx <= 0.0:
        return Regression(np.nan, float(ym), np.nan, np.nan, int(n)), y - ym
    slope = float(dx @ dy / sxx)
    intercept = float(ym - slope * xm)
    resid = y - intercept - slope * x
    rss = float(resid @ resid)
    stderr = float(np.sqrt(rss / (n - 2) / sxx))
    r2 = 1.0 - rss / syy if syy > 0 else np.nan
    return Regression(slope, intercept, stderr, float(r2), int(n)), resid


def ols(x: npt.ArrayLike, y: npt.ArrayLike, *, trim: float = TRIM) -> Regression:
    """OLS of ``y`` on ``x`` with an intercept, refitted once without outliers.

    Pairs with a non-finite entry are dropped. After the first fit, pairs whose
    residual exceeds ``trim`` times the residuals' MAD-based standard deviation are
    dropped and the fit repeated (``trim <= 0`` keeps every pair).
    """
    xa, ya = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    first, resid = _plain_ols(xa, ya)
    if trim <= 0 or not np.isfinite(first.slope):
        return first
    # The residuals of a fit with an intercept are centred: their MAD is about 0.
    scale = _MAD_TO_SD * median(np.abs(resid))
    inliers = np.abs(resid) <= trim * scale
    if scale <= 0 or inliers.all():
        return first
    return _plain_ols(xa[inliers], ya[inliers])[0]


def estimate_dynamics(dlnf: npt.ArrayLike, dvol: npt.ArrayLike, skew: npt.ArrayLike, *,
                      min_skew: float, z: float = Z_95) -> DynamicsEstimate:
    """Spot-vol beta, SSR with its ``z`` confidence interval, and fixed-strike beta.

    Parameters
    ----------
    dlnf, dvol, skew : array_like, shape (n,)
        Per pair of surfaces: change of the log forward, change of the ATM vol
        (decimal), and the ATM skew over the pair (e.g. the mean of its two ends).
    min_skew : float
        Pairs with ``|skew| < min_skew`` carry no information on the SSR (it is
        ``beta / skew``) and are left out of its regression only.
    z : float
        Normal quantile of the interval (1.96: 95%); widened to Student t.
    """
    x = np.asarray(dlnf, np.float64).ravel()
    y = np.asarray(dvol, np.float64).ravel()
    s = np.asarray(skew, np.float64).ravel()
    beta = ols(x, y)
    steep = np.abs(s) >= min_skew
    ssr = ols(s[steep] * x[steep], y[steep])
    fixed = ols(x, y - s * x).slope
    if ssr.n >= 3 and np.isfinite(ssr.stderr):
        half = _t_quantile(z, max(ssr.n - 2, 1)) * ssr.stderr
        low, high = ssr.slope - half, ssr.slope + half
    else:
        low = high = np.nan
    return DynamicsEstimate(beta, ssr, float(low), float(high), float(fixed))


def classify_regime(ssr: float, low: float, high: float, n: int, *, min_obs: int,
                    max_halfwidth: float) -> RegimeName:
    """The regime whose SSR (0, 1, 2) is nearest, when the estimate is precise enough.

    ``unknown`` with fewer than ``min_obs`` observations, an interval wider than
    ``2 * max_halfwidth``, or an SSR more than 0.5 from every regime's value.
    """
    if n < min_obs or not (np.isfinite(ssr) and np.isfinite(low) and np.isfinite(high)):
        return "unknown"
    if (high - low) / 2.0 > max_halfwidth:
        return "unknown"
    name, value = min(REGIME_SSR.items(), key=lambda item: abs(item[1] - ssr))
    return name if abs(value - ssr) <= 0.5 else "unknown"


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

