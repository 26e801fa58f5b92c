"""Undiscounted Black-76 prices and greeks, numpy-broadcasting.

All functions take the forward ``F``, strike ``K``, time ``t`` in years and the
decimal vol ``vol``; ``is_call`` is a bool or a bool array. Prices are forward
(undiscounted) premiums in the units of ``F``. Inputs broadcast together.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from streamer.core.special import ndtr

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

_INV_SQRT_2PI = 0.3989422804014327


def _d1_d2(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike
           ) -> tuple[FloatArray, FloatArray]:
    f = np.asarray(forward, dtype=np.float64)
    k = np.asarray(strike, dtype=np.float64)
    sqrt_var = np.asarray(vol, dtype=np.float64) * np.sqrt(np.asarray(t, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.log(f / k) / sqrt_var + 0.5 * sqrt_var
    return d1, d1 - sqrt_var


def price(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike,
          is_call: ArrayLike) -> FloatArray:
    """Undiscounted Black-76 option price.

    Parameters
    ----------
    forward, strike : array_like
        Forward and strike, same units (> 0).
    t : array_like
        Time to expiry in years (>= 0).
    vol : array_like
        Decimal volatility (>= 0).
    is_call : array_like of bool
        True for calls, False for puts.

    Returns
    -------
    ndarray
        Price in units of ``forward``; the intrinsic value where ``vol * sqrt(t)`` is 0.
    """
    f = np.asarray(forward, dtype=np.float64)
    k = np.asarray(strike, dtype=np.float64)
    call = np.asarray(is_call, dtype=bool)
    d1, d2 = _d1_d2(f, k, t, vol)
    sign = np.where(call, 1.0, -1.0)
    value = sign * (f * ndtr(sign * d1) - k * ndtr(sign * d2))
    intrinsic = np.maximum(sign * (f - k), 0.0)
    # never below intrinsic: far out of the money both terms are subnormal, and their
    # difference can round to -5e-324
    result: FloatArray = np.where(np.isfinite(d1), np.maximum(value, intrinsic), intrinsic)
    return result


def vega(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike) -> FloatArray:
    """d price / d vol (per unit of decimal vol), the same for calls and puts."""
    f = np.asarray(forward, dtype=np.float64)
    d1, _ = _d1_d2(f, strike, t, vol)
    result: FloatArray = np.where(
        np.isfinite(d1),
        f * _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1) * np.sqrt(np.asarray(t, dtype=np.float64)),
        0.0,
    )
    return result


def delta(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike,
          is_call: ArrayLike) -> FloatArray:
    """d price / d forward (forward delta)."""
    d1, _ = _d1_d2(forward, strike, t, vol)
    call = np.asarray(is_call, dtype=bool)
    result: FloatArray = np.where(call, ndtr(d1), ndtr(d1) - 1.0)
    return result


def gamma(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike) -> FloatArray:
    """d² price / d forward², the same for calls and puts."""
    f = np.asarray(forward, dtype=np.float64)
    d1, _ = _d1_d2(f, strike, t, vol)
    sqrt_var = np.asarray(vol, dtype=np.float64) * np.sqrt(np.asarray(t, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        g = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1) / (f * sqrt_var)
    result: FloatArray = np.where(np.isfinite(g), g, 0.0)
    return result
