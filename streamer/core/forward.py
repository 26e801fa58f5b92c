"""Forward per expiry from put-call parity, robust to bad pairs."""

from __future__ import annotations

from typing import Literal

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.core.median import row_median


class ForwardEstimate(msgspec.Struct, frozen=True, kw_only=True):
    """The forward used for a slice and how it was obtained."""

    forward: float
    n_pairs: int
    method: Literal["parity", "fallback"]


def implied_forward(strike: npt.ArrayLike, call_mid: npt.ArrayLike, put_mid: npt.ArrayLike,
                    fallback: float, *, max_pairs: int = 6, max_rel_dev: float = 0.002
                    ) -> ForwardEstimate:
    """Forward from undiscounted parity ``F = K + C - P`` over the pairs nearest the money.

    Parameters
    ----------
    strike, call_mid, put_mid : array_like, shape (n,)
        Strikes with the call and put mid prices (forward units; NaN where missing).
    fallback : float
        The exchange's underlying price, used when fewer than 2 good pairs remain.
    max_pairs : int
        How many pairs nearest the money (smallest ``|C - P|``) to use.
    max_rel_dev : float
        Pairs further than this (relative) from the median are dropped as bad quotes.
    """
    k = np.asarray(strike, np.float64).ravel()
    forward, n_pairs, parity = implied_forwards(
        np.zeros(k.size, np.int64), k, call_mid, put_mid, np.array([fallback], np.float64),
        max_pairs=max_pairs, max_rel_dev=max_rel_dev)
    return ForwardEstimate(forward=float(forward[0]), n_pairs=int(n_pairs[0]),
                           method="parity" if parity[0] else "fallback")


def implied_forwards(group: npt.NDArray[np.int64], strike: npt.ArrayLike,
                     call_mid: npt.ArrayLike, put_mid: npt.ArrayLike,
                     fallback: npt.NDArray[np.float64], *, max_pairs: int = 6,
                     max_rel_dev: float = 0.002
                     ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64],
                                npt.NDArray[np.bool_]]:
    """:func:`implied_forward` of many expiries at once: pair ``i`` belongs to expiry
    ``group[i]`` (``0 <= group < len(fallback)``; pairs in strike order within each).

    Returns per expiry the forward, the pairs it rests on and whether it is from parity
    (else its ``fallback``). One pass of whole-array calls whatever the number of
    expiries: per expiry, numpy's per-call overhead was the cost.
    """
    n_groups = fallback.size
    k = np.asarray(strike, np.float64).ravel()
    c = np.asarray(call_mid, np.float64).ravel()
    p = np.asarray(put_mid, np.float64).ravel()
    good = np.isfinite(k) & np.isfinite(c) & np.isfinite(p) & (c > 0) & (p > 0) & (k > 0)
    g, k, c, p = group[good], k[good], c[good], p[good]
    n_good = np.bincount(g, minlength=n_groups)
    # the max_pairs nearest the money of each expiry (ties: the lower strike first)
    order = np.lexsort((np.abs(c - p), g))
    g, cand = g[order], (k + c - p)[order]
    rank = np.arange(g.size) - (np.cumsum(n_good) - n_good)[g]
    near = rank < max_pairs
    rows = np.full((n_groups, max_pairs), np.nan)
    rows[g[near], rank[near]] = cand[near]
    taken = np.isfinite(rows)
    centre = row_median(rows, taken)
    kept = taken & (np.abs(rows - centre[:, None]) <= max_rel_dev * np.abs(centre)[:, None])
    n_kept = kept.sum(axis=1)
    parity = (n_good >= 2) & (n_kept >= 2) & (centre > 0)
    forward = np.where(parity, row_median(rows, kept), fallback)
    return forward, np.where(n_good >= 2, n_kept, n_good), parity
