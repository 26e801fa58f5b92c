"""Jump-wings, tenor views and the variance index on a chain with known smiles.

The chain: four expiries whose true smiles are raw SVI slices (calendar-free), quoted at
listed strikes with bid/ask around the true Black-76 prices, fed to the engine as
Quotes. The truths: jump-wings of the published slice params by Gatheral's closed form;
the Cboe VIX formula applied to the true prices at the same strikes (the goal of issue
16: within 2%); the model-free variance of the true smile over a wide strike range.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamer.config import BatchConfig, CalibrationConfig
from streamer.core import black76
from streamer.core.jump_wings import from_raw_svi
from streamer.core.models import svi
from streamer.core.tenors import total_variance_at
from streamer.core.variance_index import expiry_variance, interpolated_vol
from streamer.pipeline.engine import Engine
from streamer.types import Quote, SurfaceUpdate, VenueVolIndex

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000
SPOT = 90_000.0
EXPIRY_DAYS = (7, 20, 45, 90)
TRUTH = [svi.SVIParams(a=0.0004 * d, b=0.0025 * np.sqrt(d), rho=-0.3, m=0.01, sigma=0.12)
         for d in EXPIRY_DAYS]


def _expiry_ms(days: int) -> int:
    return NOW_MS + days * DAY_MS + 8 * 3_600_000


def _t(days: int) -> float:
    return (_expiry_ms(days) - NOW_MS) / (365 * DAY_MS)


def _strikes(days: int) -> np.ndarray:
    width = 0.5 * np.sqrt(days / 30)
    return np.unique(np.round(SPOT * np.exp(np.linspace(-2 * width, 2 * width, 41)), -3))


def _true_prices(i: int, strikes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = _t(EXPIRY_DAYS[i])
    vol = np.sqrt(svi.total_variance(np.log(strikes / SPOT), TRUTH[i]) / t)
    return black76.price(SPOT, strikes, t, vol, True), black76.price(SPOT, strikes, t, vol, False)


def _quotes() -> list[Quote]:
    quotes = []
    for i, days in enumerate(EXPIRY_DAYS):
        strikes = _strikes(days)
        for is_call, prices in zip((True, False), _true_prices(i, strikes), strict=True):
            for strike, price in zip(strikes, prices, strict=True):
                half = max(0.004 * price, 0.5)
                quotes.append(Quote(
                    venue="deribit", underlying="BTC",
                    instrument=f"BTC-{days}-{strike:.0f}-{'C' if is_call else 'P'}",
                    expiry_ts_ms=_expiry_ms(days), strike=float(strike),
                    is_call=is_call, bid_price=max(price - half, 0.0), ask_price=price + half,
                    underlying_price=SPOT, index_price=SPOT, exchange_ts_ms=NOW_MS,
                    received_ts_ns=NOW_MS * 1_000_000))
    return quotes


@pytest.fixture(scope="module")
def surface() -> SurfaceUpdate:
    engine = Engine("deribit", CalibrationConfig(), BatchConfig())
    for q in _quotes():
        engine.on_quote(q)
    for vol, ts in ((0.43, NOW_MS - 1_000), (0.41, NOW_MS - 2_000)):  # the older arrives last
        engine.on_vol_index(VenueVolIndex(venue="deribit", underlying="BTC", index_name="btc_usd",
                                          vol=vol, exchange_ts_ms=ts, received_ts_ns=0))
    (update,) = engine.flush(NOW_MS * 1_000_000)
    assert len(update.slices) == len(EXPIRY_DAYS)
    return update


def test_every_slice_carries_its_exact_jump_wings(surface: SurfaceUpdate) -> None:
    for s in surface.slices:
        p = s.params
        exact = from_raw_svi(p["a"], p["b"], p["rho"], p["m"], p["sigma"], s.t).as_dict()
        assert s.jw == exact


def test_variance_index_within_2pct_of_the_vix_formula_on_true_prices(
        surface: SurfaceUpdate) -> None:
    vi = surface.variance_index
    assert vi is not None
    assert (vi.near_expiry[:10], vi.next_expiry[:10]) == ("2026-01-21", "2026-02-15")
    near, nxt = (expiry_variance(k, *_true_prices(i, k), *_true_prices(i, k), _t(EXPIRY_DAYS[i]))
                 for i, k in ((1, _strikes(EXPIRY_DAYS[1])), (2, _strikes(EXPIRY_DAYS[2]))))
    assert near is not None
    assert nxt is not None
    truth = interpolated_vol(near, nxt, 30 / 365)
    assert vi.vol == pytest.approx(truth, rel=0.02)
    assert vi.n_strikes >= 30


def test_model_variance_index_integrates_the_wings(surface: SurfaceUpdate) -> None:
    vi = surface.variance_index
    assert vi is not None
    wide = []
    for i in (1, 2):
        t = _t(EXPIRY_DAYS[i])
        k = np.linspace(-6, 6, 4001)
        strikes = SPOT * np.exp(k)
        vol = np.sqrt(svi.total_variance(k, TRUTH[i]) / t)
        calls, puts = (black76.price(SPOT, strikes, t, vol, c) for c in (True, False))
        wide.append(expiry_variance(strikes, calls, puts, calls, puts, t))
    assert wide[0] is not None
    assert wide[1] is not None
    assert vi.model_vol == pytest.approx(interpolated_vol(wide[0], wide[1], 30 / 365), rel=0.02)


def test_thirty_day_tenor_atm_within_half_a_vol_point(surface: SurfaceUpdate) -> None:
    view = next(v for v in surface.tenors if v.tenor_days == 30.0)
    ts = [_t(d) for d in EXPIRY_DAYS]
    slices = [lambda k, p=p: svi.total_variance(k, p) for p in TRUTH]
    w = total_variance_at(np.zeros(1), 30 / 365, ts, slices)
    assert view.atm_vol == pytest.approx(float(np.sqrt(w[0] / (30 / 365))), abs=0.005)
    assert view.rr25 == view.delta_vols["25C"] - view.delta_vols["25P"]
    assert not view.extrapolated


def test_tenors_outside_the_listed_expiries_are_flagged(surface: SurfaceUpdate) -> None:
    flags = {v.tenor_days: v.extrapolated for v in surface.tenors}
    assert flags == {1.0: True, 7.0: True, 14.0: False, 30.0: False, 60.0: False,
                     90.0: False, 180.0: True, 365.0: True}


def test_the_venues_own_index_is_published_beside_ours(surface: SurfaceUpdate) -> None:
    vi = surface.variance_index
    assert vi is not None
    assert (vi.venue_vol, vi.venue_vol_ts_ms) == (0.43, NOW_MS - 1_000)


def test_every_fitted_slice_publishes_its_error_bars(surface: SurfaceUpdate) -> None:
    # Each quote's half spread as its noise: the ATM vol is known to about one typical
    # half spread (five correlated SVI parameters from ~20 OTM quotes), never to zero,
    # and every parameter has a finite standard error.
    for s in surface.slices:
        assert s.status in ("warm", "cold")
        assert 0.1 * s.half_spread_vol < s.atm_vol_se < 2.0 * s.half_spread_vol
        assert set(s.params_se) == set(s.params)
        assert all(np.isfinite(v) and v > 0 for v in s.params_se.values())


def test_an_expiry_without_a_market_variance_leaves_the_index_to_its_neighbours() -> None:
    """The 20-day expiry quotes calls only (no put-call pair, no forward): the 30-day
    index is bracketed by the 7- and 45-day expiries, as the VIX rule on the usable
    expiries gives it."""
    from streamer.core.models.svi import SVIModel
    from streamer.pipeline.analytics import SurfaceAnalytics

    books: dict[int, list[Quote]] = {}
    for q in _quotes():
        if q.is_call or q.expiry_ts_ms != _expiry_ms(20):
            books.setdefault(q.expiry_ts_ms, []).append(q)
    vi = SurfaceAnalytics().variance_index(SVIModel(), sorted(books.items()), {}, NOW_MS)
    assert vi is not None
    assert (vi.near_expiry[:10], vi.next_expiry[:10]) == ("2026-01-08", "2026-02-15")
    per = []
    for i in (0, 2):
        strikes = _strikes(EXPIRY_DAYS[i])
        calls, puts = _true_prices(i, strikes)
        per.append(expiry_variance(strikes, calls, puts, calls, puts, _t(EXPIRY_DAYS[i])))
    assert vi.vol == pytest.approx(interpolated_vol(per[0], per[1], 30 / 365), rel=0.02)


def test_the_strike_index_is_numpys_unique() -> None:
    from streamer.core.variance_index import _strike_index

    rng = np.random.default_rng(5)
    for n in (0, 1, 2, 7, 60):
        for with_nan in (False, True):
            strike = rng.choice([80_000.0, 90_000.0, 95_000.0, 100_000.0, 120_000.0], n)
            if with_nan and n:
                strike[rng.random(n) < 0.3] = np.nan
            want_strikes, want_at = np.unique(strike, return_inverse=True)
            got_strikes, got_at = _strike_index(strike)
            np.testing.assert_array_equal(got_strikes, want_strikes)
            np.testing.assert_array_equal(got_at, want_at.ravel())


def test_the_model_grids_are_numpys_linspace_bit_for_bit() -> None:
    from streamer.core.rows import linspace_rows
    from streamer.pipeline.analytics import _MODEL_POINTS

    half = np.array([0.1, 0.37123456789, 2.0, 4.9e-3, 13.3])
    grids = linspace_rows(-half, half, _MODEL_POINTS)
    for h, row in zip(half, grids, strict=True):
        assert row.tobytes() == np.linspace(-h, h, _MODEL_POINTS).tobytes()


def test_the_model_variances_of_several_smiles_at_once_are_each_ones_own() -> None:
    """One Black-76 pass over every smile's grid: each row keeps its own smile, forward
    and time, bit for bit against the smile alone."""
    from streamer.core.variance_index import ExpiryVariance
    from streamer.pipeline.analytics import FittedSlice, _model_variances

    model = svi.SVIModel()
    slices = [FittedSlice(_expiry_ms(d), _t(d), SPOT * (1 + 0.01 * i), TRUTH[i], (-0.2, 0.2))
              for i, d in enumerate(EXPIRY_DAYS)]
    markets = [ExpiryVariance(t=s.t * 1.001, variance=0.3, forward=SPOT, k0=SPOT,
                              n_strikes=9) for s in slices]
    together = _model_variances(model, slices, markets)
    alone = [_model_variances(model, [s], [m])[0] for s, m in zip(slices, markets, strict=True)]
    assert together == alone  # exact
    assert [v.t for v in together] == [m.t for m in markets]
    assert len({v.variance for v in together}) == len(slices)
    for v, s in zip(together, slices, strict=True):  # about the ATM variance (a skew adds)
        atm = float(svi.total_variance(np.zeros(1), s.params)[0]) / s.t
        assert atm < v.variance < 1.2 * atm
