"""Slices of different lengths as padded rows (streamer.core.rows)."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.core.rows import linspace_rows, padded, quoted_mask


def test_each_row_holds_its_own_values_and_the_fill_beyond() -> None:
    values = [np.array([1.0, 2.0, 3.0]), np.array([4.0]), np.array([]), np.array([5.0, 6.0])]
    mask = quoted_mask([v.size for v in values])
    rows = padded(values, mask, np.nan)
    assert rows.shape == (4, 3)
    for row, v in zip(rows, values, strict=True):
        np.testing.assert_array_equal(row[:v.size], v)
        assert np.isnan(row[v.size:]).all()
    # the same cells given as one flat array
    np.testing.assert_array_equal(padded([np.concatenate(values)], mask, np.nan), rows)


def test_a_wider_mask_leaves_extra_columns_to_the_fill() -> None:
    mask = quoted_mask([2, 1], width=4)
    assert mask.tolist() == [[True, True, False, False], [True, False, False, False]]
    assert padded([np.ones(2), np.ones(1)], mask, 0.0).sum() == 3.0
    assert padded([], quoted_mask([], width=2), 0.0).shape == (0, 2)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 201])
def test_linspace_rows_are_numpys_linspace_bit_for_bit(n: int) -> None:
    rng = np.random.default_rng(3)
    lo = np.concatenate([rng.uniform(-1.5, 0.0, 20), [0.3, -0.2]])
    hi = np.concatenate([lo[:20] + rng.uniform(0.0, 2.0, 20), [0.3, 0.1]])  # one zero range
    np.testing.assert_array_equal(linspace_rows(lo, hi, n), np.linspace(lo, hi, n, axis=1))
    np.testing.assert_array_equal(linspace_rows(lo[:20], hi[:20], n),
                                  np.linspace(lo[:20], hi[:20], n, axis=1))
