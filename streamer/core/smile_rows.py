"""Rows of smiles that :func:`streamer.core.smile.smile_metrics_rows` can take to C.

Any :data:`~streamer.core.smile.VolRows` will do for the metrics; where the rows are raw
SVI, either a model's slices (:class:`~streamer.core.models.svi.SVIVolRows`) or the
constant-maturity blend of two of them (:class:`BlendedRows` over
:class:`~streamer.core.models.svi.SVIVarianceRows`, :mod:`streamer.core.tenors`), the C
kernel ``_svi_smile.c`` (built by setup.py where there is a compiler) computes the
metrics of every smile in one call: numpy's per-call overhead on four strikes of a dozen
smiles, not the arithmetic, was their cost. The numpy path stays for the other models,
as the fallback where the kernel was not built and as the reference
(tests/core/test_smile_native.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, cast

import numpy as np
import numpy.typing as npt

from streamer.core.models.svi import SVIVarianceRows, SVIVolRows
from streamer.core.native import extension

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
#: slice indices (r,) and log-moneyness (r, m) -> total variance of slice ``idx[i]`` in row i
VarianceRows = Callable[[IntArray, FloatArray], FloatArray]
#: the metrics' columns, as the kernel writes them
COLUMNS = ("atm_vol", "atm_skew", "atm_curvature", "rr25", "bf25", "rr10", "bf10")


class Blend(NamedTuple):
    """Per row: ``w = scale * clip(W_lo + lam (W_hi - W_lo)) + extra`` with the clip to
    ``[min, max]`` of ``W_lo, W_hi`` (the rule of
    :func:`streamer.core.tenors.total_variance_at`, one case per row)."""

    lo: IntArray
    hi: IntArray
    lam: FloatArray
    scale: FloatArray
    extra: FloatArray


@dataclass(frozen=True, slots=True)
class BlendedRows:
    """Vols ``sqrt(w * inv_t)`` of the blend of the rows of ``evaluate`` (NaN where
    ``w < 0``); ``inv_t`` each row's ``1 / t``, shape (n, 1)."""

    evaluate: VarianceRows
    blend: Blend
    inv_t: FloatArray

    def __call__(self, k: FloatArray) -> FloatArray:
        b = self.blend
        w_lo, w_hi = self.evaluate(b.lo, k), self.evaluate(b.hi, k)
        # clipped to [lo, hi]: no rounding step against the direction of travel
        w = (b.scale[:, None] * np.clip(w_lo + b.lam[:, None] * (w_hi - w_lo),
                                        np.fmin(w_lo, w_hi), np.fmax(w_lo, w_hi))
             + b.extra[:, None])
        with np.errstate(invalid="ignore"):
            result: FloatArray = np.sqrt(np.where(w >= 0, w, np.nan) * self.inv_t)
        return result


class _SVISmiles(NamedTuple):
    """Raw SVI smiles in the kernel's form: slices ``params`` (n_slices, 5) blended by
    ``blend`` (or row ``i`` slice ``i`` where not ``blended``), vols at ``1 / inv_t``."""

    params: FloatArray
    blend: Blend
    inv_t: FloatArray
    blended: bool


def _svi_smiles(vol_rows: object) -> _SVISmiles | None:
    """The rows as raw SVI smiles; None where they are not (the one place that decides)."""
    if isinstance(vol_rows, SVIVolRows):
        n = vol_rows.inv_t.shape[0]
        rows = np.arange(n, dtype=np.int64)
        plain = Blend(rows, rows, np.zeros(n), np.ones(n), np.zeros(n))
        return _SVISmiles(vol_rows.stacked, plain, vol_rows.inv_t, False)
    if isinstance(vol_rows, BlendedRows) and isinstance(vol_rows.evaluate, SVIVarianceRows):
        return _SVISmiles(vol_rows.evaluate.stacked, vol_rows.blend, vol_rows.inv_t, True)
    return None


def _kernel() -> Callable[..., None] | None:
    module = extension("streamer.core._svi_smile", "metrics")
    return None if module is None else cast(Callable[..., None], module.metrics)


#: The C kernel where it was built (None: every smile takes the numpy path).
_NATIVE = _kernel()


def native_metrics(vol_rows: object, sqrt_t: FloatArray, settings: FloatArray,
                   newton_steps: int, bisections: int) -> FloatArray | None:
    """The metrics (:data:`COLUMNS`) of raw SVI rows with the kernel, shape (n, 7); None
    where the rows are not raw SVI or the kernel was not built.

    ``settings``: ``ndtri`` of the four targets, the targets, ``ndtri(1 - min delta)``,
    the ATM step, twice it, its square, Newton's difference step and tolerance (the
    numbers of :mod:`streamer.core.smile`, computed there so that their bits agree).
    """
    kernel = _NATIVE
    smiles = None if kernel is None else _svi_smiles(vol_rows)
    if kernel is None or smiles is None:
        return None
    out = np.empty((sqrt_t.size, len(COLUMNS)))
    b = smiles.blend
    kernel(_f64(smiles.params), _i64(b.lo), _i64(b.hi), _f64(b.lam), _f64(b.scale),
           _f64(b.extra), _f64(smiles.inv_t), _f64(sqrt_t), _f64(settings), out, newton_steps,
           bisections, smiles.blended)
    return out


def _f64(x: FloatArray) -> FloatArray:
    return np.ascontiguousarray(x, np.float64)


def _i64(x: IntArray) -> IntArray:
    return np.ascontiguousarray(x, np.int64)
