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

import math
from bisect import bisect_left
from collections.abc import Callable, Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.core.smile import SmileMetrics, smile_metrics_rows
from streamer.core.smile_rows import Blend, BlendedRows, VarianceRows

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
VarianceOfK = Callable[[FloatArray], FloatArray]

DELTA_KEYS = ("10P", "25P", "ATM", "25C", "10C")
_NAN_METRICS = SmileMetrics(atm_vol=float("nan"), atm_skew=float("nan"),
                            atm_curvature=float("nan"), rr25=float("nan"), bf25=float("nan"),
                            rr10=float("nan"), bf10=float("nan"))


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
    return float(forwards_at(np.array([t]), ts, forwards)[0])


def forwards_at(t: FloatArray, ts: Sequence[float], forwards: Sequence[float]) -> FloatArray:
    """:func:`forward_at` of several times."""
    tt, lf = np.asarray(ts, np.float64), np.log(np.asarray(forwards, np.float64))
    ln_f = np.interp(t, tt, lf)
    if tt.size > 1:
        rate = (lf[-1] - lf[-2]) / (tt[-1] - tt[-2])
        ln_f = np.where(t > tt[-1], lf[-1] + rate * (t - tt[-1]), ln_f)
    result: FloatArray = np.exp(ln_f)
    return result


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


def variance_rows_of(slices: Sequence[VarianceOfK]) -> VarianceRows:
    """A :data:`VarianceRows` that calls each row's slice on its own."""
    def each(idx: IntArray, k: FloatArray) -> FloatArray:
        return np.stack([slices[j](np.ascontiguousarray(k[i])) for i, j in enumerate(idx.tolist())])
    return each


def _plan(t: Sequence[float], ts: Sequence[float], slices: Sequence[VarianceOfK]) -> Blend:
    """Each time's case of :func:`total_variance_at` as a :class:`Blend` row.

    In Python floats (the same IEEE operations as numpy's): for a few tenors numpy's
    per-call cost was most of the tenor views' own time."""
    times = [float(x) for x in ts]
    rows = [_case(float(at), times) for at in t]
    lo, hi, lam, scale, after = (list(col) for col in zip(*rows, strict=True))
    extra = [0.0] * len(rows)
    if any(after):
        w_last = float(slices[-1](np.zeros(1))[0])
        extra = [(at - times[-1]) * w_last / times[-1] if a else 0.0
                 for at, a in zip((float(x) for x in t), after, strict=True)]
    return Blend(np.array(lo, np.int64), np.array(hi, np.int64), np.array(lam, np.float64),
                 np.array(scale, np.float64), np.array(extra, np.float64))


def _case(at: float, times: list[float]) -> tuple[int, int, float, float, bool]:
    """``lo, hi, lam, scale`` of time ``at`` and whether it is after the last expiry."""
    n = len(times)
    i = n if math.isnan(at) else bisect_left(times, at)  # NaN sorts last, as in numpy
    if i < n and times[i] == at:  # t == ts[i] falls on slice i
        return i, i, 0.0, 1.0, False
    if i == n:
        return n - 1, n - 1, 0.0, 1.0, True
    if i == 0:  # before the first expiry
        return 0, 0, 0.0, at / times[0], False
    return i - 1, i, (at - times[i - 1]) / (times[i] - times[i - 1]), 1.0, False


def tenor_views(tenor_days: Sequence[float], t: Sequence[float], t_calendar: Sequence[float],
                ts: Sequence[float], forwards: Sequence[float], slices: Sequence[VarianceOfK],
                rows: VarianceRows | None = None) -> list[TenorView]:
    """The views at ``tenor_days``: ``t`` on the interpolation clock, ``t_calendar`` in
    years, one per tenor; their smile metrics in one pass (:func:`smile_metrics_rows`).
    ``rows`` evaluates several slices at once (default: each of ``slices`` in turn); raw
    SVI ``rows`` take the metrics' C kernel (:mod:`streamer.core.smile_rows`). With
    ``rows``, only ``slices[-1]`` is called (``w(0)`` past the last expiry): ``slices``
    may then hold the last slice alone.

    Vols are read as ``sqrt(w / t_calendar)``: the clock moves variance between days,
    the quoting convention of a vol stays calendar ACT/365.
    """
    if not len(t) or not len(ts):
        return [_view(days, t_i, _NAN_METRICS, ts, float("nan"))
                for days, t_i in zip(tenor_days, t, strict=True)]
    evaluate = variance_rows_of(slices) if rows is None else rows
    vol_rows = BlendedRows(evaluate, _plan(t, ts, slices),
                           1.0 / np.asarray(t_calendar, np.float64)[:, None])
    metrics = smile_metrics_rows(vol_rows, t_calendar)
    at = forwards_at(np.asarray(t, np.float64), ts, forwards).tolist()
    return [_view(days, t_i, m, ts, f)
            for days, t_i, m, f in zip(tenor_days, t, metrics, at, strict=True)]


def tenor_view(tenor_days: float, t: float, t_calendar: float, ts: Sequence[float],
               forwards: Sequence[float], slices: Sequence[VarianceOfK]) -> TenorView:
    """The view at one tenor (:func:`tenor_views`)."""
    return tenor_views([tenor_days], [t], [t_calendar], ts, forwards, slices)[0]


def _view(tenor_days: float, t: float, m: SmileMetrics, ts: Sequence[float],
          forward: float) -> TenorView:
    # The delta vols first, and RR/BF from them, so that rr == vol(25C) - vol(25P) exactly.
    atm = m.atm_vol
    c25, p25 = atm + m.bf25 + 0.5 * m.rr25, atm + m.bf25 - 0.5 * m.rr25
    c10, p10 = atm + m.bf10 + 0.5 * m.rr10, atm + m.bf10 - 0.5 * m.rr10
    inside = len(ts) > 0 and ts[0] <= t <= ts[-1]
    return TenorView(
        tenor_days=tenor_days, t=t, forward=forward, atm_vol=atm, atm_skew=m.atm_skew,
        rr25=c25 - p25, bf25=0.5 * (c25 + p25) - atm, rr10=c10 - p10,
        bf10=0.5 * (c10 + p10) - atm,
        delta_vols=dict(zip(DELTA_KEYS, (p10, p25, atm, c25, c10), strict=True)),
        extrapolated=not inside)
