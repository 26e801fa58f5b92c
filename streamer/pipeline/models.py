"""Model adapters: what the calibrator needs of a per-slice model, by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from streamer.core.models import svi
from streamer.core.models.fit import Fit

FloatArray = npt.NDArray[np.float64]


class SliceModel(Protocol):
    """A smile model fitted one expiry at a time."""

    @property
    def name(self) -> str: ...

    def calibrate(self, k: FloatArray, iv: FloatArray, t: float, weights: FloatArray,
                  previous: Any | None) -> Fit[Any]: ...

    def vol(self, k: FloatArray, t: float, params: Any) -> FloatArray: ...

    def total_variance(self, k: FloatArray, t: float, params: Any) -> FloatArray: ...

    def butterfly_margin(self, params: Any, t: float, k_min: float, k_max: float) -> float: ...

    def to_dict(self, params: Any) -> dict[str, float]: ...

    def from_dict(self, d: dict[str, float]) -> Any: ...


@dataclass(frozen=True)
class SVIModel:
    """Raw SVI per expiry."""

    name: str = "svi"

    def calibrate(self, k: FloatArray, iv: FloatArray, t: float, weights: FloatArray,
                  previous: Any | None) -> Fit[Any]:
        return svi.calibrate(k, iv, t, weights, previous)

    def vol(self, k: FloatArray, t: float, params: Any) -> FloatArray:
        return svi.implied_vol(k, t, params)

    def total_variance(self, k: FloatArray, t: float, params: Any) -> FloatArray:
        return svi.total_variance(k, params)

    def butterfly_margin(self, params: Any, t: float, k_min: float, k_max: float) -> float:
        from streamer.core.arbitrage import svi_butterfly_margin

        return svi_butterfly_margin(params, k_min, k_max)

    def to_dict(self, params: Any) -> dict[str, float]:
        result: dict[str, float] = params.as_dict()
        return result

    def from_dict(self, d: dict[str, float]) -> Any:
        return svi.SVIParams.from_dict(d)


def model_for(name: str) -> SliceModel:
    """The adapter for a configured model name."""
    if name == "svi":
        return SVIModel()
    raise ValueError(f"model {name!r} is not wired into the calibrator yet")
