"""Static-arbitrage checks on fitted smiles: butterfly (Durrleman) and calendar.

Model-free: the closed-form margins of SVI and SSVI slices live with their models
(:func:`streamer.core.models.svi.butterfly_margin`,
:func:`streamer.core.models.ssvi.slice_butterfly_margin`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def durrleman_g(k: npt.ArrayLike, w: npt.ArrayLike, dw: npt.ArrayLike, d2w: npt.ArrayLike
                ) -> FloatArray:
    """Durrleman's density condition; the smile is butterfly-free where ``g(k) >= 0``.

    Gatheral & Jacquier (2014), "Arbitrage-free SVI volatility surfaces", eq. (2.1):
    ``g = (1 - k w'/(2w))^2 - (w'^2/4)(1/w + 1/4) + w''/2``.
    """
    kk, ww = np.asarray(k, np.float64), np.asarray(w, np.float64)
    d1, d2 = np.asarray(dw, np.float64), np.asarray(d2w, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        g: FloatArray = (1.0 - kk * d1 / (2.0 * ww)) ** 2 - 0.25 * d1 * d1 * (
            1.0 / ww + 0.25) + 0.5 * d2
    return np.where(ww > 0, g, -np.inf)


def calendar_margins(total_variance: npt.ArrayLike) -> FloatArray:
    """Per expiry, ``min_k (w_i(k) - w_{i-1}(k))`` on a shared k grid (entry 0: ``min w_0``).

    Parameters
    ----------
    total_variance : array_like, shape (n_expiries, n_k)
        Total variance of each expiry (ascending) on the same k grid.
    """
    w = np.atleast_2d(np.asarray(total_variance, np.float64))
    margins = np.empty(w.shape[0])
    margins[0] = np.min(w[0])
    if w.shape[0] > 1:
        margins[1:] = np.min(np.diff(w, axis=0), axis=1)
    return margins


def calendar_free(total_variance: npt.ArrayLike, tol: float = 1e-12) -> npt.NDArray[np.bool_]:
    """Per expiry: total variance does not decrease from the previous expiry anywhere."""
    result: npt.NDArray[np.bool_] = calendar_margins(total_variance) >= -tol
    return result


def numeric_butterfly_margin(total_variance: Callable[[FloatArray], FloatArray], k_min: float,
                             k_max: float, n: int = 201) -> float:
    """Minimum of Durrleman's ``g`` for any smile given as ``w(k)``.

    Derivatives by central differences with step ``h = 1e-3``, whose truncation error
    (``O(h^2)`` of ``w'''``) is far below the margins that matter.
    """
    h = 1e-3
    k = np.linspace(k_min, k_max, n)
    w = total_variance(np.concatenate([k - h, k, k + h]))
    w_minus, w_mid, w_plus = w[:n], w[n:2 * n], w[2 * n:]
    dw = (w_plus - w_minus) / (2.0 * h)
    d2w = (w_plus - 2.0 * w_mid + w_minus) / (h * h)
    g = durrleman_g(k, w_mid, dw, d2w)
    return float(np.min(np.where(np.isfinite(g), g, -np.inf)))
