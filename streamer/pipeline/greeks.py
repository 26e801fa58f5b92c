"""Per-instrument vols and smile-adjusted deltas from a published surface (the greeks topic).

Evaluated by the core surface interpolation (:mod:`streamer.core.surface`), the same
that subscribers read through :class:`streamer.client.Surface`, so the service and its
consumers agree on every vol and delta.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamer.core import black76
from streamer.core.surface import InterpolatedSurface, SurfaceSlice, nearest_ssr
from streamer.types import InstrumentGreeks, Quote, SurfaceUpdate


def surface_of(update: SurfaceUpdate) -> InterpolatedSurface:
    """The published surface, evaluable across its expiries."""
    slices = [SurfaceSlice(s.model_of(update.model), s.params, expiry_ts_ms=s.expiry_ts_ms, t=s.t,
                           forward=s.forward, k_range=(s.k_min, s.k_max),
                           surface_params=update.params) for s in update.slices]
    return InterpolatedSurface(slices, update.spot, f"{update.key} seq {update.seq}")


def instrument_greeks(update: SurfaceUpdate, options: Sequence[Quote]) -> list[InstrumentGreeks]:
    """Vol, the three deltas, vega and gamma of each option on ``update``'s surface.

    Options whose expiry the surface does not cover with a usable slice (or whose
    strike is not positive) are left out; the measured delta is NaN until the surface
    publishes an SSR.
    """
    surface = surface_of(update)
    node_t = {s.expiry_ts_ms: s.t for s in surface.nodes}
    live = [o for o in options if o.strike > 0 and o.expiry_ts_ms in node_t]
    if not live:
        return []
    strike = np.array([o.strike for o in live])
    t = np.array([node_t[o.expiry_ts_ms] for o in live], np.float64)
    is_call = np.array([o.is_call for o in live])
    forward = surface.forward(t)
    vol = surface.vol(np.log(strike / forward), t)
    sticky_strike = surface.delta(strike, t, is_call, "sticky_strike")
    sticky_moneyness = surface.delta(strike, t, is_call, "sticky_moneyness")
    dyn = update.dynamics
    try:
        ssr = nearest_ssr(t, [] if dyn is None else
                          [(d.tenor_days, d.ssr) for d in (dyn, *dyn.by_expiry)], surface.label)
        measured = surface.delta(strike, t, is_call, "measured", ssr)
    except ValueError:  # no SSR published yet
        measured = np.full(strike.shape, np.nan)
    vega = black76.vega(forward, strike, t, vol)
    gamma = black76.gamma(forward, strike, t, vol)
    return [InstrumentGreeks(
        venue=update.venue, underlying=update.underlying, instrument=o.instrument,
        expiry_ts_ms=o.expiry_ts_ms, strike=o.strike, is_call=o.is_call,
        forward=float(forward[i]), vol=float(vol[i]), delta_measured=float(measured[i]),
        delta_sticky_strike=float(sticky_strike[i]),
        delta_sticky_moneyness=float(sticky_moneyness[i]), vega=float(vega[i]),
        gamma=float(gamma[i]), surface_seq=update.seq, exchange_ts_ms=update.exchange_ts_ms)
        for i, o in enumerate(live)]
