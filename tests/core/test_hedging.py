"""core.hedging: bucketing of hedging errors and the ranking of delta rules."""

from __future__ import annotations

import numpy as np

from streamer.core.hedging import hedging_errors, overall, variance_table


def test_the_exact_delta_leaves_no_error() -> None:
    # A linear price: V1 - V0 = 0.5 (F1 - F0); only delta 0.5 hedges it.
    f0, f1 = np.full(3, 100.0), np.array([101.0, 99.0, 100.5])
    errors = hedging_errors(0.5 * (f1 - f0), np.zeros(3), f0, f1,
                            {"right": np.full(3, 0.5), "wrong": np.full(3, 0.4)})
    assert np.allclose(errors["right"], 0.0)
    assert np.allclose(errors["wrong"], 1e4 * 0.1 * (f1 - f0) / f0)


def test_buckets_by_tenor_and_moneyness_and_the_least_variance_wins() -> None:
    rng = np.random.default_rng(1)
    tenor = np.array([1.0, 1.0, 10.0, 10.0, 200.0, 200.0] * 50)
    z = np.tile([0.0, -2.0], 150)
    errors = {"a": rng.normal(0, 1, 300), "b": rng.normal(0, 2, 300)}
    rows = variance_table(tenor, z, errors)
    assert [(r.tenor, r.moneyness) for r in rows] == [
        ("<7d", "<-1sd"), ("<7d", "atm"), ("7-30d", "<-1sd"), ("7-30d", "atm"),
        (">90d", "<-1sd"), (">90d", "atm")]
    assert all(r.n == 50 and r.best == "a" for r in rows)


def test_a_rule_with_little_data_does_not_take_part_in_the_ranking() -> None:
    sparse = np.full(100, np.nan)
    sparse[:10] = 0.0  # perfect, but on a tenth of the observations
    variance, best = overall({"a": np.ones(100) * np.arange(100), "sparse": sparse})
    assert best == "a"
    assert variance["sparse"] == 0.0
