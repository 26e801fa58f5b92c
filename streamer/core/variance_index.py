"""Model-free implied variance by the Cboe VIX method, as Deribit's DVOL applies it.

Per expiry (Cboe, "VIX White Paper", 2019 edition, steps 1-2; Deribit, "DVOL - Deribit
Implied Volatility Index" methodology, 2021, which applies it to coin options with
r = 0 and the two expiries bracketing 30 days):

1. The forward by put-call parity at the strike where ``|C - P|`` is smallest:
   ``F = K* + C(K*) - P(K*)`` (r = 0: no discounting).
2. ``K0`` the first listed strike at or below ``F``.
3. Out-of-the-money mids: puts below ``K0``, calls above, the average of the call and
   the put at ``K0``. Moving away from ``K0``, an option with a zero bid is skipped, and
   after two consecutive zero bids no further strike is used.
4. ``sigma^2 = 2/T sum(dK_i / K_i^2 Q(K_i)) - 1/T (F/K0 - 1)^2`` with
   ``dK_i = (K_{i+1} - K_{i-1}) / 2`` (one-sided at the ends).

Across expiries (step 3 of the white paper): total variance ``T sigma^2`` linear in
time between the two expiries that bracket the tenor, read back as a vol at the tenor.
Prices are in the strikes' currency (USD for Deribit BTC options: coin premium times
the underlying price).
"""

from __future__ import annotations

from typing import NamedTuple, cast

import numpy as np
import numpy.typing as npt

from streamer.core import black76
from streamer.core.rows import linspace_rows

FloatArray = npt.NDArray[np.float64]


class ExpiryVariance(NamedTuple):
    """One expiry's model-free variance and what went into it."""

    t: float
    variance: float
    forward: float
    k0: float
    n_strikes: int


def _wing_length(positive: npt.NDArray[np.bool_]) -> int:
    """How many options of an outward-ordered run the walk reaches: it stops before the
    second of two consecutive zero (or missing) bids."""
    two_zeros = ~(positive[1:] | positive[:-1])  # at i + 1: the second of two zero bids
    at = int(two_zeros.argmax()) if two_zeros.size else 0
    return at + 1 if two_zeros.size and two_zeros[at] else positive.size


def expiry_variance(strike: npt.ArrayLike, call_mid: npt.ArrayLike, put_mid: npt.ArrayLike,
                    call_bid: npt.ArrayLike, put_bid: npt.ArrayLike, t: float
                    ) -> ExpiryVariance | None:
    """Model-free variance of one expiry from its listed strikes (steps 1-4 above).

    Parameters
    ----------
    strike : array_like, shape (n,)
        Listed strikes, ascending, each once.
    call_mid, put_mid, call_bid, put_bid : array_like, shape (n,)
        Per strike (NaN where that option has no quote).
    t : float
        Years to expiry.

    Returns None where no strike has both a call and a put mid (no forward) or nothing
    out of the money is usable.
    """
    if t <= 0:
        return None
    got = vix_sum(strike, call_mid, put_mid, call_bid, put_bid)
    return None if got is None else from_sum(got, t)


class VixSum(NamedTuple):
    """Steps 1-3 and step 4's strike sum ``sum(dK_i / K_i^2 Q(K_i))`` of one expiry."""

    total: float
    forward: float
    k0: float
    n_strikes: int


def from_sum(s: VixSum, t: float, label_t: float | None = None) -> ExpiryVariance:
    """Step 4's variance from its sum at ``t`` years (the C kernel's sums too), labelled
    with ``label_t`` where given (a model's sum at its slice's t, read at its market's)."""
    variance = 2.0 / t * s.total - (s.forward / s.k0 - 1.0) ** 2 / t
    return ExpiryVariance(t=t if label_t is None else label_t, variance=variance,
                          forward=s.forward, k0=s.k0, n_strikes=s.n_strikes)


def vix_sum(strike: npt.ArrayLike, call_mid: npt.ArrayLike, put_mid: npt.ArrayLike,
            call_bid: npt.ArrayLike, put_bid: npt.ArrayLike) -> VixSum | None:
    """Steps 1-3 and the strike sum (the arguments of :func:`expiry_variance`); the numpy
    reference of ``_variance_index.c``.

    The used strikes lie in one run about ``K0`` (each wing ends at its walk's stop), so
    slices, not index arrays, select them: numpy's fancy indexing was most of its cost.
    """
    k = np.asarray(strike, np.float64)
    c, p = np.asarray(call_mid, np.float64), np.asarray(put_mid, np.float64)
    cb, pb = np.asarray(call_bid, np.float64), np.asarray(put_bid, np.float64)
    pairs = np.isfinite(c) & np.isfinite(p)
    if not pairs.size:
        return None
    # ndarray methods: numpy's module-level wrappers cost more than the work on ~50 strikes
    star = int(np.where(pairs, np.abs(c - p), np.inf).argmin())
    if not pairs[star]:  # no pair at all
        return None
    forward = float(k[star] + c[star] - p[star])
    if not forward >= k[0]:  # no strike at or below it
        return None
    i0 = int(k.searchsorted(forward, side="right")) - 1  # strikes ascending
    lo = i0 - _wing_length(pb[i0 - 1::-1] > 0) if i0 else 0
    hi = i0 + 1 + _wing_length(cb[i0 + 1:] > 0)
    # out of the money: puts below K0, calls above, where the bid is positive
    q = np.where(np.arange(lo, hi) < i0, np.where(pb[lo:hi] > 0, p[lo:hi], np.nan),
                 np.where(cb[lo:hi] > 0, c[lo:hi], np.nan))
    q[i0 - lo] = (0.5 * (c[i0] + p[i0]) if pairs[i0]
                  else (p[i0] if np.isfinite(p[i0]) else c[i0]))
    used = np.isfinite(q)
    ku, qu = k[lo:hi][used], q[used]
    if ku.size < 2:
        return None
    dk = np.empty(ku.size)  # central differences, one-sided at the ends (np.gradient's)
    dk[1:-1] = 0.5 * (ku[2:] - ku[:-2])
    dk[0], dk[-1] = ku[1] - ku[0], ku[-1] - ku[-2]
    return VixSum(float((dk / (ku * ku) * qu).sum()), forward, float(k[i0]), ku.size)


def quoted_sum(quotes: FloatArray) -> VixSum | None:
    """The sum of one expiry's quotes, rows ``strike, bid, ask, is_call`` of ``quotes``
    (shape (4, n), is_call 0 or 1): per strike the mids and bids of its call and put
    where both sides are quoted and not crossed (the last such quote of a strike and side
    wins); the numpy reference of ``_variance_index.c``."""
    strike, bid, ask, is_call = quotes
    strikes, at = _strike_index(strike)
    # one-sided, crossed or missing: no mid
    use = ((bid >= 0) & (ask > 0) & (ask >= bid)).nonzero()[0]
    side = np.where(is_call[use] != 0, 0, 1)
    cols = np.full((4, strikes.size), np.nan)  # call mid, put mid, call bid, put bid
    cols[side, at[use]] = 0.5 * (bid[use] + ask[use])
    cols[side + 2, at[use]] = bid[use]
    return vix_sum(strikes, cols[0], cols[1], cols[2], cols[3])


def _strike_index(strike: FloatArray) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """``np.unique(strike, return_inverse=True)`` without its generality's overhead (a
    third of the market variance's cost on ~50 quotes); NaN strikes take numpy's way."""
    order = strike.argsort()
    ranked = strike[order]
    if ranked.size == 0 or ranked[-1] != ranked[-1]:
        return cast(tuple[FloatArray, npt.NDArray[np.intp]],
                    np.unique(strike, return_inverse=True))
    first = np.empty(ranked.size, bool)
    first[0] = True
    np.not_equal(ranked[1:], ranked[:-1], out=first[1:])
    at = np.empty(ranked.size, np.intp)
    at[order] = first.cumsum() - 1
    return ranked[first], at


def smile_grids(atm: FloatArray, widths: float, points: int) -> FloatArray:
    """Each smile's grid of log-moneyness, one per row: ``widths`` ATM total vols
    (``atm``, at least 0.01) each side of the money (2 where ``atm`` is not finite),
    ``points`` of them."""
    half = np.where(np.isfinite(atm), widths * np.maximum(atm, 0.01), 2.0)
    return linspace_rows(-half, half, points)


def grid_sums(k: FloatArray, strikes: FloatArray, vol: FloatArray, forward: FloatArray,
              t: FloatArray) -> list[VixSum | None]:
    """The sum on smiles' dense grids, one per row: log-moneyness ``k``, ``strikes``
    (``forward * exp(k)``), model ``vol`` (NaN: 0), each row's ``forward`` and ``t``.

    The out-of-the-money prices by Black-76, the other side by parity (exact on a model's
    smile), each price its own bid; the numpy reference of ``_variance_index.c``.
    """
    if not np.isfinite(vol).all():
        vol = np.nan_to_num(vol, nan=0.0)
    call = k >= 0.0
    f = forward[:, None]
    otm = black76.price(f, strikes, t[:, None], vol, call)
    parity = f - strikes
    calls = np.where(call, otm, otm + parity)
    puts = np.where(call, otm - parity, otm)
    return [vix_sum(*row, *row[1:]) for row in zip(strikes, calls, puts, strict=True)]


def interpolated_vol(near: ExpiryVariance, next_: ExpiryVariance, tenor: float) -> float:
    """The vol at ``tenor`` years, total variance linear in time between two expiries."""
    w1, w2 = near.t * near.variance, next_.t * next_.variance
    if next_.t == near.t:
        w = w1 * tenor / near.t
    else:
        w = w1 + (w2 - w1) * (tenor - near.t) / (next_.t - near.t)
    return float(np.sqrt(w / tenor)) if w > 0 else float("nan")


def bracketing(ts: npt.ArrayLike, tenor: float) -> tuple[int, int] | None:
    """Indices of the expiries at or below and above ``tenor`` (``ts`` ascending).

    The near expiry is the last one at or below the tenor, the next one the first above
    it; None where the tenor lies outside the expiries.
    """
    times = np.asarray(ts, np.float64)
    if times.size == 0 or tenor < times[0] or tenor > times[-1]:
        return None
    hi = int(np.searchsorted(times, tenor, side="right"))
    if hi == times.size:  # exactly on the last expiry
        return times.size - 1, times.size - 1
    return max(hi - 1, 0), hi
