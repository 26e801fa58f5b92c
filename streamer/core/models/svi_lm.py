"""Raw SVI's fit kernels in C (``_svi_lm.c``, built by setup.py where there is a C
compiler), one slice at a time with the GIL released:

* ``lm``: the iteration of :mod:`~streamer.core.models.batch_lm` on the residuals of
  :func:`streamer.core.models.svi._residual_fn` (:func:`refine`);
* ``seeds``: the quasi-explicit seed grid of :func:`streamer.core.models.svi._seed_grid`
  (:func:`best_seeds`).

Where it was not built, :func:`native` is None and the SVI fit takes its numpy paths
(the same fits up to rounding: tests/core/test_svi_lm.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

import numpy as np
import numpy.typing as npt

from streamer.core.models import band, batch_lm

FloatArray = npt.NDArray[np.float64]


class Kernels(Protocol):
    """The C module's functions (their arguments: ``_svi_lm.c``)."""

    lm: Callable[..., None]
    seeds: Callable[..., None]


def native() -> Kernels | None:
    """The C kernels, or None where they were not built."""
    try:
        from streamer.core.models import _svi_lm  # type: ignore[attr-defined]
    except ImportError:
        return None
    return cast(Kernels, _svi_lm)


def _c(x: Any, shape: tuple[int, ...] | None = None) -> FloatArray:
    """A C-contiguous float64 copy (or view) of ``x``, broadcast to ``shape``."""
    if shape is not None and getattr(x, "shape", None) != shape:
        x = np.broadcast_to(x, shape)
    return np.ascontiguousarray(x, np.float64)


def refine(kernels: Kernels, k: FloatArray, bands: band.Band, inv_t: FloatArray,
           priors: tuple[FloatArray, FloatArray, FloatArray], theta0: FloatArray, *,
           max_iter: int, tol: float, sigma_prior: float, w_floor: float
           ) -> batch_lm.BatchResult:
    """Refine every problem (row) from ``theta0`` with the kernel ``lm``.

    ``priors`` is each problem's ``(ln span, span centre, span)`` of its quoted k;
    ``inv_t`` its ``1 / t``; ``k`` and the band's arrays are rows padded alike.
    """
    n = k.shape[0]
    theta = np.array(theta0, np.float64, order="C")
    iterations, nfev = np.zeros(n, np.int64), np.zeros(n, np.int64)
    converged = np.zeros(n, np.bool_)

    ln_span, centre, span = (_c(np.ravel(p)) for p in priors)
    kernels.lm(_c(k), *(_c(x, k.shape) for x in bands), _c(np.ravel(inv_t)), ln_span, centre,
               span, theta, iterations, nfev, converged, n, max_iter, float(tol),
               float(sigma_prior), float(w_floor), batch_lm.LAMBDA0, batch_lm.LAMBDA_MIN,
               batch_lm.LAMBDA_MAX, batch_lm.STEP_TOL)
    return batch_lm.BatchResult(theta=theta, iterations=iterations, nfev=nfev,
                                converged=converged)


def best_seeds(kernels: Kernels, k: FloatArray, sqrt_w: FloatArray, target_iv: FloatArray,
               valid: npt.NDArray[np.bool_], t: FloatArray, lo: FloatArray, hi: FloatArray,
               span: FloatArray, grid_m: FloatArray, grid_sigma: FloatArray, n_seeds: int
               ) -> tuple[FloatArray, FloatArray]:
    """Each slice's ``n_seeds`` best grid seeds as theta ``(n, n_seeds, 5)``, best first,
    and their scores (``inf`` where a slice had fewer grid points with curvature)."""
    n = k.shape[0]
    theta = np.zeros((n, n_seeds, 5))
    score = np.full((n, n_seeds), np.inf)
    kernels.seeds(_c(k), _c(sqrt_w), _c(target_iv), np.ascontiguousarray(valid, np.bool_),
                  _c(np.ravel(t)), _c(lo), _c(hi), _c(span), _c(grid_m), _c(grid_sigma), theta,
                  score, n, n_seeds)
    return theta, score
