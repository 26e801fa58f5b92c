"""Hand-made surface updates shared by the sink tests."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from streamer.types import Dynamics, SliceUpdate, SurfaceUpdate

NAN = math.nan


def make_slice(expiry: str, expiry_ts_ms: int, **over: Any) -> SliceUpdate:
    """A warm SVI slice; keyword arguments override fields."""
    fields: dict[str, Any] = dict(
        expiry=expiry, expiry_ts_ms=expiry_ts_ms, t=0.0767, forward=96_512.5,
        params={"a": 0.0021, "b": 0.031, "rho": -0.22, "m": 0.012, "sigma": 0.09},
        atm_vol=0.5731, atm_skew=-0.181, rr25=-0.034, bf25=0.0061, rmse_vol=0.0042,
        n_quotes=38, status="warm", butterfly_free=True, calendar_free=True)
    fields.update(over)
    return SliceUpdate(**fields)


def make_surface(**over: Any) -> SurfaceUpdate:
    """A BTC surface of two slices (the second has NaNs); keyword arguments override."""
    fields: dict[str, Any] = dict(
        venue="deribit", underlying="BTC", model="svi", seq=42,
        exchange_ts_ms=1_732_881_612_345, received_ts_ns=1_732_881_612_351_000_123,
        published_ts_ns=1_732_881_612_360_000_456, spot=95_123.45, params={},
        slices=[make_slice("2024-12-06T08:00:00Z", 1_733_472_000_000),
                make_slice("2024-12-27T08:00:00Z", 1_735_286_400_000, rr25=NAN, bf25=NAN,
                           atm_skew=NAN, status="fallback", params={"a": 0.01, "b": NAN},
                           butterfly_free=False)],
        dynamics=Dynamics(ssr=1.3, spot_vol_beta=NAN, r2=0.41, n_obs=120,
                          regime="sticky_moneyness"))
    fields.update(over)
    return SurfaceUpdate(**fields)


def same(a: SurfaceUpdate, b: SurfaceUpdate) -> bool:
    """Field-by-field equality where NaN equals NaN."""
    return plain(msgspec.to_builtins(a)) == plain(msgspec.to_builtins(b))


def plain(obj: Any) -> Any:
    """Builtins with NaN replaced by a comparable marker."""
    if isinstance(obj, float) and math.isnan(obj):
        return "NaN"
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    return obj
