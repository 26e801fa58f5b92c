"""What every model object offers: the protocols, their capability attributes, shared pieces.

A model object (one per model, beside its numerics in ``core/models/<name>.py``) evaluates
one expiry's parameters (``vol``, ``total_variance``, a butterfly margin), converts them
to and from the published ``dict`` and calibrates them. Slice models (SVI, SABR) fit one
expiry at a time; surface models (SSVI, Heston) fit every expiry of an underlying at once
and hand each expiry its own evaluable slice parameters. Both kinds evaluate a slice
through the same methods, so publishing, smile metrics, arbitrage checks and the client
do not care which kind produced it.

What a model can do beyond that is said by attributes, never found by probing:

===================== ====================================================================
``is_surface``        a :class:`SurfaceModelOf` (else a :class:`SliceModelOf`)
``batched``           a :class:`BatchSliceModelOf`: fits and evaluates many slices as rows
``has_reduced``       ``calibrate_reduced`` fits a slice of too few quotes for the model
``reduced_slices``    a surface model whose expiries of 4-5 quotes may join its fit
``costly_vol``        each ``vol`` call is expensive: evaluate on grids, not points
``min_slice_quotes``  quotes an expiry needs to join the fit, whatever the config says
``one_parameter_set`` every expiry publishes the surface's one parameter set (Heston)
===================== ====================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, Self, TypeVar

import numpy as np
import numpy.typing as npt

from streamer.core.arbitrage import numeric_butterfly_margin
from streamer.core.models.fit import Fit

FloatArray = npt.NDArray[np.float64]


class Parameters(Protocol):
    """A model's parameters publish themselves as a flat ``name -> value`` map."""

    def as_dict(self) -> dict[str, float]: ...


P = TypeVar("P", bound=Parameters)  # one expiry's parameters
S = TypeVar("S")  # a surface model's surface-wide parameters


def vol_from_variance(w: FloatArray, t: float | FloatArray) -> FloatArray:
    """``sqrt(w / t)``, NaN where the total variance ``w`` is negative (no vol there)."""
    with np.errstate(invalid="ignore"):
        result: FloatArray = np.sqrt(np.where(w >= 0, w, np.nan) / t)
    return result


class SliceEvaluatorOf(Protocol[P]):
    """Evaluates and serialises one expiry's fitted parameters."""

    @property
    def name(self) -> str: ...

    @property
    def is_surface(self) -> bool: ...

    @property
    def batched(self) -> bool: ...

    @property
    def has_reduced(self) -> bool: ...

    @property
    def reduced_slices(self) -> bool: ...

    @property
    def costly_vol(self) -> bool: ...

    @property
    def min_slice_quotes(self) -> int: ...

    @property
    def one_parameter_set(self) -> bool: ...

    def vol(self, k: FloatArray, t: float, params: P) -> FloatArray: ...

    def total_variance(self, k: FloatArray, t: float, params: P) -> FloatArray: ...

    def butterfly_margin(self, params: P, t: float, k_min: float, k_max: float) -> float: ...

    def to_dict(self, params: P) -> dict[str, float]: ...

    def from_dict(self, d: dict[str, float]) -> P: ...

    def exact(self) -> SliceEvaluatorOf[P]:
        """The same model without evaluation shortcuts: what a consumer of the published
        parameters computes (only Heston has a shortcut, a spline on dense grids)."""
        ...


class SliceModelOf(SliceEvaluatorOf[P], Protocol[P]):
    """A smile model fitted one expiry at a time.

    ``bid_iv``/``ask_iv`` (NaN: side missing), when given, make the objective the
    quotes' bid/ask bands (:mod:`streamer.core.models.band`) instead of their mids.
    ``calibrate_reduced`` is there when ``has_reduced``.
    """

    def calibrate(self, k: FloatArray, iv: FloatArray, t: float, weights: FloatArray,
                  previous: P | None, *, bid_iv: FloatArray | None = None,
                  ask_iv: FloatArray | None = None) -> Fit[P]: ...

    def calibrate_reduced(self, k: FloatArray, iv: FloatArray, t: float,
                          weights: FloatArray) -> Fit[P]: ...


class BatchSliceModelOf(SliceModelOf[P], Protocol[P]):
    """A per-slice model that fits and evaluates many independent slices in one call."""

    def calibrate_many(self, k: Sequence[FloatArray], iv: Sequence[FloatArray],
                       t: Sequence[float], weights: Sequence[FloatArray],
                       previous: Sequence[P | None], *,
                       bid_iv: Sequence[FloatArray] | None = None,
                       ask_iv: Sequence[FloatArray] | None = None) -> list[Fit[P]]: ...

    def vol_jacobian_rows(self, k: FloatArray, t: Sequence[float], params: Sequence[P]
                          ) -> FloatArray: ...

    def variance_rows(self, params: Sequence[P]
                      ) -> Callable[[npt.NDArray[np.int64], FloatArray], FloatArray]: ...

    def vol_rows(self, params: Sequence[P], t: Sequence[float]
                 ) -> Callable[[FloatArray], FloatArray]: ...

    def butterfly_margins(self, params: Sequence[P], k_ranges: Sequence[tuple[float, float]]
                          ) -> FloatArray: ...


class SurfaceModelOf(SliceEvaluatorOf[P], Protocol[P, S]):
    """A model fitted to every expiry of an underlying at once."""

    def calibrate_surface(self, k: Sequence[FloatArray], iv: Sequence[FloatArray],
                          t: Sequence[float], weights: Sequence[FloatArray],
                          previous: S | None, *,
                          bid_iv: Sequence[FloatArray] | None = None,
                          ask_iv: Sequence[FloatArray] | None = None,
                          should_stop: Callable[[], bool] | None = None) -> Fit[S]: ...

    def slice_params(self, params: S, index: int) -> P: ...

    def surface_dict(self, params: S) -> dict[str, float]: ...

    def surface_from_dict(self, d: dict[str, float]) -> S | None: ...


# What callers holding any model see (the registry hands one out by name).
SliceEvaluator = SliceEvaluatorOf[Any]
SliceModel = SliceModelOf[Any]
BatchSliceModel = BatchSliceModelOf[Any]
SurfaceModel = SurfaceModelOf[Any, Any]
Model = SliceModel | SurfaceModel


class ModelBase(Generic[P]):
    """The capability defaults (a plain slice model) and the published ``dict``."""

    is_surface = False
    batched = False
    has_reduced = False
    reduced_slices = False
    costly_vol = False
    min_slice_quotes = 0
    one_parameter_set = False

    def to_dict(self, params: P) -> dict[str, float]:
        return params.as_dict()

    def exact(self) -> Self:
        return self


class VolFromVariance(ModelBase[P]):
    """``vol = sqrt(w / t)`` for models defined by their total variance."""

    def total_variance(self, k: FloatArray, t: float, params: P) -> FloatArray:
        raise NotImplementedError

    def vol(self, k: FloatArray, t: float, params: P) -> FloatArray:
        return vol_from_variance(self.total_variance(k, t, params), t)


class VarianceFromVol(ModelBase[P]):
    """``w = vol^2 t`` for models defined by their implied vol."""

    def vol(self, k: FloatArray, t: float, params: P) -> FloatArray:
        raise NotImplementedError

    def total_variance(self, k: FloatArray, t: float, params: P) -> FloatArray:
        v = self.vol(k, t, params)
        result: FloatArray = v * v * t
        return result

    def butterfly_margin(self, params: P, t: float, k_min: float, k_max: float) -> float:
        return numeric_butterfly_margin(lambda k: self.total_variance(k, t, params), k_min, k_max)
