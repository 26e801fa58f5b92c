"""The curves event: what the page draws, evaluated by the topic's own Slice evaluator."""

from __future__ import annotations

import json
import math

import numpy as np

from streamer.client.slices import Slice
from streamer.types import Quote
from streamer.ui.curves import surface_curves
from tests.client.factory import (
    EXPIRIES_MS,
    FORWARDS,
    NOW_MS,
    TS,
    make_slice,
    make_surface,
    svi_params,
)


def quote(strike: float, is_call: bool, bid_iv: float, ask_iv: float,
          expiry_ms: int = EXPIRIES_MS[0]) -> Quote:
    return Quote("deribit", "BTC", f"BTC-{strike:.0f}-{'C' if is_call else 'P'}", expiry_ms,
                 strike, is_call, 0.01, 0.02, 100_000.0, 100_000.0, NOW_MS, 0,
                 bid_iv=bid_iv, ask_iv=ask_iv)


def test_each_smile_is_the_slice_evaluators_vol_on_its_grid() -> None:
    update = make_surface()
    curves = json.loads(surface_curves(update))
    assert (curves["key"], curves["seq"]) == ("deribit:BTC", update.seq)
    assert [c["expiry"] for c in curves["slices"]] == [s.expiry for s in update.slices]
    for curve, s in zip(curves["slices"], update.slices, strict=True):
        expected = Slice(s, "svi").vol_k(np.array(curve["k"]))
        # k is sent to 1e-4 and vol to 1e-5: the vol at the sent k within their sum
        np.testing.assert_allclose(curve["vol"], expected, atol=5e-5)
        assert curve["k"][0] < 0 < curve["k"][-1]
        assert curve["quotes"] is None  # none given: none drawn (the topic's case)


def test_quotes_are_the_out_of_the_money_side_of_their_own_expiry_sorted_by_k() -> None:
    f = FORWARDS[0]
    quotes = [quote(1.1 * f, True, 0.50, 0.52), quote(0.9 * f, False, 0.60, 0.63),
              quote(1.1 * f, False, 0.9, 0.95),   # in the money: not drawn
              quote(0.95 * f, False, math.nan, 0.61),  # one side only: kept
              quote(0.97 * f, False, math.nan, math.nan),  # no IV: not drawn
              quote(1.1 * f, True, 0.4, 0.41, expiry_ms=EXPIRIES_MS[1])]
    curves = json.loads(surface_curves(make_surface(), quotes))
    first, second = curves["slices"][0]["quotes"], curves["slices"][1]["quotes"]
    np.testing.assert_allclose(first["k"], np.round(np.log([0.9, 0.95, 1.1]), 4))
    assert first["bid_iv"] == [0.6, None, 0.5]
    assert first["ask_iv"] == [0.63, 0.61, 0.52]
    assert second["bid_iv"] == [0.4]
    assert curves["slices"][2]["quotes"] == {"k": [], "bid_iv": [], "ask_iv": []}


def test_a_slice_that_cannot_be_evaluated_is_sent_without_a_curve() -> None:
    broken = make_slice(EXPIRIES_MS[0], {"a": math.nan, "b": 0.1, "rho": 0.0, "m": 0.0,
                                         "sigma": 0.1}, forward=FORWARDS[0], status="stale")
    curves = json.loads(surface_curves(make_surface(slices=[broken])))
    assert curves["slices"] == [{"expiry": broken.expiry, "expiry_ts_ms": broken.expiry_ts_ms,
                                 "status": "stale", "usable": False, "k": [], "vol": [],
                                 "quotes": None, "model": ""}]


def test_a_heston_surfaces_svi_fallback_slice_is_drawn_with_svi_and_named() -> None:
    heston = {"v0": 0.36, "kappa": 2.0, "theta": 0.3, "sigma": 1.0, "rho": -0.4}
    slices = [make_slice(e, heston, forward=f) for e, f in zip(EXPIRIES_MS, FORWARDS, strict=True)]
    slices[0] = make_slice(EXPIRIES_MS[0], svi_params(TS[0]), forward=FORWARDS[0], model="svi",
                           fallback_reason="atm_off_market", status="cold")
    update = make_surface("heston", slices=slices, params=heston)
    first = json.loads(surface_curves(update))["slices"][0]
    assert first["model"] == "svi"
    expected = Slice(make_slice(EXPIRIES_MS[0], svi_params(TS[0]), forward=FORWARDS[0]),
                     "svi").vol_k(np.array(first["k"]))
    np.testing.assert_allclose(first["vol"], expected, atol=5e-5)
