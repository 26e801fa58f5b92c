"""Slices of different lengths as the rows of one array: one numpy call for a whole chain.

On a chain's 30-60 quotes a slice, numpy's per-call overhead, not the arithmetic, is the
cost; so the slices are stacked into rows padded to the longest, with a mask of the
quoted cells, and every pass over them is one call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def quoted_mask(sizes: Sequence[int] | npt.NDArray[np.int64], width: int | None = None
                ) -> BoolArray:
    """Row ``i`` True in its first ``sizes[i]`` cells, of ``width`` (default the longest)."""
    n = np.asarray(sizes, np.int64)
    cells = int(n.max(initial=0)) if width is None else width
    mask: BoolArray = np.arange(cells)[None, :] < n[:, None]
    return mask


def padded(values: Sequence[FloatArray], mask: BoolArray, fill: float) -> FloatArray:
    """The quoted cells of ``mask`` filled, row by row, with ``values`` (one array per
    row, or the rows' cells already in one), ``fill`` beyond."""
    out = np.full(mask.shape, fill)
    if len(values):
        out[mask] = np.concatenate(values)
    return out


def linspace_rows(lo: FloatArray, hi: FloatArray, n: int) -> FloatArray:
    """``np.linspace(lo, hi, n, axis=1)``, the same bits (numpy's own steps: tests/core/
    test_rows.py), without its ~30 us of Python a call: row ``i`` runs from ``lo[i]`` to
    ``hi[i]``."""
    steps = np.arange(n, dtype=np.float64)
    delta = hi - lo
    if n < 2:
        grid = steps * delta[:, None]
    elif np.any(delta / (n - 1) == 0):  # numpy then scales by the range, not the step
        grid = (steps / (n - 1)) * delta[:, None]
    else:
        grid = steps * (delta / (n - 1))[:, None]
    grid += lo[:, None]
    if n > 1:
        grid[:, -1] = hi
    return grid
