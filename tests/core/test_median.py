"""The small-array medians against numpy's own ``np.median`` (the reference)."""

from __future__ import annotations

import numpy as np

from streamer.core.median import group_median, row_median


def test_row_median_is_numpys_median_of_each_rows_masked_entries() -> None:
    """Rows of padded slices: each row's median over its mask, ``empty`` for a row with
    nothing in it."""
    rng = np.random.default_rng(2)
    a = rng.normal(size=(30, 17))
    mask = rng.random(a.shape) < 0.6
    mask[4] = False
    a[~mask] = np.nan  # padding is never read
    got = row_median(a, mask, empty=-1.0)
    for row, m, value in zip(a, mask, got, strict=True):
        assert value == (np.median(row[m]) if m.any() else -1.0)


def test_group_median_is_numpys_median_of_each_groups_finite_values() -> None:
    """Quotes of many slices in one flat array: each slice's median, NaN left out,
    ``empty`` for a slice with no finite value (or none at all)."""
    rng = np.random.default_rng(3)
    group = rng.integers(0, 12, 300)
    group[group == 5] = 6  # slice 5 has no quotes
    a = rng.normal(size=300)
    a[rng.random(300) < 0.2] = np.nan
    a[group == 7] = np.nan  # slice 7 has quotes, none finite
    got = group_median(a, group, 12, empty=-1.0)
    for g in range(12):
        values = a[(group == g) & np.isfinite(a)]
        assert got[g] == (np.median(values) if values.size else -1.0), g
