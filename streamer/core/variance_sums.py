"""The variance index's sums (:mod:`streamer.core.variance_index`) in C where it was built.

The C kernel ``_variance_index.c`` (built by setup.py where there is a compiler) takes
an expiry's quotes, or fitted smiles' dense strike grids (their Black-76 prices and, for
raw SVI, their vols), to the VIX sum in one call: numpy's per-call overhead on ~50
quotes, some 40 calls a sum, not the arithmetic, was their cost. It repeats numpy's
operations in numpy's order, its pairwise summation included, so the sums agree bit for
bit. The numpy path stays for the fallback where the kernel was not built and as the
reference (tests/core/test_variance_native.py). The grids' exponentials and logarithms
stay numpy's (its SIMD ``exp`` and libm's differ in the last bit), computed here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.core import special
from streamer.core.models.protocol import SliceEvaluator
from streamer.core.models.svi import SVIModel, SVIParams
from streamer.core.native import extension
from streamer.core.variance_index import (
    ExpiryVariance,
    VixSum,
    from_sum,
    grid_sums,
    quoted_sum,
    smile_grids,
)

FloatArray = npt.NDArray[np.float64]


def _kernel() -> Any:
    if not special.NATIVE:  # scipy's ndtr in the numpy path: the kernel's would not agree
        return None
    return extension("streamer.core._variance_index")


#: The C kernel where it was built (None: every sum takes the numpy path).
_NATIVE = _kernel()


#: ``columns(quotes, *fields)``: the named attributes of every quote as rows, shape (4, n)
Columns = Callable[..., FloatArray]


def quoted_variance(quotes: Sequence[object], fields: tuple[str, str, str, str],
                    columns: Columns, t: float) -> ExpiryVariance | None:
    """One expiry's variance from its quotes (:func:`~streamer.core.variance_index.
    quoted_sum`), ``fields`` the names of their strike, bid, ask and is_call: the kernel
    reads them from the quotes, numpy's path takes them by ``columns``."""
    if t <= 0 or not quotes:
        return None
    if _NATIVE is None:
        got = quoted_sum(columns(quotes, *fields))
    else:
        out = np.empty(4)
        _NATIVE.quoted(quotes, fields, out)
        got = _as_sum(out)
    return None if got is None else from_sum(got, t)


def smile_variances(model: SliceEvaluator, params: Sequence[Any], t: FloatArray,
                    forward: FloatArray, widths: float, points: int) -> list[VixSum | None]:
    """The sum on each fitted smile (``params`` of ``model`` at ``t`` years, ``forward``)
    over its dense grid (:func:`~streamer.core.variance_index.smile_grids`): raw SVI's
    grids and vols in the kernel, other models' vols by ``model.vol`` one smile at a time.
    """
    svi = _raw_svi(model, params)
    if svi is not None:
        k = np.empty((len(params), points))
        _NATIVE.svi_grids(svi, t, widths, k)
        return _smile_sums(k, forward, t, svi, True)
    atm = np.array([float(model.vol(np.zeros(1), ti, p)[0]) * np.sqrt(ti)
                    for ti, p in zip(t.tolist(), params, strict=True)])
    k = smile_grids(atm, widths, points)
    vol = np.array([model.vol(row, ti, p) for row, ti, p in zip(k, t.tolist(), params,
                                                                   strict=True)])
    if _NATIVE is None:
        return grid_sums(k, forward[:, None] * np.exp(k), vol, forward, t)
    return _smile_sums(k, forward, t, np.ascontiguousarray(vol, np.float64), False)


def _smile_sums(k: FloatArray, forward: FloatArray, t: FloatArray, rows: FloatArray, svi: bool
                ) -> list[VixSum | None]:
    """The kernel's sums: the strikes and ``log(F / K)`` numpy's (its SIMD ``exp`` and
    ``log`` differ from libm's in the last bit); ``rows`` the vols, or raw SVI's params."""
    f = forward[:, None]
    strikes = f * np.exp(k)
    with np.errstate(divide="ignore", invalid="ignore"):  # as black76's d1
        log_fk = np.log(f / strikes)
    out = np.empty((k.shape[0], 4))
    _NATIVE.smiles(k, strikes, log_fk, rows, forward, t, out, svi)
    return [VixSum(total, fwd, k0, int(n)) if n else None for total, fwd, k0, n in out.tolist()]


def _raw_svi(model: object, params: Sequence[Any]) -> FloatArray | None:
    """The slices' parameters as rows ``a, b, rho, m, sigma`` where the kernel can take
    their grids and vols (raw SVI), else None."""
    if _NATIVE is None or not isinstance(model, SVIModel):
        return None
    if not all(isinstance(p, SVIParams) for p in params):
        return None
    return np.array([[p.a, p.b, p.rho, p.m, p.sigma] for p in params], np.float64)


def _as_sum(out: FloatArray) -> VixSum | None:
    total, forward, k0, n = out.tolist()
    return VixSum(total, forward, k0, int(n)) if n else None
