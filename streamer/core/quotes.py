"""Per-quote filters (each rejected quote gets exactly one reason) and fit weights."""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

from streamer.core.median import group_median

FloatArray = npt.NDArray[np.float64]


class QuoteReject(enum.IntEnum):
    """Why a quote is not used in a fit (``OK`` when it is)."""

    OK = 0
    NON_FINITE = 1
    NON_POSITIVE = 2
    NO_BID = 3
    NO_ASK = 4
    CROSSED = 5
    TOO_WIDE = 6
    NO_TIME_VALUE = 7
    IV_FAILED = 8
    STALE = 9

    @property
    def label(self) -> str:
        """Lower-case name, used as a metric label."""
        return self.name.lower()


def filter_quotes(bid: npt.ArrayLike, ask: npt.ArrayLike, forward: npt.ArrayLike,
                  strike: npt.ArrayLike, t: npt.ArrayLike, is_call: npt.ArrayLike, *,
                  max_rel_spread: float = 1.0, min_time_value_rel: float = 1e-8
                  ) -> npt.NDArray[np.int8]:
    """Reason code per quote (0 keeps it), first failing rule wins.

    Missing sides are NaN (the Deribit decoder maps its 0.0 to NaN). A mid at or
    below intrinsic, or with time value under ``min_time_value_rel`` of the
    forward, carries no vol information.
    """
    b, a = np.asarray(bid, np.float64), np.asarray(ask, np.float64)
    f, k = np.asarray(forward, np.float64), np.asarray(strike, np.float64)
    tt, call = np.asarray(t, np.float64), np.asarray(is_call, bool)
    if not b.shape == a.shape == f.shape == k.shape == tt.shape == call.shape:
        b, a, f, k, tt, call = np.broadcast_arrays(b, a, f, k, tt, call)
    # divide: a negative bid can make the mid 0; that quote is already NON_POSITIVE.
    # over: a mid of sides near the float maximum is inf; its quote has no vol (IV_FAILED).
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mid = 0.5 * (a + b)
        intrinsic = np.maximum(np.where(call, f - k, k - f), 0.0)
        rules = (  # in order: the first that fails is the reason
            (np.isinf(b) | np.isinf(a) | ~np.isfinite(f) | ~np.isfinite(k) | ~np.isfinite(tt),
             QuoteReject.NON_FINITE),
            ((f <= 0) | (k <= 0) | (tt <= 0) | (b < 0) | (a < 0), QuoteReject.NON_POSITIVE),
            (np.isnan(b) | (b == 0), QuoteReject.NO_BID),
            (np.isnan(a) | (a == 0), QuoteReject.NO_ASK),
            (b > a, QuoteReject.CROSSED),
            ((a - b) / mid > max_rel_spread, QuoteReject.TOO_WIDE),
            (mid - intrinsic <= min_time_value_rel * f, QuoteReject.NO_TIME_VALUE))
    code = np.zeros(b.shape, np.int8)
    for failed, reason in reversed(rules):  # an earlier rule overwrites a later one
        code[failed] = reason
    return code


def beyond_upper_bound(price: npt.ArrayLike, forward: npt.ArrayLike, strike: npt.ArrayLike,
                       is_call: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Undiscounted prices no vol gives: at or above the forward (a call) or the strike (a
    put), or not finite.

    Of the quotes :func:`filter_quotes` keeps, exactly those whose mid has no implied vol:
    an in-the-money quote, never fitted, learns its ``IV_FAILED`` here without an
    inversion.
    """
    upper = np.where(np.asarray(is_call, bool), forward, strike)
    with np.errstate(invalid="ignore"):
        result: npt.NDArray[np.bool_] = ~(np.asarray(price, np.float64) < upper)
    return result


def otm_mask(strike: npt.ArrayLike, forward: npt.ArrayLike, is_call: npt.ArrayLike
             ) -> npt.NDArray[np.bool_]:
    """Out-of-the-money side: calls at or above the forward, puts below it.

    OTM options carry the vol information without the intrinsic value that makes
    in-the-money prices ill-conditioned, the usual choice for smile fitting.
    """
    k, f, call = np.asarray(strike), np.asarray(forward), np.asarray(is_call, bool)
    result: npt.NDArray[np.bool_] = np.where(call, k >= f, k < f)
    return result


def fit_weights(bid_iv: npt.ArrayLike, ask_iv: npt.ArrayLike, vega: npt.ArrayLike,
                *, floor_vol: float = 0.0025) -> FloatArray:
    """Weights of squared vol errors: inverse squared vol half-spread, times relative vega.

    A tight market pins the smile more than a wide one (the half-spread is the
    vol uncertainty of the mid); vega down-weights far wings whose prices are a tick
    or two. Missing IV spreads count as the median spread. Normalised to mean 1.
    """
    b = np.asarray(bid_iv, np.float64).ravel()
    return fit_weights_grouped(np.zeros(b.size, np.int64), 1, b, ask_iv, vega,
                               floor_vol=floor_vol)


def fit_weights_grouped(group: npt.NDArray[np.int64], n_groups: int, bid_iv: npt.ArrayLike,
                        ask_iv: npt.ArrayLike, vega: npt.ArrayLike, *,
                        floor_vol: float = 0.0025) -> FloatArray:
    """:func:`fit_weights` of many slices at once, quote ``i`` in slice ``group[i]``
    (each slice normalised on its own)."""
    half = 0.5 * (np.asarray(ask_iv, np.float64).ravel() - np.asarray(bid_iv, np.float64).ravel())
    finite = np.isfinite(half) & (half > 0)
    if not finite.all():  # usually every quote has both IVs: no median needed
        fill = group_median(np.where(finite, half, np.nan), group, n_groups, 0.01)
        half = np.where(finite, half, fill[group])
    half = np.maximum(half, floor_vol)
    v = np.asarray(vega, np.float64).ravel()
    rel_vega = np.where(np.isfinite(v) & (v > 0), v, 0.0)
    top = np.zeros(n_groups)
    np.maximum.at(top, group, rel_vega)
    rel_vega = np.where(top[group] > 0, rel_vega / np.where(top > 0, top, 1.0)[group], 1.0)
    w = np.sqrt(np.maximum(rel_vega, 1e-3)) / (half * half)
    mean = np.bincount(group, weights=w, minlength=n_groups) / np.maximum(
        np.bincount(group, minlength=n_groups), 1)
    result: FloatArray = w / mean[group]
    return result
