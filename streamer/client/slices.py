"""One published expiry made evaluable: its model's parameters parsed once, evaluated by core.

Each model's smile is evaluated by its core model object (the registry's, without
evaluation shortcuts), exactly as the calibrator evaluated it before publishing:

====== ============================ ===============================================
model  slice ``params``             evaluated with
====== ============================ ===============================================
svi    ``a b rho m sigma``          ``svi.total_variance(k)``
sabr   ``alpha beta rho nu``        ``sabr.implied_vol(F=1, K=e^k, t)`` (normalised)
ssvi   ``theta rho phi delta mu``   ``ssvi.slice_total_variance(k)`` (natural SVI;
                                    ``delta, mu`` 0 where absent)
heston ``v0 kappa theta sigma rho`` ``heston.implied_vols(k, t)`` (surface ``params``
                                    when the slice has none)
====== ============================ ===============================================

``k = ln(K / F)`` with ``F`` the slice forward, ``t`` the slice's years to expiry.

A slice that names its own ``model`` (a surface model's expiry fitted by the per-slice
fallback, raw SVI; its ``fallback_reason`` says why) is evaluated with that model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from streamer.core.surface import SurfaceSlice
from streamer.types import ModelName, SliceUpdate

FloatArray = npt.NDArray[np.float64]


class Slice:
    """One expiry of a :class:`~streamer.client.Surface`, evaluable on its own.

    ``usable`` is False (and ``problem`` says why) when the slice cannot be
    evaluated: missing or non-finite parameters, a non-positive ``t`` or forward.
    Such a slice is kept for inspection but skipped by the surface's interpolation.
    """

    def __init__(self, update: SliceUpdate, model: ModelName,
                 surface_params: Mapping[str, float] | None = None) -> None:
        self.update = update
        #: the slice's own model: the surface's, or its per-slice fallback's (``svi``)
        self.model = cast(ModelName, update.model_of(model))
        #: The core slice the surface interpolates between.
        self.node = SurfaceSlice(self.model, update.params, expiry_ts_ms=update.expiry_ts_ms,
                                 t=update.t, forward=update.forward,
                                 k_range=(update.k_min, update.k_max),
                                 surface_params=surface_params)
        self.params: Any = self.node.params
        self.problem: str | None = self.node.problem

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
    def fallback_reason(self) -> str:
        """Why the slice is not a fresh fit of the surface's model (empty: it is one)."""
        return self.update.fallback_reason

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
        kk = self._k(k)
        self._check()
        return self.node.total_variance(kk)

    def vol_k(self, k: npt.ArrayLike) -> FloatArray:
        """Decimal implied vol at log-moneyness ``k`` (any shape; result has its shape)."""
        kk = self._k(k)
        self._check()
        return self.node.vol_k(kk)

    def vol(self, strike: npt.ArrayLike) -> FloatArray:
        """Decimal implied vol at absolute strikes (any shape, > 0), with the slice forward."""
        K = np.asarray(strike, np.float64)
        if not np.all(np.isfinite(K) & (K > 0)):
            raise ValueError("strikes must be finite and positive")
        return self.vol_k(np.log(K / self.forward))

    def _check(self) -> None:
        if self.problem is not None:
            raise ValueError(f"slice {self.expiry} is not usable: {self.problem}")

    @staticmethod
    def _k(k: npt.ArrayLike) -> FloatArray:
        kk = np.asarray(k, np.float64)
        if not np.all(np.isfinite(kk)):
            raise ValueError("log-moneyness must be finite")
        return kk
