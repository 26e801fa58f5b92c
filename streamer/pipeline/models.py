"""Model adapters: what the calibrator needs of each model, by configured name.

Slice models (SVI, SABR) fit one expiry at a time; surface models (SSVI, Heston)
fit every expiry of an underlying at once and hand each expiry its own evaluable
slice parameters. Both evaluate a slice through the same methods, so publishing,
smile metrics and arbitrage checks do not care which kind produced it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from scipy.interpolate import CubicSpline

from streamer.core.arbitrage import (
    numeric_butterfly_margin,
    ssvi_butterfly_margin,
    svi_butterfly_margin,
    svi_butterfly_margins,
)
from streamer.core.models import heston, sabr, ssvi, svi
from streamer.core.models.fit import Fit

FloatArray = npt.NDArray[np.float64]


class SliceEvaluator(Protocol):
    """Evaluates and serialises one expiry's fitted parameters."""

    @property
    def name(self) -> str: ...

    def vol(self, k: FloatArray, t: float, params: Any) -> FloatArray: ...

    def total_variance(self, k: FloatArray, t: float, params: Any) -> FloatArray: ...

    def butterfly_margin(self, params: Any, t: float, k_min: float, k_max: float) -> float: ...

    def to_dict(self, params: Any) -> dict[str, float]: ...

    def from_dict(self, d: dict[str, float]) -> Any: ...


class SliceModel(SliceEvaluator, Protocol):
    """A smile model fitted one expiry at a time.

    ``bid_iv``/``ask_iv`` (NaN: side missing), when given, make the objective the
    quotes' bid/ask bands (:mod:`streamer.core.models.band`) instead of their mids.
    """

    def calibrate(self, k: FloatArray, iv: FloatArray, t: float, weights: FloatArray,
                  previous: Any | None, *, bid_iv: FloatArray | None = None,
                  ask_iv: FloatArray | None = None) -> Fit[Any]: ...


@runtime_checkable
class BatchSliceModel(SliceModel, Protocol):
    """A per-slice model that fits many independent slices in one vectorised call."""

    def calibrate_many(self, k: Sequence[FloatArray], iv: Sequence[FloatArray],
                       t: Sequence[float], weights: Sequence[FloatArray],
                       previous: Sequence[Any | None], *,
                       bid_iv: Sequence[FloatArray] | None = None,
                       ask_iv: Sequence[FloatArray] | None = None) -> list[Fit[Any]]: ...


class SurfaceModel(SliceEvaluator, Protocol):
    """A model fitted to every expiry of an underlying at once."""

    def calibrate_surface(self, k: Sequence[FloatArray], iv: Sequence[FloatArray],
                          t: Sequence[float], weights: Sequence[FloatArray],
                          previous: Any | None, *,
                          bid_iv: Sequence[FloatArray] | None = None,
                          ask_iv: Sequence[FloatArray] | None = None,
                          should_stop: Callable[[], bool] | None = None) -> Fit[Any]: ...

    def slice_params(self, params: Any, index: int) -> Any: ...

    def surface_dict(self, params: Any) -> dict[str, float]: ...

    def surface_from_dict(self, d: dict[str, float]) -> Any: ...


class _VolFromVariance:
    """``vol = sqrt(w / t)`` for models defined by their total variance."""

    def total_variance(self, k: FloatArray, t: float, params: Any) -> FloatArray:
        raise NotImplementedError

    def vol(self, k: FloatArray, t: float, params: Any) -> FloatArray:
        w = self.total_variance(k, t, params)
        with np.errstate(invalid="ignore"):
            result: FloatArray = np.sqrt(np.where(w >= 0, w, np.nan) / t)
        return result


class _VarianceFromVol:
    """``w = vol^2 t`` for models defined by their implied vol."""

    def vol(self, k: FloatArray, t: float, params: Any) -> FloatArray:
        raise NotImplementedError

    def total_variance(self, k: FloatArray, t: float, params: Any) -> FloatArray:
        v = self.vol(k, t, params)
        result: FloatArray = v * v * t
        return result

    def butterfly_margin(self, params: Any, t: float, k_min: float, k_max: float) -> float:
        return numeric_butterfly_margin(lambda k: self.total_variance(k, t, params), k_min, k_max)


@dataclass(frozen=True)
class SVIModel(_VolFromVariance):
    """Raw SVI per expiry."""

    name: str = "svi"

    def calibrate(self, k: FloatArray, iv: FloatArray, t: float, weights: FloatArray,
                  previous: Any | None, *, bid_iv: FloatArray | None = None,
                  ask_iv: FloatArray | None = None) -> Fit[Any]:
        if bid_iv is not None or ask_iv is not None:  # the band weighs by half spreads
            return svi.calibrate(k, iv, t, None, previous, bid_iv=bid_iv, ask_iv=ask_iv)
        return svi.calibrate(k, iv, t, weights, previous)

    def calibrate_many(self, k: Sequence[FloatArray], iv: Sequence[FloatArray],
                       t: Sequence[float], weights: Sequence[FloatArray],
                       previous: Sequence[Any | None], *,
                       bid_iv: Sequence[FloatArray] | None = None,
                       ask_iv: Sequence[FloatArray] | None = None) -> list[Fit[Any]]:
        banded = bid_iv is not None or ask_iv is not None  # the band weighs by half spreads
        return list(svi.calibrate_chain(k, iv, t, None if banded else weights, previous,
                                        bid_ivs=bid_iv, ask_ivs=ask_iv))

    def calibrate_reduced(self, k: FloatArray, iv: FloatArray, t: float,
                          weights: FloatArray) -> Fit[Any]:
        """Too few quotes for five parameters: an SSVI slice (three), as raw SVI."""
        fit = ssvi.fit_slice(k, iv, t, weights)
        a, b, rho, m, sigma = fit.params.raw_svi() if fit.ok else (0.0,) * 5
        return Fit(params=svi.SVIParams(a=a, b=b, rho=rho, m=m, sigma=sigma),
                   rmse_vol=fit.rmse_vol, iterations=fit.iterations, status=fit.status,
                   message=fit.message, nfev=fit.nfev, warm=False)

    def total_variance(self, k: FloatArray, t: float, params: Any) -> FloatArray:
        return svi.total_variance(k, params)

    def vol_jacobian_rows(self, k: FloatArray, t: Sequence[float], params: Sequence[Any]
                          ) -> FloatArray:
        """``d vol / d params`` (the order of :meth:`to_dict`), analytic, of slice ``i`` at
        the k of row ``i``: shape ``(n, m, 5)``."""
        return svi.vol_jacobian_rows(k, np.asarray(t, np.float64), svi.stack(params))

    def variance_rows(self, params: Sequence[Any]
                      ) -> Callable[[npt.NDArray[np.int64], FloatArray], FloatArray]:
        """Total variance of slice ``idx[i]`` of ``params`` at the k of row ``i``."""
        stacked = svi.stack(params)
        return lambda idx, k: svi.total_variance_rows(k, stacked[idx])

    def vol_rows(self, params: Sequence[Any], t: Sequence[float]
                 ) -> Callable[[FloatArray], FloatArray]:
        """The smiles of many slices as rows: ``k`` of shape (n, m) -> vols (n, m)."""
        stacked = svi.stack(params)
        inv_t = 1.0 / np.asarray(t, np.float64)[:, None]

        def vols(k: FloatArray) -> FloatArray:
            w = svi.total_variance_rows(k, stacked)
            with np.errstate(invalid="ignore"):
                result: FloatArray = np.sqrt(np.where(w >= 0, w, np.nan) * inv_t)
            return result
        return vols

    def butterfly_margin(self, params: Any, t: float, k_min: float, k_max: float) -> float:
        return svi_butterfly_margin(params, k_min, k_max)

    def butterfly_margins(self, params: Sequence[Any], k_ranges: Sequence[tuple[float, float]]
                          ) -> FloatArray:
        """:meth:`butterfly_margin` of many slices in one pass."""
        lo, hi = np.array(k_ranges, np.float64).reshape(-1, 2).T
        return svi_butterfly_margins(params, lo, hi)

    def to_dict(self, params: Any) -> dict[str, float]:
        result: dict[str, float] = params.as_dict()
        return result

    def from_dict(self, d: dict[str, float]) -> Any:
        return svi.SVIParams.from_dict(d)


@dataclass(frozen=True)
class SABRModel(_VarianceFromVol):
    """SABR per expiry on the forward-normalised strike ``K/F = e^k`` (so ``F = 1``).

    With the default ``beta = 1`` the normalisation changes nothing; for other betas
    ``alpha`` is in units of the normalised forward.
    """

    name: str = "sabr"
    beta: float = 1.0

    def calibrate(self, k: FloatArray, iv: FloatArray, t: float, weights: FloatArray,
                  previous: Any | None, *, bid_iv: FloatArray | None = None,
                  ask_iv: FloatArray | None = None) -> Fit[Any]:
        banded = bid_iv is not None or ask_iv is not None  # the band weighs by half spreads
        return sabr.calibrate(1.0, np.exp(k), iv, t, None if banded else weights, previous,
                              bid_iv=bid_iv, ask_iv=ask_iv, beta=self.beta)

    def calibrate_reduced(self, k: FloatArray, iv: FloatArray, t: float,
                          weights: FloatArray) -> Fit[Any]:
        """SABR with its beta fixed has three parameters already: fitted as usual, cold."""
        return sabr.calibrate(1.0, np.exp(k), iv, t, weights, None, beta=self.beta)

    def vol(self, k: FloatArray, t: float, params: Any) -> FloatArray:
        return sabr.implied_vol(1.0, np.exp(np.asarray(k, np.float64)), t, params)

    def to_dict(self, params: Any) -> dict[str, float]:
        result: dict[str, float] = params.as_dict()
        return result

    def from_dict(self, d: dict[str, float]) -> Any:
        return sabr.SABRParams.from_dict(d)


@dataclass(frozen=True)
class SSVIModel(_VolFromVariance):
    """An arbitrage-free eSSVI surface (Hendriks & Martini 2019: rho by expiry); each
    expiry publishes ``theta, rho, phi``."""

    name: str = "ssvi"
    reduced_slices: bool = True  # three parameters an expiry: slices of 4-5 quotes join

    def calibrate_surface(self, k: Sequence[FloatArray], iv: Sequence[FloatArray],
                          t: Sequence[float], weights: Sequence[FloatArray],
                          previous: Any | None, *,
                          bid_iv: Sequence[FloatArray] | None = None,
                          ask_iv: Sequence[FloatArray] | None = None,
                          should_stop: Callable[[], bool] | None = None) -> Fit[Any]:
        # eSSVI fits in milliseconds: no early stop needed.
        return ssvi.calibrate(k, iv, t, weights, previous, bid_iv=bid_iv, ask_iv=ask_iv)

    def slice_params(self, params: Any, index: int) -> Any:
        return params.slice(index)

    def surface_dict(self, params: Any) -> dict[str, float]:
        result: dict[str, float] = params.surface_dict()
        return result

    def surface_from_dict(self, d: dict[str, float]) -> Any:
        # eSSVI has no surface-wide parameters (every expiry has its own): a restart
        # fits cold.
        return None

    def total_variance(self, k: FloatArray, t: float, params: Any) -> FloatArray:
        return ssvi.slice_total_variance(k, params)

    def butterfly_margin(self, params: Any, t: float, k_min: float, k_max: float) -> float:
        return ssvi_butterfly_margin(params, k_min, k_max)

    def to_dict(self, params: Any) -> dict[str, float]:
        result: dict[str, float] = params.as_dict()
        return result

    def from_dict(self, d: dict[str, float]) -> Any:
        return ssvi.SSVISlice.from_dict(d)


@dataclass(frozen=True)
class HestonModel(_VarianceFromVol):
    """One Heston parameter set for the whole surface; every expiry publishes it."""

    name: str = "heston"
    costly_vol: bool = True  # each call prices by quadrature: evaluate on grids, not points
    #: Quotes an expiry needs to join the fit, whatever calibration.min_quotes says: on the
    #: real hourly chains, 5-quote expiries hours away joining the one parameter set moved
    #: the worst published ATM error from 8.6 to 15.3 vol points.
    min_slice_quotes: int = 6

    def calibrate_surface(self, k: Sequence[FloatArray], iv: Sequence[FloatArray],
                          t: Sequence[float], weights: Sequence[FloatArray],
                          previous: Any | None, *,
                          bid_iv: Sequence[FloatArray] | None = None,
                          ask_iv: Sequence[FloatArray] | None = None,
                          should_stop: Callable[[], bool] | None = None) -> Fit[Any]:
        return heston.calibrate(k, iv, t, weights, previous, should_stop=should_stop)

    def slice_params(self, params: Any, index: int) -> Any:
        return params

    def surface_dict(self, params: Any) -> dict[str, float]:
        result: dict[str, float] = params.as_dict()
        return result

    def surface_from_dict(self, d: dict[str, float]) -> Any:
        return heston.HestonParams.from_dict(d)

    def vol(self, k: FloatArray, t: float, params: Any) -> FloatArray:
        """Exact for a few points (a slice's quotes); a dense grid (butterfly margins,
        jump wings, tenors: hundreds of points, each a row of the quadrature) reads a
        spline through one exact pass over :data:`HESTON_GRID_POINTS` points, cached per
        expiry and parameters; points beyond that grid are priced exactly."""
        kk = np.asarray(k, np.float64)
        if kk.size <= HESTON_GRID_POINTS:
            return heston.implied_vols(kk, t, params)
        lo, hi, spline = _heston_smile(float(t), params.v0, params.kappa, params.theta,
                                       params.sigma, params.rho)
        inside = (kk >= lo) & (kk <= hi)
        if spline is None or not inside.any():
            return heston.implied_vols(kk, t, params)
        out = np.asarray(spline(np.clip(kk, lo, hi)), np.float64)
        if not inside.all():
            out[~inside] = heston.implied_vols(kk[~inside], t, params)
        return out

    def to_dict(self, params: Any) -> dict[str, float]:
        result: dict[str, float] = params.as_dict()
        return result

    def from_dict(self, d: dict[str, float]) -> Any:
        return heston.HestonParams.from_dict(d)


#: Points of the exact pass behind a Heston smile's spline (six ATM total-vol widths each
#: side: the spline's error there is below 1e-6 vol).
HESTON_GRID_POINTS = 121


@lru_cache(maxsize=256)
def _heston_smile(t: float, v0: float, kappa: float, theta: float, sigma: float, rho: float
                  ) -> tuple[float, float, CubicSpline | None]:
    """A cubic spline of one Heston expiry's smile in ``k`` and its range (None when the
    model has no finite vol somewhere on it)."""
    p = heston.HestonParams(v0=v0, kappa=kappa, theta=theta, sigma=sigma, rho=rho)
    atm = float(heston.implied_vols(np.zeros(1), t, p)[0]) * np.sqrt(t)
    half = 6.0 * max(atm, 0.01) if np.isfinite(atm) else 1.0
    grid = np.linspace(-half, half, HESTON_GRID_POINTS)
    vols = heston.implied_vols(grid, t, p)
    if not np.all(np.isfinite(vols)):
        return -half, half, None
    return -half, half, CubicSpline(grid, vols)


_SLICE_MODELS: dict[str, SliceModel] = {"svi": SVIModel(), "sabr": SABRModel()}
_SURFACE_MODELS: dict[str, SurfaceModel] = {"ssvi": SSVIModel(), "heston": HestonModel()}


def model_for(name: str) -> SliceModel | SurfaceModel:
    """The adapter for a configured model name."""
    model = _SLICE_MODELS.get(name) or _SURFACE_MODELS.get(name)
    if model is None:
        raise ValueError(f"unknown model {name!r}; expected one of "
                         f"{sorted([*_SLICE_MODELS, *_SURFACE_MODELS])}")
    return model


def is_surface_model(model: SliceModel | SurfaceModel) -> bool:
    """True for models fitted to all expiries at once."""
    return model.name in _SURFACE_MODELS
