"""Hedging errors of delta rules between consecutive surfaces, bucketed by tenor and moneyness.

The experiment of Alexander & Imeraj, "Delta hedging bitcoin options with a smile",
Quantitative Finance 23(5), 2023: hold an option over one step, hedge it with a
delta, and compare the variance of what is left across delta rules. The rule whose
smile dynamics match the market's leaves the least. Here one step is two consecutive
published surfaces; the option is revalued on each surface at its fixed strike, and
the time decay over the step (the option revalued at the new time on the old
surface) is taken out, so what remains is the price move the hedge should have
caught:

    e = V(F1, K, t1, sigma1(K)) - V(F0, K, t1, sigma0(K)) - delta0 * (F1 - F0)

in basis points of ``F0`` (prices are undiscounted Black-76, as the surface's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Tenor bucket edges, days; labels below.
TENOR_EDGES_DAYS = (7.0, 30.0, 90.0)
TENOR_LABELS = ("<7d", "7-30d", "30-90d", ">90d")
#: Moneyness bucket edges in standardised log-moneyness ``k / (atm_vol * sqrt(t))``.
MONEYNESS_EDGES = (-1.0, -0.25, 0.25, 1.0)
MONEYNESS_LABELS = ("<-1sd", "-1..-0.25sd", "atm", "0.25..1sd", ">1sd")
#: A rule must cover this share of a bucket's observations to take part in its ranking.
MIN_COVERAGE = 0.5
BP = 1e4


class BucketErrors(NamedTuple):
    """Variance of hedging errors (bp of the forward, squared) per rule in one bucket."""

    tenor: str
    moneyness: str
    n: int
    variance: dict[str, float]
    best: str | None


def hedging_errors(v1: FloatArray, v0_carried: FloatArray, f0: FloatArray, f1: FloatArray,
                   deltas: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
    """Each rule's hedging error in bp of ``f0`` (NaN where its delta is NaN)."""
    move = v1 - v0_carried
    return {rule: BP * (move - d * (f1 - f0)) / f0 for rule, d in deltas.items()}


def _bucket(values: FloatArray, edges: Sequence[float]) -> npt.NDArray[np.intp]:
    return np.searchsorted(np.asarray(edges), values, side="right")


def variance_table(tenor_days: FloatArray, z: FloatArray, errors: Mapping[str, FloatArray]
                   ) -> list[BucketErrors]:
    """One row per non-empty (tenor, moneyness) bucket, in label order."""
    tb, mb = _bucket(tenor_days, TENOR_EDGES_DAYS), _bucket(z, MONEYNESS_EDGES)
    rows = []
    for i, tenor in enumerate(TENOR_LABELS):
        for j, moneyness in enumerate(MONEYNESS_LABELS):
            mask = (tb == i) & (mb == j)
            if mask.any():
                variance, best = overall({r: e[mask] for r, e in errors.items()})
                rows.append(BucketErrors(tenor, moneyness, int(mask.sum()), variance, best))
    return rows


def overall(errors: Mapping[str, FloatArray]) -> tuple[dict[str, float], str | None]:
    """Each rule's error variance, and the rule with the least on the observations that
    every well-covered rule has (None when no rule is)."""
    n = max((e.size for e in errors.values()), default=0)
    variance = {r: float(np.var(e[np.isfinite(e)])) if np.isfinite(e).any() else float("nan")
                for r, e in errors.items()}
    ranked = [r for r, e in errors.items() if n and np.isfinite(e).sum() >= MIN_COVERAGE * n]
    if not ranked:
        return variance, None
    common = np.logical_and.reduce([np.isfinite(errors[r]) for r in ranked])
    if not common.any():
        return variance, None
    return variance, min(ranked, key=lambda r: float(np.var(errors[r][common])))
