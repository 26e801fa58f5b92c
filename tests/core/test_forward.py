"""Forward per expiry from put-call parity pairs, with outliers and missing quotes.

Reference: undiscounted put-call parity ``C - P = F - K`` (Black 1976; Hull, "Options,
Futures, and Other Derivatives", ch. 18), so every clean pair implies ``F = K + C - P``.
Synthetic chains are priced with ``streamer.core.black76.price`` at a known forward.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamer.core.black76 import price
from streamer.core.forward import ForwardEstimate, implied_forward, implied_forwards

F_TRUE = 64_321.5
T = 0.25
STRIKES = np.arange(40_000.0, 92_500.0, 2_500.0)  # 21 strikes, 62_500 and 65_000 nearest


def _chain(forward: float = F_TRUE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vol = 0.55 - 0.1 * np.log(STRIKES / forward)  # a skewed smile; parity holds regardless
    return (STRIKES.copy(), price(forward, STRIKES, T, vol, True),
            price(forward, STRIKES, T, vol, False))


def test_recovers_the_forward_from_clean_pairs() -> None:
    k, c, p = _chain()
    est = implied_forward(k, c, p, fallback=60_000.0)
    assert est.method == "parity"
    assert est.n_pairs == 6  # max_pairs nearest the money
    assert est.forward == pytest.approx(F_TRUE, rel=1e-12)


def test_uses_at_most_max_pairs_nearest_the_money() -> None:
    k, c, p = _chain()
    est = implied_forward(k, c, p, fallback=60_000.0, max_pairs=3)
    assert est == ForwardEstimate(forward=pytest.approx(F_TRUE, rel=1e-12), n_pairs=3,
                                  method="parity")


def test_bad_pairs_near_the_money_are_dropped_as_outliers() -> None:
    k, c, p = _chain()
    nearest_two = np.argsort(np.abs(k - F_TRUE))[:2]
    p[nearest_two] += 0.005 * F_TRUE  # stale puts: implied F off by 0.5% (> 0.2%)
    est = implied_forward(k, c, p, fallback=60_000.0)
    assert est.method == "parity"
    assert est.n_pairs == 4
    assert est.forward == pytest.approx(F_TRUE, rel=1e-12)


def test_bad_quotes_in_the_wings_are_never_used() -> None:
    k, c, p = _chain()
    far = np.argsort(np.abs(k - F_TRUE))[6:]
    # Widen |C - P| so the corrupted pairs stay out of the nearest-the-money set.
    c[far] = np.where(k[far] < F_TRUE, c[far] * 1.5, c[far])
    p[far] = np.where(k[far] > F_TRUE, p[far] * 1.5, p[far])
    est = implied_forward(k, c, p, fallback=60_000.0)
    assert est.n_pairs == 6
    assert est.forward == pytest.approx(F_TRUE, rel=1e-12)


def test_noisy_mids_give_a_close_forward() -> None:
    k, c, p = _chain()
    rng = np.random.default_rng(7)
    c = c * (1 + 1e-3 * rng.uniform(-1, 1, c.size))
    p = p * (1 + 1e-3 * rng.uniform(-1, 1, p.size))
    est = implied_forward(k, c, p, fallback=60_000.0)
    assert est.method == "parity"
    assert est.n_pairs >= 4
    # Each pair's error is at most 1e-3 (C + P) ~ 16 near the money.
    assert est.forward == pytest.approx(F_TRUE, abs=20.0)


def test_missing_pairs_fall_back_to_the_exchange_underlying() -> None:
    k, c, p = _chain()
    p[:] = math.nan
    p[10] = price(F_TRUE, k[10], T, 0.5, False)  # a single complete pair is not enough
    est = implied_forward(k, c, p, fallback=64_300.0)
    assert est == ForwardEstimate(forward=64_300.0, n_pairs=1, method="fallback")


@pytest.mark.parametrize("missing", ["empty", "all_nan", "zero_prices", "negative_strikes"])
def test_no_usable_pair_falls_back(missing: str) -> None:
    k, c, p = _chain()
    if missing == "empty":
        k, c, p = np.array([]), np.array([]), np.array([])
    elif missing == "all_nan":
        c[:] = math.nan
    elif missing == "zero_prices":
        p[:] = 0.0  # Deribit's "no quote"
    else:
        k = -k
    est = implied_forward(k, c, p, fallback=64_300.0)
    assert est == ForwardEstimate(forward=64_300.0, n_pairs=0, method="fallback")


def test_pairs_that_disagree_fall_back_and_report_how_many_agreed() -> None:
    k = np.array([63_000.0, 64_000.0, 65_000.0])
    implied = np.array([63_500.0, 64_300.0, 65_100.0])  # 1.2% apart: at most 1 near median
    c = np.full(3, 3_000.0)
    p = c - (implied - k)
    est = implied_forward(k, c, p, fallback=64_250.0)
    assert est == ForwardEstimate(forward=64_250.0, n_pairs=1, method="fallback")


def test_non_positive_forward_from_garbage_prices_falls_back() -> None:
    k = np.array([100.0, 110.0, 120.0])
    c = np.array([1.0, 1.0, 1.0])
    p = np.array([201.0, 211.0, 221.0])  # K + C - P = -100 everywhere
    est = implied_forward(k, c, p, fallback=99.0)
    assert est.method == "fallback"
    assert est.forward == 99.0


def test_many_expiries_at_once_are_each_expiry_on_its_own() -> None:
    """One pass over a chain: clean, outlier-ridden, too-few-pairs and empty expiries
    side by side give what each gives alone."""
    cases = []
    for f in (F_TRUE, 1.1 * F_TRUE, 0.9 * F_TRUE):
        cases.append(_chain(f))
    k, c, p = _chain()
    p[np.argsort(np.abs(k - F_TRUE))[:2]] += 0.005 * F_TRUE
    cases.append((k, c, p))
    cases.append((STRIKES[:1], *(x[:1] for x in _chain()[1:])))  # one pair: fallback
    fallback = np.array([50_000.0, 51_000.0, 52_000.0, 53_000.0, 54_000.0, 55_000.0])
    group = np.concatenate([np.full(case[0].size, i) for i, case in enumerate(cases)])
    cols = [np.concatenate([case[j] for case in cases]) for j in range(3)]
    forward, n_pairs, parity = implied_forwards(group, *cols, fallback)
    for i, case in enumerate(cases):
        alone = implied_forward(*case, fallback=float(fallback[i]))
        assert (forward[i], int(n_pairs[i]), "parity" if parity[i] else "fallback") == (
            alone.forward, alone.n_pairs, alone.method)
    assert (forward[5], n_pairs[5], parity[5]) == (55_000.0, 0, False)  # no pairs at all
