"""Raw SVI slices of one surface side by side, in C where built: each pair's calendar
gap, each slice's jump-wings, the smiles' slopes at quotes (``_svi_slices.c``).

The one place that decides whether the kernel is used: without it (no compiler), each
function returns None and its caller takes its numpy or Python path, the kernel's
reference (``engine._calendar_margins``, ``jump_wings.from_raw_svi_rows``,
``pipeline.dynamics._slopes``; the same bits, tests/core/test_svi_slices.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.core.native import extension

FloatArray = npt.NDArray[np.float64]


#: The C kernel where it was built (None: the numpy and Python paths).
_NATIVE: Any | None = extension("streamer.core._svi_slices")


def _params(stacked: FloatArray) -> FloatArray:
    """``svi.stack``'s (n, 5, 1) as contiguous (n, 5) float64."""
    return np.ascontiguousarray(stacked, np.float64).reshape(-1, 5)


def native_calendar_gaps(stacked: FloatArray, lo: Sequence[float], hi: Sequence[float],
                         points: int) -> list[float] | None:
    """Per pair of consecutive slices of ``stacked`` (``svi.stack``): the minimum over
    ``points`` log-moneyness from ``lo`` to ``hi`` of the later slice's total variance
    minus the earlier's (NaN wins). None without the kernel."""
    kernel: Callable[..., None] | None = None if _NATIVE is None else _NATIVE.calendar_gaps
    if kernel is None:
        return None
    out = np.empty(len(lo))
    kernel(_params(stacked), np.array(lo, np.float64), np.array(hi, np.float64), points, out)
    return out.tolist()


def native_jump_wings(stacked: FloatArray, t: Sequence[float]) -> list[list[float]] | None:
    """``v, psi, p, c, v_tilde`` of every slice of ``stacked`` (``svi.stack``) at its
    ``t``. None without the kernel."""
    kernel: Callable[..., None] | None = None if _NATIVE is None else _NATIVE.jump_wings
    if kernel is None:
        return None
    out = np.empty((len(t), 5))
    kernel(_params(stacked), np.array(t, np.float64), out)
    return out.tolist()


def native_slopes(stacked: FloatArray, t: Sequence[float], row: npt.NDArray[np.intp],
                  k: FloatArray, step: float) -> FloatArray | None:
    """``(vol(k + step) - vol(k - step)) / (2 step)`` of slice ``row[i]`` of ``stacked``
    (``svi.stack``, times ``t``) at ``k[i]``. None without the kernel."""
    kernel: Callable[..., None] | None = None if _NATIVE is None else _NATIVE.slopes
    if kernel is None:
        return None
    out = np.empty(k.size)
    kernel(_params(stacked), np.array(t, np.float64), np.ascontiguousarray(row, np.int64),
           np.ascontiguousarray(k, np.float64), step, out)
    return out
