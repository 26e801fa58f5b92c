"""Raw SVI's butterfly margins in C (``_svi_butterfly.c``, built by setup.py where there
is a C compiler): the minimum of Durrleman's g on each slice's 201-point grid, for a
chain's slices in two kernel calls around numpy's cube of the roots.

numpy's ~30 calls a chain, not the arithmetic, were the cost of
:func:`streamer.core.models.svi.butterfly_margins`; its numpy path stays the reference
and the fallback where the kernel was not built (tests/core/test_svi_butterfly.py: the
same bits). The cube ``root ** 3`` stays numpy's: its SIMD power (SVML where the CPU has
AVX-512) differs from libm's ``pow`` in the last bit, and the margins must not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import numpy.typing as npt

from streamer.core.native import extension

FloatArray = npt.NDArray[np.float64]


def _kernel() -> tuple[Callable[..., None], Callable[..., None]] | None:
    module = extension("streamer.core.models._svi_butterfly", "roots", "margins")
    if module is None:
        return None
    return cast(Callable[..., None], module.roots), cast(Callable[..., None], module.margins)


#: The C kernel where it was built (None: every margin takes the numpy path).
_NATIVE = _kernel()


def native_margins(stacked: FloatArray, k_min: FloatArray, k_max: FloatArray, n: int
                   ) -> FloatArray | None:
    """Each slice's butterfly margin on ``n`` points from ``k_min`` to ``k_max`` with the
    kernel, shape (slices,); None where it was not built or the grid is not one it takes
    (fewer than 2 points, no slices): the one place that decides.

    ``stacked``: :func:`streamer.core.models.svi.stack` of the slices, shape (slices, 5, 1).
    """
    kernel = _NATIVE
    slices = stacked.shape[0]
    if kernel is None or n < 2 or slices == 0:
        return None
    roots, margins = kernel
    params = np.ascontiguousarray(stacked, np.float64)
    k, root = np.empty((slices, n)), np.empty((slices, n))
    roots(params, _f64(k_min), _f64(k_max), k, root)
    out = np.empty(slices)
    margins(params, k, root, root**3, out)  # the cube numpy's: see the module's docstring
    return out


def _f64(x: FloatArray) -> FloatArray:
    return np.ascontiguousarray(x, np.float64)
