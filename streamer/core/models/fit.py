"""The result of a calibration: a value, never an exception."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

import msgspec

P = TypeVar("P")

FitStatus = Literal["converged", "max_iter", "failed"]


class Fit(msgspec.Struct, Generic[P], frozen=True, kw_only=True):
    """Outcome of ``calibrate``.

    ``rmse_vol`` is the unweighted root mean square of model vol minus market (mid)
    vol over the points used, in decimal vol: the weights (or the bid/ask band) shape
    the fit, not this measure of it, so fits of different weightings compare. ``status``
    ``failed`` means ``params`` must not be used; ``max_iter`` means usable but
    not converged to tolerance.
    """

    params: P
    rmse_vol: float
    iterations: int
    status: FitStatus
    message: str = ""
    nfev: int = 0
    warm: bool = False

    @classmethod
    def failed(cls, params: P, message: str, *, warm: bool, iterations: int = 0,
               nfev: int = 0) -> Fit[P]:
        """A fit whose ``params`` (the caller's fallback) must not be used."""
        return cls(params=params, rmse_vol=float("nan"), iterations=iterations,
                   status="failed", message=message, nfev=nfev, warm=warm)

    @property
    def ok(self) -> bool:
        """True when the parameters may be used."""
        return self.status != "failed"
