"""Forward per expiry from put-call parity, robust to bad pairs."""

from __future__ import annotations

from typing import Literal

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.core.median import median


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
    k = np.asarray(strike, np.float64)
    c = np.asarray(call_mid, np.float64)
    p = np.asarray(put_mid, np.float64)
    good = np.isfinite(k) & np.isfinite(c) & np.isfinite(p) & (c > 0) & (p > 0) & (k > 0)
    if good.sum() < 2:
        return ForwardEstimate(forward=fallback, n_pairs=int(good.sum()), method="fallback")
    k, c, p = k[good], c[good], p[good]
    nearest = np.argsort(np.abs(c - p))[:max_pairs]
    candidates = k[nearest] + c[nearest] - p[nearest]
    centre = median(candidates)
    kept = candidates[np.abs(candidates - centre) <= max_rel_dev * abs(centre)]
    if kept.size < 2 or centre <= 0:
        return ForwardEstimate(forward=fallback, n_pairs=int(kept.size), method="fallback")
    return ForwardEstimate(forward=median(kept), n_pairs=int(kept.size),
                           method="parity")
