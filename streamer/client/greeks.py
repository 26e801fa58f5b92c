"""Per-instrument vols and smile-adjusted deltas from a published surface."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamer.client.surface import Surface
from streamer.core import black76
from streamer.types import InstrumentGreeks, Quote


def instrument_greeks(surface: Surface, options: Sequence[Quote]) -> list[InstrumentGreeks]:
    """Vol, the three deltas, vega and gamma of each option on ``surface``.

    Options whose expiry the surface does not cover (or whose strike is not
    positive) are left out; the measured delta is NaN until the surface publishes an
    SSR for the expiry.
    """
    live = [o for o in options if o.strike > 0 and o.expiry_ts_ms in surface.expiries]
    if not live:
        return []
    strike = np.array([o.strike for o in live])
    expiry = np.array([o.expiry_ts_ms for o in live], np.int64)
    is_call = np.array([o.is_call for o in live])
    forward = surface.forward(expiry)
    vol = surface.vol(strike, expiry)
    t = surface.years(expiry)
    sticky_strike = surface.delta(strike, expiry, is_call, "sticky_strike")
    sticky_moneyness = surface.delta(strike, expiry, is_call, "sticky_moneyness")
    try:
        measured = surface.delta(strike, expiry, is_call, "measured")
    except ValueError:  # no SSR published yet
        measured = np.full(strike.shape, np.nan)
    vega = black76.vega(forward, strike, t, vol)
    gamma = black76.gamma(forward, strike, t, vol)
    update = surface.update
    return [InstrumentGreeks(
        venue=update.venue, underlying=update.underlying, instrument=o.instrument,
        expiry_ts_ms=o.expiry_ts_ms, strike=o.strike, is_call=o.is_call,
        forward=float(forward[i]), vol=float(vol[i]), delta_measured=float(measured[i]),
        delta_sticky_strike=float(sticky_strike[i]),
        delta_sticky_moneyness=float(sticky_moneyness[i]), vega=float(vega[i]),
        gamma=float(gamma[i]), surface_seq=update.seq, exchange_ts_ms=update.exchange_ts_ms)
        for i, o in enumerate(live)]
