"""Between expiries: total variance at fixed k, forwards, and constant-maturity views.

The surface between listed expiries (the rule the client also applies, README
"Subscribing"): at fixed ``k = ln(K/F(t))``, total variance is linear in time between
the two expiries that bracket ``t`` (calendar monotone when the slices are); before the
first expiry ``w1(k) t / t1``; after the last ``wn(k) + (t - tn) wn(0) / tn``. ``ln F``
is linear in time between expiries. The times may be on a variance clock
(:mod:`streamer.core.variance_clock`) rather than the calendar.

A constant-maturity view reads the interpolated smile at a fixed tenor like a listed
one: ATM vol and skew, 25- and 10-delta risk reversals and butterflies, and the vols at
the 10/25-delta puts and calls (Black-76 forward delta, premium-unadjusted; the
definitions of :mod:`streamer.core.smile`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.core.smile import smile_metrics

FloatArray = npt.NDArray[np.float64]
VarianceOfK = Callable[[FloatArray], FloatArray]

DELTA_KEYS = ("10P", "25P", "ATM", "25C", "10C")


def total_variance_at(k: FloatArray, t: float, ts: Sequence[float],
                      slices: Sequence[VarianceOfK]) -> FloatArray:
    """Total variance at log-moneyness ``k`` and time ``t`` from slices at times ``ts``.

    ``ts`` ascending and positive; ``slices[i](k)`` is the total variance of expiry i.
    """
    n = len(ts)
    if n == 0:
        return np.full(np.shape(k), np.nan)
    i = int(np.searchsorted(ts, t, side="left"))  # t == ts[i] falls on slice i
    if i < n and ts[i] == t:
        return slices[i](k)
    if i == 0:
        return slices[0](k) * (t / ts[0])
    if i == n:
        atm_rate = float(slices[-1](np.zeros(1))[0]) / ts[-1]
        return slices[-1](k) + (t - ts[-1]) * atm_rate
    lam = (t - ts[i - 1]) / (ts[i] - ts[i - 1])
    lo, hi = slices[i - 1](k), slices[i](k)
    # clipped to [lo, hi]: no rounding step against the direction of travel
    result: FloatArray = np.clip(lo + lam * (hi - lo), np.fmin(lo, hi), np.fmax(lo, hi))
    return result


def forward_at(t: float, ts: Sequence[float], forwards: Sequence[float]) -> float:
    """``ln F`` linear in time between expiries, extended at the last pair's rate."""
    tt, lf = np.asarray(ts, np.float64), np.log(np.asarray(forwards, np.float64))
    if tt.size == 1 or t <= tt[-1]:
        return float(np.exp(np.interp(t, tt, lf)))
    rate = (lf[-1] - lf[-2]) / (tt[-1] - tt[-2])
    return float(np.exp(lf[-1] + rate * (t - tt[-1])))


class TenorView(msgspec.Struct, frozen=True, kw_only=True):
    """The smile at one constant maturity (decimal vols; skew per unit of k)."""

    tenor_days: float
    t: float
    forward: float
    atm_vol: float
    atm_skew: float
    rr25: float
    bf25: float
    rr10: float
    bf10: float
    delta_vols: dict[str, float]
    extrapolated: bool = False


def tenor_view(tenor_days: float, t: float, t_calendar: float, ts: Sequence[float],
               forwards: Sequence[float], slices: Sequence[VarianceOfK]) -> TenorView:
    """The view at ``tenor_days``: ``t`` on the interpolation clock, ``t_calendar`` in years.

    Vols are read as ``sqrt(w / t_calendar)``: the clock moves variance between days,
    the quoting convention of a vol stays calendar ACT/365.
    """
    def vol_of_k(k: FloatArray) -> FloatArray:
        w = total_variance_at(np.asarray(k, np.float64), t, ts, slices)
        with np.errstate(invalid="ignore"):
            result: FloatArray = np.sqrt(np.where(w >= 0, w, np.nan) / t_calendar)
        return result

    m = smile_metrics(vol_of_k, t_calendar)
    # The delta vols first, and RR/BF from them, so that rr == vol(25C) - vol(25P) exactly.
    vols = {"ATM": m.atm_vol}
    for d, rr, bf in ((25, m.rr25, m.bf25), (10, m.rr10, m.bf10)):
        vols[f"{d}C"] = m.atm_vol + bf + 0.5 * rr
        vols[f"{d}P"] = m.atm_vol + bf - 0.5 * rr
    inside = len(ts) > 0 and ts[0] <= t <= ts[-1]
    return TenorView(
        tenor_days=tenor_days, t=t, forward=forward_at(t, ts, forwards), atm_vol=m.atm_vol,
        atm_skew=m.atm_skew, rr25=vols["25C"] - vols["25P"],
        bf25=0.5 * (vols["25C"] + vols["25P"]) - m.atm_vol, rr10=vols["10C"] - vols["10P"],
        bf10=0.5 * (vols["10C"] + vols["10P"]) - m.atm_vol,
        delta_vols={key: vols[key] for key in DELTA_KEYS}, extrapolated=not inside)
