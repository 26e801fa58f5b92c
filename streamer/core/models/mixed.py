"""A surface model's slices with its per-slice fallback's among them, evaluated each by its own.

A surface model (eSSVI, Heston) that cannot fit an expiry hands it to a per-slice model
(raw SVI) instead of leaving it out, so one surface can hold slices of two models.
:class:`MixedSlices` is one evaluator over such a surface: each call goes to the model
whose parameters it is given (their type says which), so publishing, smile metrics,
arbitrage checks, tenors and dynamics evaluate every slice with the model that fitted
it. Its capabilities are the surface model's, except that it evaluates no rows
(``batched`` is False: the rows would mix two parameter layouts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from streamer.core.models.protocol import FloatArray, SliceEvaluator, SurfaceModel
from streamer.core.models.svi import SVIModel, SVIParams


@dataclass(frozen=True)
class MixedSlices:
    """``primary``'s slices and ``fallback``'s (those whose parameters are a
    ``fallback_params``), each evaluated by its own model."""

    primary: SliceEvaluator
    fallback: SliceEvaluator = field(default_factory=SVIModel)
    fallback_params: type = SVIParams
    batched = False

    def of(self, params: Any) -> SliceEvaluator:
        """The model that evaluates ``params``."""
        return self.fallback if isinstance(params, self.fallback_params) else self.primary

    def slice_model(self, params: Any) -> str:
        """The published slice ``model``: the fallback's name, empty for the primary's own."""
        return "" if self.of(params) is self.primary else self.fallback.name

    @property
    def name(self) -> str:
        return self.primary.name

    @property
    def is_surface(self) -> bool:
        return self.primary.is_surface

    @property
    def has_reduced(self) -> bool:
        return self.primary.has_reduced

    @property
    def reduced_slices(self) -> bool:
        return self.primary.reduced_slices

    @property
    def costly_vol(self) -> bool:
        return self.primary.costly_vol

    @property
    def min_slice_quotes(self) -> int:
        return self.primary.min_slice_quotes

    @property
    def one_parameter_set(self) -> bool:
        return self.primary.one_parameter_set

    def vol(self, k: FloatArray, t: float, params: Any) -> FloatArray:
        return self.of(params).vol(k, t, params)

    def total_variance(self, k: FloatArray, t: float, params: Any) -> FloatArray:
        return self.of(params).total_variance(k, t, params)

    def butterfly_margin(self, params: Any, t: float, k_min: float, k_max: float) -> float:
        return self.of(params).butterfly_margin(params, t, k_min, k_max)

    def to_dict(self, params: Any) -> dict[str, float]:
        return self.of(params).to_dict(params)

    def from_dict(self, d: dict[str, float]) -> Any:
        """The primary's parameters (a published slice names its model when it is not)."""
        return self.primary.from_dict(d)

    def surface_dict(self, params: Any) -> dict[str, float]:
        """The primary's surface-wide parameters, for the published surface."""
        return cast(SurfaceModel, self.primary).surface_dict(params)

    def exact(self) -> MixedSlices:
        return MixedSlices(self.primary.exact(), self.fallback.exact(), self.fallback_params)
