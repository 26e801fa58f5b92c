"""SVI jump-wings parameters (Gatheral 2004): a smile described in a trader's terms.

For a smile of total variance ``w(k)`` at ``t`` years (``k = ln(K/F)``):

- ``v``: ATM variance ``w(0) / t``;
- ``psi``: ATM skew ``w'(0) / (2 sqrt(w(0)))`` (equal to ``sqrt(t) d sigma / d k`` at 0);
- ``p``: slope of the left (put) wing ``-w'(-inf) / sqrt(w(0))``;
- ``c``: slope of the right (call) wing ``w'(+inf) / sqrt(w(0))``;
- ``v_tilde``: minimum implied variance ``min_k w(k) / t``.

For raw SVI ``w = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))`` these are closed
forms (Gatheral, "A parsimonious arbitrage-free implied volatility parameterization",
Global Derivatives 2004, slide "SVI-JW"; Gatheral & Jacquier 2014, section 3.3). For any
other smile they are read off the smile: ``v`` and ``psi`` at the money, the wing slopes
as chords over the outer tenth of the quoted range, ``v_tilde`` as the minimum over it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from streamer.core.params import NamedFloats
from streamer.core.svi_slices import native_jump_wings

FloatArray = npt.NDArray[np.float64]
VarianceOfK = Callable[[FloatArray], FloatArray]

_STEP = 1e-4
_GRID = 201


class JumpWings(NamedFloats, frozen=True, kw_only=True):
    """Gatheral's jump-wings parameters of one smile (variances per year, slopes per k)."""

    v: float
    psi: float
    p: float
    c: float
    v_tilde: float


_FIELDS = JumpWings.__struct_fields__


def from_raw_svi(a: float, b: float, rho: float, m: float, sigma: float, t: float) -> JumpWings:
    """Jump-wings of a raw SVI slice, exactly (Gatheral 2004)."""
    return JumpWings(**dict(zip(_FIELDS, _raw_svi(a, b, rho, m, sigma,
                                                  float(np.hypot(m, sigma)), t), strict=True)))


def from_raw_svi_rows(stacked: FloatArray, t: Sequence[float]) -> list[dict[str, float]]:
    """``from_raw_svi(...).as_dict()`` of every raw SVI slice of ``stacked``
    (``svi.stack``: rows ``a, b, rho, m, sigma``) at its ``t``: the C kernel where built
    (:mod:`streamer.core.svi_slices`), else one hypot for all and Python floats."""
    native = native_jump_wings(stacked, t)
    if native is not None:
        return [dict(zip(_FIELDS, row, strict=True)) for row in native]
    params = stacked.reshape(len(t), 5)
    roots = np.hypot(params[:, 3], params[:, 4]).tolist()
    return [dict(zip(_FIELDS, _raw_svi(a, b, rho, m, sigma, root, t_i), strict=True))
            for (a, b, rho, m, sigma), root, t_i in zip(params.tolist(), roots, t, strict=True)]


def _raw_svi(a: float, b: float, rho: float, m: float, sigma: float, root: float, t: float
             ) -> tuple[float, float, float, float, float]:
    """``v, psi, p, c, v_tilde`` of raw SVI, ``root`` the libm ``hypot(m, sigma)``.

    Python floats past the one libm hypot: numpy scalar arithmetic gives the same IEEE
    results at ten times the cost, once per slice per batch."""
    w = a + b * (-rho * m + root)
    sqrt_w = math.sqrt(w) if w > 0 else math.nan
    return (_ratio(w, t), _ratio(0.5 * b * (rho - _ratio(m, root)), sqrt_w),
            _ratio(b * (1.0 - rho), sqrt_w), _ratio(b * (1.0 + rho), sqrt_w),
            _ratio(a + b * sigma * _sqrt(1.0 - rho * rho), t))


def _ratio(x: float, y: float) -> float:
    """``x / y`` as numpy divides: +-inf or NaN where ``y`` is 0, never an exception."""
    if y != 0.0:
        return x / y
    if x != x or x == 0.0:
        return math.nan
    return math.copysign(math.inf, x) * math.copysign(1.0, y)


def _sqrt(x: float) -> float:
    """``np.sqrt`` of a float: NaN below 0."""
    return math.sqrt(x) if x >= 0.0 else math.nan


def from_smile(w_of_k: VarianceOfK, t: float, k_min: float, k_max: float) -> JumpWings:
    """Jump-wings read off any smile over its quoted range ``[k_min, k_max]``."""
    atm = w_of_k(np.array([-_STEP, 0.0, _STEP]))
    w0 = float(atm[1])
    sqrt_w = np.sqrt(w0) if w0 > 0 else np.nan
    lo, hi = min(k_min, -_STEP), max(k_max, _STEP)
    grid = np.linspace(lo, hi, _GRID)
    w = w_of_k(grid)
    edge = max(_GRID // 10, 1)
    left = (w[0] - w[edge]) / (grid[edge] - grid[0])
    right = (w[-1] - w[-1 - edge]) / (grid[-1] - grid[-1 - edge])
    return JumpWings(v=w0 / t, psi=float((atm[2] - atm[0]) / (2 * _STEP) / (2 * sqrt_w)),
                     p=float(left / sqrt_w), c=float(right / sqrt_w),
                     v_tilde=_min_variance(w_of_k, grid, w) / t)


def _min_variance(w_of_k: VarianceOfK, grid: FloatArray, w: FloatArray) -> float:
    """Minimum of ``w`` on ``grid``, refined on a fine grid between the neighbours."""
    if not np.isfinite(w).any():
        return float("nan")
    i = int(np.nanargmin(w))
    fine = np.linspace(grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)], _GRID)
    return float(min(np.nanmin(w), np.nanmin(w_of_k(fine))))
