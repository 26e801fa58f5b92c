"""The service's greeks are the subscriber's: the same core surface evaluates both."""

from __future__ import annotations

import numpy as np

from streamer.client import Surface
from streamer.pipeline.greeks import instrument_greeks
from streamer.types import Dynamics, Quote, SurfaceUpdate
from tests.client.factory import EXPIRIES_MS, FORWARDS, NOW_MS, make_surface

NAN = float("nan")


def _option(expiry_ms: int, strike: float, is_call: bool) -> Quote:
    return Quote(venue="deribit", underlying="BTC", instrument=f"BTC-{expiry_ms}-{strike}",
                 expiry_ts_ms=expiry_ms, strike=strike, is_call=is_call, bid_price=NAN,
                 ask_price=NAN, underlying_price=NAN, index_price=NAN, exchange_ts_ms=NOW_MS,
                 received_ts_ns=0)


OPTIONS = [_option(e, f * m, c) for e, f in zip(EXPIRIES_MS, FORWARDS, strict=True)
           for m in (0.8, 1.0, 1.3) for c in (True, False)]


def _client_side(update: SurfaceUpdate, measured: bool) -> dict[str, np.ndarray]:
    surface = Surface(update)
    strike = np.array([o.strike for o in OPTIONS])
    expiry = np.array([o.expiry_ts_ms for o in OPTIONS], np.int64)
    call = np.array([o.is_call for o in OPTIONS])
    return {"forward": surface.forward(expiry), "vol": surface.vol(strike, expiry),
            "delta_sticky_strike": surface.delta(strike, expiry, call, "sticky_strike"),
            "delta_sticky_moneyness": surface.delta(strike, expiry, call, "sticky_moneyness"),
            "delta_measured": (surface.delta(strike, expiry, call, "measured") if measured
                               else np.full(strike.shape, NAN))}


def test_greeks_equal_the_clients_vols_and_deltas_bit_for_bit() -> None:
    dyn = Dynamics(ssr=1.4, spot_vol_beta=-0.5, r2=0.3, n_obs=40, regime="local_vol",
                   tenor_days=30.0)
    for update, measured in ((make_surface("svi"), False),
                             (make_surface("svi", dynamics=dyn), True)):
        got = instrument_greeks(update, OPTIONS)
        assert [g.instrument for g in got] == [o.instrument for o in OPTIONS]
        for name, expected in _client_side(update, measured).items():
            np.testing.assert_array_equal([getattr(g, name) for g in got], expected, name)
        assert np.all(np.isfinite([g.vega for g in got] + [g.gamma for g in got]))


def test_options_of_expiries_without_a_usable_slice_are_left_out() -> None:
    update = make_surface("svi")
    unlisted = _option(EXPIRIES_MS[0] + 1, 100_000.0, True)
    assert [g.instrument for g in instrument_greeks(update, [unlisted, OPTIONS[0]])] == [
        OPTIONS[0].instrument]
    assert instrument_greeks(update, [_option(EXPIRIES_MS[0], 0.0, True)]) == []
