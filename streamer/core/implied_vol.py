"""Implied volatility from undiscounted Black-76 prices, vectorised, to machine precision.

Method: every option is reduced by put-call parity to its out-of-the-money side and
to the normalised price ``b = price / sqrt(F K)``, which depends only on
``x = -|ln(F/K)|`` and the total vol ``v = sigma sqrt(t)``:

    b(x, v) = e^{x/2} N(x/v + v/2) - e^{-x/2} N(x/v - v/2)

and inverted with Jäckel's (2015) rational initial guess and two third-order Householder
steps (:mod:`streamer.core.normalised_black`), four whole-array evaluations of ``b`` in
all. An element whose last step is not negligible is solved again by the slow, safe
route: bisection in ``ln v`` and safeguarded Newton steps on ``ln b``, evaluated without
cancellation through the scaled complementary error function. That happens only far
outside any market (``|ln(F/K)|`` in the hundreds) or for time values within a few
digits of ``TIME_VALUE_FLOOR`` near the money, where ``b`` is mostly rounding noise.
"""

from __future__ import annotations

import enum
from typing import cast

import numpy as np
import numpy.typing as npt

from streamer.core.normalised_black import total_vol
from streamer.core.special import erfcx, ndtr

FloatArray = npt.NDArray[np.float64]

_HALF_LN_PI_OVER_2 = 0.5 * np.log(np.pi / 2.0)
_HALF_LN_2PI = 0.5 * np.log(2.0 * np.pi)
_SQRT1_2 = np.sqrt(0.5)
# The bracket must contain every invertible price: an at-the-money time value of
# TIME_VALUE_FLOOR * F is a total vol of about 2.5e-14, so 1e-9 clipped real roots.
_V_MIN, _V_MAX = 1e-15, 60.0
_BISECTIONS = 10
_NEWTON_STEPS = 6
# A converged Householder step is ~1e-6 of v or (far) less; anything bigger goes the slow way.
_CONVERGED = 1e-4
#: time value below this fraction of the forward cannot be inverted meaningfully
TIME_VALUE_FLOOR = 1e-14


class IVReason(enum.IntEnum):
    """Why an implied vol is NaN (``OK`` when it is not)."""

    OK = 0
    NON_FINITE = 1
    NON_POSITIVE = 2
    BELOW_INTRINSIC = 3
    ABOVE_MAX = 4
    NO_TIME_VALUE = 5

    @property
    def label(self) -> str:
        """Lower-case name, used as a metric label."""
        return self.name.lower()


def log_normalised_otm_price(x: FloatArray, v: FloatArray) -> FloatArray:
    """``ln b(x, v)`` for ``x <= 0`` (out of the money), accurate in the far wings.

    Parameters
    ----------
    x : ndarray
        ``-|ln(F/K)|``.
    v : ndarray
        Total volatility ``sigma sqrt(t)`` (> 0).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d1 = x / v + 0.5 * v
        d2 = d1 - v
        # Wing branch (d1 < 0): both N terms tiny; factor out e^{x/2} phi(d1).
        diff = erfcx(-d1 * _SQRT1_2) - erfcx(-d2 * _SQRT1_2)
        wing = _HALF_LN_PI_OVER_2 + 0.5 * x - 0.5 * d1 * d1 - _HALF_LN_2PI + np.log(diff)
        body = np.log(np.exp(0.5 * x) * ndtr(d1) - np.exp(-0.5 * x) * ndtr(d2))
    result: FloatArray = np.where(d1 < 0.0, wing, body)
    return result


def _dlogb_dv(x: FloatArray, v: FloatArray, log_b: FloatArray) -> FloatArray:
    """d ln b / d v = e^{x/2} phi(d1) / b."""
    d1 = x / v + 0.5 * v
    result: FloatArray = np.exp(0.5 * x - 0.5 * d1 * d1 - _HALF_LN_2PI - log_b)
    return result


def _solve_total_vol(x: FloatArray, beta: FloatArray) -> FloatArray:
    """Total vol v with b(x, v) = beta, for arrays already known to be invertible."""
    v, last_step = total_vol(x, beta)
    with np.errstate(invalid="ignore"):
        slow = np.flatnonzero(~(np.abs(last_step) <= _CONVERGED * v))
    if slow.size:
        v[slow] = _bracketed_total_vol(x[slow], np.log(beta[slow]))
    return v


def _bracketed_total_vol(x: FloatArray, log_beta: FloatArray) -> FloatArray:
    """Total vol by bisection in ``ln v``, then safeguarded Newton on ``ln b``: slow but safe."""
    lo = np.full_like(x, np.log(_V_MIN))
    hi = np.full_like(x, np.log(_V_MAX))
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        above = log_normalised_otm_price(x, np.exp(mid)) > log_beta
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    v_lo, v_hi = np.exp(lo), np.exp(hi)
    v = 0.5 * (v_lo + v_hi)
    for _ in range(_NEWTON_STEPS):
        log_b = log_normalised_otm_price(x, v)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            v_new = v - (log_b - log_beta) / _dlogb_dv(x, v, log_b)
        # Safeguard: a step leaving the bisection bracket goes back inside it.
        v = np.where(np.isfinite(v_new), np.clip(v_new, v_lo, v_hi), 0.5 * (v_lo + v_hi))
    return v


def implied_vol_with_reason(price: npt.ArrayLike, forward: npt.ArrayLike,
                            strike: npt.ArrayLike, t: npt.ArrayLike, is_call: npt.ArrayLike
                            ) -> tuple[FloatArray, npt.NDArray[np.int8]]:
    """Implied vols and a reason code per element (``IVReason``).

    Parameters
    ----------
    price : array_like
        Undiscounted option price, in the units of ``forward``.
    forward, strike : array_like
        Forward and strike (> 0).
    t : array_like
        Time to expiry in years (> 0).
    is_call : array_like of bool
        Call (True) or put (False).

    Returns
    -------
    vol : ndarray
        Decimal implied volatility; NaN where the reason is not ``OK``.
    reason : ndarray of int8
        ``IVReason`` codes.
    """
    p, f, k, tt, call = _operands(price, forward, strike, t, is_call)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        intrinsic = np.maximum(np.where(call, f - k, k - f), 0.0)
        cap = np.where(call, f, k)
        time_value = p - intrinsic
        # a market's quotes (flat): no masks
        if p.ndim == 1 and _all_invertible(p, f, k, tt, time_value, cap):
            vol: FloatArray = _solve_total_vol(*_normalised(f, k, time_value)) / np.sqrt(tt)
            return vol, np.zeros(p.shape, np.int8)
        reason = _reasons(p, f, k, tt, time_value, cap)
    vol = np.full(p.shape, np.nan)
    good = reason == IVReason.OK
    if good.any():
        vol[good] = (_solve_total_vol(*_normalised(f[good], k[good], time_value[good]))
                     / np.sqrt(tt[good]))
    return vol, reason


_Operands = tuple[FloatArray, FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_]]


def _operands(price: npt.ArrayLike, forward: npt.ArrayLike, strike: npt.ArrayLike,
              t: npt.ArrayLike, is_call: npt.ArrayLike) -> _Operands:
    """The arguments as float64 (and bool) arrays of one shape: themselves where they are
    already flat arrays of one length (the snapshot's), else converted and broadcast."""
    floats = (price, forward, strike, t)
    if (type(is_call) is np.ndarray and is_call.dtype == np.bool_ and is_call.ndim == 1
            and all(type(a) is np.ndarray and a.dtype == np.float64 and a.ndim == 1
                    and a.shape == is_call.shape for a in floats)):
        return cast(_Operands, (*floats, is_call))
    return cast(_Operands, tuple(np.broadcast_arrays(
        *(np.asarray(a, np.float64) for a in floats), np.asarray(is_call, bool))))


def _all_invertible(p: FloatArray, f: FloatArray, k: FloatArray, tt: FloatArray,
                    time_value: FloatArray, cap: FloatArray) -> bool:
    """Whether every element's reason is ``OK`` (:func:`_reasons` all zero), in a few whole
    array passes: a sum is finite only where all its terms are (overflow merely sends the
    batch the long way), and a time value above the floor is not below intrinsic."""
    return bool(np.isfinite(p + f + k + tt).all() and f.min(initial=1.0) > 0
                and k.min(initial=1.0) > 0 and tt.min(initial=1.0) > 0
                and p.min(initial=0.0) >= 0
                and ((time_value > TIME_VALUE_FLOOR * f) & (p < cap)).all())


def _reasons(p: FloatArray, f: FloatArray, k: FloatArray, tt: FloatArray,
             time_value: FloatArray, cap: FloatArray) -> npt.NDArray[np.int8]:
    """Each element's ``IVReason``, the first that applies in the enum's order."""
    reason = np.zeros(p.shape, np.int8)
    finite = np.isfinite(p) & np.isfinite(f) & np.isfinite(k) & np.isfinite(tt)
    reason[~finite] = IVReason.NON_FINITE
    positive = (f > 0) & (k > 0) & (tt > 0) & (p >= 0)
    reason[finite & ~positive] = IVReason.NON_POSITIVE
    ok = reason == IVReason.OK
    reason[ok & (time_value < -TIME_VALUE_FLOOR * f)] = IVReason.BELOW_INTRINSIC
    reason[(reason == 0) & (p >= cap)] = IVReason.ABOVE_MAX
    reason[(reason == 0) & (time_value <= TIME_VALUE_FLOOR * f)] = IVReason.NO_TIME_VALUE
    return reason


def _normalised(f: FloatArray, k: FloatArray, time_value: FloatArray
                ) -> tuple[FloatArray, FloatArray]:
    """``x = -|ln(F/K)|`` and the normalised time value ``beta = time value / sqrt(F K)``."""
    x: FloatArray = -np.abs(np.log(f / k))
    beta: FloatArray = time_value / (np.sqrt(f) * np.sqrt(k))
    return x, beta


def implied_vol(price: npt.ArrayLike, forward: npt.ArrayLike, strike: npt.ArrayLike,
                t: npt.ArrayLike, is_call: npt.ArrayLike) -> FloatArray:
    """Decimal implied vol of undiscounted Black-76 prices; NaN where not invertible.

    See :func:`implied_vol_with_reason` for the parameters and the reasons.
    """
    return implied_vol_with_reason(price, forward, strike, t, is_call)[0]
