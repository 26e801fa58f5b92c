"""One published expiry made evaluable: its model's parameters parsed once, evaluated by core.

Each model's smile is evaluated with the pure core functions, exactly as the
calibrator evaluated it before publishing (``streamer.pipeline.models``):

====== ============================ ===============================================
model  slice ``params``             evaluated with
====== ============================ ===============================================
svi    ``a b rho m sigma``          ``svi.total_variance(k)``
sabr   ``alpha beta rho nu``        ``sabr.implied_vol(F=1, K=e^k, t)`` (normalised)
ssvi   ``theta rho phi``            ``ssvi.slice_total_variance(k)``
heston ``v0 kappa theta sigma rho`` ``heston.implied_vols(k, t)`` (surface ``params``
                                    when the slice has none)
====== ============================ ===============================================

``k = ln(K / F)`` with ``F`` the slice forward, ``t`` the slice's years to expiry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.core.models import heston, sabr, ssvi, svi
from streamer.types import ModelName, SliceUpdate

FloatArray = npt.NDArray[np.float64]
_Eval = Callable[[FloatArray, float, Any], FloatArray]


def _sqrt_w_over_t(w: FloatArray, t: float) -> FloatArray:
    with np.errstate(invalid="ignore"):
        result: FloatArray = np.sqrt(np.where(w >= 0, w, np.nan) / t)
    return result


def _svi_vol(k: FloatArray, t: float, p: Any) -> FloatArray:
    return _sqrt_w_over_t(svi.total_variance(k, p), t)


def _svi_w(k: FloatArray, t: float, p: Any) -> FloatArray:
    return svi.total_variance(k, p)


def _ssvi_vol(k: FloatArray, t: float, p: Any) -> FloatArray:
    return _sqrt_w_over_t(ssvi.slice_total_variance(k, p), t)


def _ssvi_w(k: FloatArray, t: float, p: Any) -> FloatArray:
    return ssvi.slice_total_variance(k, p)


def _sabr_vol(k: FloatArray, t: float, p: Any) -> FloatArray:
    return sabr.implied_vol(1.0, np.exp(k), t, p)


def _heston_vol(k: FloatArray, t: float, p: Any) -> FloatArray:
    if k.size == 0:
        return np.empty(k.shape)
    return heston.implied_vols(k, t, p)


def _w_from(vol: _Eval) -> _Eval:
    def w(k: FloatArray, t: float, p: Any) -> FloatArray:
        v = vol(k, t, p)
        result: FloatArray = v * v * t
        return result
    return w


# model -> (parse params, implied vol of k, total variance of k)
_MODELS: dict[str, tuple[Callable[[dict[str, float]], Any], _Eval, _Eval]] = {
    "svi": (svi.SVIParams.from_dict, _svi_vol, _svi_w),
    "ssvi": (ssvi.SSVISlice.from_dict, _ssvi_vol, _ssvi_w),
    "sabr": (sabr.SABRParams.from_dict, _sabr_vol, _w_from(_sabr_vol)),
    "heston": (heston.HestonParams.from_dict, _heston_vol, _w_from(_heston_vol)),
}


class Slice:
    """One expiry of a :class:`~streamer.client.Surface`, evaluable on its own.

    ``usable`` is False (and ``problem`` says why) when the slice cannot be
    evaluated: missing or non-finite parameters, a non-positive ``t`` or forward.
    Such a slice is kept for inspection but skipped by the surface's interpolation.
    """

    def __init__(self, update: SliceUpdate, model: ModelName,
                 surface_params: Mapping[str, float] | None = None) -> None:
        self.update = update
        self.model = model
        parse, self._vol, self._w = _MODELS[model]
        raw = dict(update.params)
        if model == "heston" and not raw and surface_params:
            raw = dict(surface_params)  # one parameter set for the whole surface
        self.params: Any = None
        self.problem: str | None = None
        if not (np.isfinite(update.t) and update.t > 0):
            self.problem = f"t = {update.t}: expired or undefined"
        elif not (np.isfinite(update.forward) and update.forward > 0):
            self.problem = f"forward = {update.forward}"
        elif not all(np.isfinite(v) for v in raw.values()):
            self.problem = "non-finite parameter"
        else:
            try:
                self.params = parse(raw)
            except KeyError as exc:
                self.problem = f"missing {model} parameter {exc.args[0]!r}"

    def __repr__(self) -> str:
        state = "usable" if self.usable else f"unusable: {self.problem}"
        return f"Slice({self.expiry}, t={self.t:.6f}, {self.model}, {state})"

    @property
    def usable(self) -> bool:
        """True when the slice's smile can be evaluated."""
        return self.problem is None

    @property
    def expiry(self) -> str:
        """ISO-8601 UTC expiry."""
        return self.update.expiry

    @property
    def expiry_ts_ms(self) -> int:
        """Expiry, ms since the epoch."""
        return self.update.expiry_ts_ms

    @property
    def t(self) -> float:
        """Years to expiry (ACT/365) at the surface's ``exchange_ts_ms``."""
        return self.update.t

    @property
    def forward(self) -> float:
        """The slice's forward price."""
        return self.update.forward

    @property
    def status(self) -> str:
        """``warm``, ``cold``, ``fallback`` or ``stale``."""
        return self.update.status

    @property
    def k_range(self) -> tuple[float, float]:
        """Log-moneyness range of the quotes behind the fit (NaNs when not published)."""
        return self.update.k_min, self.update.k_max

    def quoted_range(self) -> tuple[float, float]:
        """Strikes from the lowest to the highest quoted one the fit used (NaNs: unknown);
        outside it the smile is the model's extrapolation."""
        lo, hi = self.k_range
        return float(self.forward * np.exp(lo)), float(self.forward * np.exp(hi))

    def total_variance(self, k: npt.ArrayLike) -> FloatArray:
        """Total implied variance ``w(k) = vol^2 t``.

        Parameters
        ----------
        k : array_like, any shape
            Log-moneyness ``ln(K / F)`` against this slice's forward.

        Returns
        -------
        ndarray of float64, the shape of ``k``; NaN where the model has no value.
        """
        return self._w(self._k(k), self.t, self._checked_params())

    def vol_k(self, k: npt.ArrayLike) -> FloatArray:
        """Decimal implied vol at log-moneyness ``k`` (any shape; result has its shape)."""
        return self._vol(self._k(k), self.t, self._checked_params())

    def vol(self, strike: npt.ArrayLike) -> FloatArray:
        """Decimal implied vol at absolute strikes (any shape, > 0), with the slice forward."""
        K = np.asarray(strike, np.float64)
        if not np.all(np.isfinite(K) & (K > 0)):
            raise ValueError("strikes must be finite and positive")
        return self.vol_k(np.log(K / self.forward))

    def _checked_params(self) -> Any:
        if self.problem is not None:
            raise ValueError(f"slice {self.expiry} is not usable: {self.problem}")
        return self.params

    @staticmethod
    def _k(k: npt.ArrayLike) -> FloatArray:
        kk = np.asarray(k, np.float64)
        if not np.all(np.isfinite(kk)):
            raise ValueError("log-moneyness must be finite")
        return kk
