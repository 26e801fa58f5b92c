"""Raw SVI's fit kernels in C (``_svi_lm.c``, built by setup.py where there is a C
compiler), one slice at a time with the GIL released:

* ``lm``: the iteration of :mod:`~streamer.core.models.batch_lm` on the residuals of
  :func:`streamer.core.models.svi._residual_fn` (:func:`refine`);
* ``seeds``: the quasi-explicit seed grid of :func:`streamer.core.models.svi._seed_grid`
  (:func:`best_seeds`);
* ``count`` and ``rows``: a chain's usable quotes as padded rows with their band terms,
  the arrays of :func:`streamer.core.models.svi._pad` (:func:`usable_counts`,
  :func:`chain_rows`; ``_svi_rows.h``);
* ``pick``: each slice's best refined start, its objective and RMSE
  (:func:`streamer.core.models.svi._cost_at`; :func:`pick`).

Where it was not built, :func:`native` is None and the SVI fit takes its numpy paths
(the same fits up to rounding: tests/models/test_svi_lm.py; the rows and the pick are
the numpy paths' bits: tests/models/test_svi_rows.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, cast

import numpy as np
import numpy.typing as npt

from streamer.core.models import band, batch_lm
from streamer.core.native import extension

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
#: the planes of :attr:`ChainRows.cells`, in order
CELLS = ("k", "iv", "sqrt_w", "centre", "lower", "upper", "band_w", "pull_w", "tail", "target")
#: the rows of :attr:`ChainRows.stats`, in order
STATS = ("t", "inv_t", "n_valid", "lo", "hi", "span", "centre_k")
#: :func:`usable_counts` of a slice with a bad time to expiry, and with sides of other sizes
BAD_TIME, BAD_SIZES = -1, -2


class Kernels(Protocol):
    """The C module's functions (their arguments: ``_svi_lm.c``)."""

    lm: Callable[..., None]
    seeds: Callable[..., None]
    count: Callable[..., None]
    rows: Callable[..., None]
    pick: Callable[..., None]


def native() -> Kernels | None:
    """The C kernels, or None where they were not built."""
    return cast(Kernels | None, extension("streamer.core.models._svi_lm"))


def _c(x: Any, shape: tuple[int, ...] | None = None) -> FloatArray:
    """A C-contiguous float64 copy (or view) of ``x``, broadcast to ``shape``."""
    if shape is not None and getattr(x, "shape", None) != shape:
        x = np.broadcast_to(x, shape)
    return np.ascontiguousarray(x, np.float64)


def refine(kernels: Kernels, k: FloatArray, bands: band.Band, inv_t: FloatArray,
           priors: tuple[FloatArray, FloatArray, FloatArray], theta0: FloatArray,
           owner: IntArray | None = None, *, max_iter: int, tol: float, sigma_prior: float,
           w_floor: float) -> batch_lm.BatchResult:
    """Refine every problem from ``theta0`` with the kernel ``lm``: problem ``i`` fits the
    slice of row ``owner[i]`` (default: row ``i``).

    ``priors`` is each row's ``(ln span, span centre, span)`` of its quoted k; ``inv_t``
    its ``1 / t``; ``k`` and the band's arrays are rows padded alike.
    """
    n = theta0.shape[0]
    theta = np.array(theta0, np.float64, order="C")
    iterations, nfev = np.zeros(n, np.int64), np.zeros(n, np.int64)
    converged = np.zeros(n, np.bool_)
    rows = np.arange(n, dtype=np.int64) if owner is None else _i(owner)

    ln_span, centre, span = (_c(np.ravel(p)) for p in priors)
    kernels.lm(_c(k), *(_c(x, k.shape) for x in bands), _c(np.ravel(inv_t)), ln_span, centre,
               span, rows, theta, iterations, nfev, converged, n, max_iter, float(tol),
               float(sigma_prior), float(w_floor), batch_lm.LAMBDA0, batch_lm.LAMBDA_MIN,
               batch_lm.LAMBDA_MAX, batch_lm.STEP_TOL)
    return batch_lm.BatchResult(theta=theta, iterations=iterations, nfev=nfev,
                                converged=converged)


def _i(x: Any) -> IntArray:
    return np.ascontiguousarray(x, np.int64)


def pick(kernels: Kernels, k: FloatArray, iv: FloatArray, valid: BoolArray, bands: band.Band,
         t: FloatArray, priors: tuple[FloatArray, FloatArray, FloatArray],
         n_valid: FloatArray, owner: IntArray, res: batch_lm.BatchResult, *, w_floor: float,
         sigma_prior: float) -> FloatArray:
    """Each row's best refined start with the kernel ``pick``: shape ``(n_rows, 10)``, per
    row its theta (5), objective, RMSE and iterations at the start of lowest objective
    (the first of equals; NaN last), its starts' evaluations in all, and whether that
    start converged (1.0 / 0.0). The transcendental terms are numpy's (their bits).

    The rows' arrays are a chain's as built (C-contiguous float64 rows padded alike, one
    value a row for ``t``, ``priors`` and ``n_valid``): the kernel refuses others with a
    ValueError rather than copying them, which would cost as much as the pick."""
    t_flat = np.ravel(t)
    out = np.empty((t_flat.size, 10))
    kernels.pick(k, iv, *bands, valid, 1.0 / t_flat, t_flat, *priors, n_valid, owner,
                 res.theta, np.exp(res.theta[:, 1::3]), np.tanh(res.theta[:, 2]),
                 res.iterations, res.nfev, res.converged, out, float(w_floor),
                 float(sigma_prior))
    return out


class ChainRows(NamedTuple):
    """Slices as padded rows (:func:`chain_rows`): usable quotes first, then weightless
    padding at k = 0, vol 1."""

    cells: FloatArray  # (10, n, m): the planes of CELLS
    valid: BoolArray  # (n, m)
    stats: FloatArray  # (7, n): the rows of STATS


class Quotes(NamedTuple):
    """A chain's quotes, one entry a slice: flat float64 arrays (weights, bid and ask IVs
    may be None: ones, that side missing)."""

    k: Sequence[Any]
    iv: Sequence[Any]
    weights: Sequence[Any]
    bid: Sequence[Any]
    ask: Sequence[Any]


def usable_counts(kernels: Kernels, quotes: Quotes, ts: FloatArray) -> list[int]:
    """Per slice, its usable points (:func:`streamer.core.models.svi._clean_all`'s), or
    ``BAD_TIME`` / ``BAD_SIZES``. TypeError, ValueError or BufferError (from the kernel)
    where an array is not a flat float64 one."""
    counts = np.empty(len(ts), np.int64)
    kernels.count(*quotes, _c(ts), counts)
    result: list[int] = counts.tolist()
    return result


def chain_rows(kernels: Kernels, quotes: Quotes, ts: FloatArray, keep: list[int], width: int,
               objective: band.Objective) -> ChainRows:
    """The slices ``keep`` (each with at least one and at most ``width`` usable points) as
    rows of ``width`` with their band terms: ``objective`` where a slice has bid or ask
    IVs, least squares on mids where not (:func:`streamer.core.models.svi._bands`)."""
    n = len(keep)
    out = ChainRows(np.empty((len(CELLS), n, width)), np.empty((n, width), np.bool_),
                    np.empty((len(STATS), n)))
    kernels.rows(*quotes, _c(ts), out.cells, np.array(keep, np.int64),
                 out.valid, out.stats, *map(float, objective))
    return out


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
