"""Synthetic SurfaceUpdates from known parameters, consistent with the publisher's clock."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from streamer.types import ModelName, SliceUpdate, SurfaceUpdate, expiry_iso

YEAR_MS = 365.0 * 86_400_000.0
DAY_MS = 86_400_000
NOW_MS = 1_733_040_000_000  # 2024-12-01T08:00:00Z
SPOT = 100_000.0
EXPIRIES_MS = tuple(NOW_MS + d * DAY_MS for d in (7, 28, 91, 182))
TS = tuple((e - NOW_MS) / YEAR_MS for e in EXPIRIES_MS)
CARRY = (0.05, 0.07, 0.06, 0.08)  # continuously compounded, per slice
FORWARDS = tuple(SPOT * math.exp(r * t) for r, t in zip(CARRY, TS, strict=True))


def svi_params(t: float) -> dict[str, float]:
    """Calendar-free by construction: ``a`` and ``b`` grow with ``t``, the rest is shared."""
    return {"a": 0.25 * t, "b": 0.08 * math.sqrt(t) + 0.02 * t, "rho": -0.35, "m": 0.02,
            "sigma": 0.15}


iso = expiry_iso  # as the publisher writes it


def make_slice(expiry_ms: int, params: dict[str, float], *, forward: float,
               now_ms: int = NOW_MS, **over: Any) -> SliceUpdate:
    """One slice; ``t`` from ``expiry_ms`` and ``now_ms`` as the engine computes it."""
    fields: dict[str, Any] = dict(
        expiry=iso(expiry_ms), expiry_ts_ms=expiry_ms, t=(expiry_ms - now_ms) / YEAR_MS,
        forward=forward, params=params, atm_vol=0.6, atm_skew=-0.1, rr25=-0.03, bf25=0.01,
        rmse_vol=0.002, n_quotes=30, status="warm", butterfly_free=True, calendar_free=True)
    fields.update(over)
    return SliceUpdate(**fields)


def make_surface(model: ModelName = "svi", slice_params: Sequence[dict[str, float]] | None = None,
                 *, params: dict[str, float] | None = None, slices: list[SliceUpdate] | None = None,
                 **over: Any) -> SurfaceUpdate:
    """A four-expiry surface (SVI from :func:`svi_params` unless told otherwise)."""
    if slices is None:
        per_slice = slice_params if slice_params is not None else [svi_params(t) for t in TS]
        slices = [make_slice(e, p, forward=f)
                  for e, p, f in zip(EXPIRIES_MS, per_slice, FORWARDS, strict=True)]
    fields: dict[str, Any] = dict(
        venue="deribit", underlying="BTC", model=model, seq=7, exchange_ts_ms=NOW_MS,
        received_ts_ns=NOW_MS * 1_000_000 + 5, published_ts_ns=NOW_MS * 1_000_000 + 9,
        spot=SPOT, params=params or {}, slices=slices)
    fields.update(over)
    return SurfaceUpdate(**fields)
