"""Surface: exact at slice expiries, interpolation and extrapolation rules, shapes, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.client import Surface
from streamer.core.models import svi
from streamer.sinks.codec import encode_surface
from tests.client.factory import (
    DAY_MS,
    EXPIRIES_MS,
    FORWARDS,
    NOW_MS,
    SPOT,
    TS,
    YEAR_MS,
    iso,
    make_slice,
    make_surface,
    svi_params,
)

DAY = DAY_MS
K = np.linspace(-0.6, 0.5, 23)
STRIKES = np.array([60e3, 80e3, 95e3, 100e3, 105e3, 125e3, 160e3])


def _w(i: int, k: np.ndarray) -> np.ndarray:
    return svi.total_variance(k, svi.SVIParams.from_dict(svi_params(TS[i])))


@pytest.fixture
def surface() -> Surface:
    return Surface(make_surface())


@pytest.mark.parametrize("i", range(4))
def test_total_variance_is_the_slice_model_exactly_at_each_expiry(surface: Surface,
                                                                  i: int) -> None:
    for expiry in (EXPIRIES_MS[i], TS[i], iso(EXPIRIES_MS[i])):
        np.testing.assert_array_equal(surface.total_variance(K, expiry), _w(i, K))


@pytest.mark.parametrize("i", range(4))
def test_vol_at_a_slice_expiry_is_core_svi_with_the_slice_forward(surface: Surface,
                                                                  i: int) -> None:
    expected = svi.implied_vol(np.log(STRIKES / FORWARDS[i]), TS[i],
                               svi.SVIParams.from_dict(svi_params(TS[i])))
    np.testing.assert_allclose(surface.vol(STRIKES, EXPIRIES_MS[i]), expected, rtol=1e-14)
    np.testing.assert_allclose(surface.slice(EXPIRIES_MS[i]).vol(STRIKES), expected, rtol=1e-14)


def test_total_variance_is_linear_in_t_between_neighbouring_slices(surface: Surface) -> None:
    for lam in (0.1, 0.5, 0.9):
        t = (1 - lam) * TS[1] + lam * TS[2]
        np.testing.assert_allclose(surface.total_variance(K, t),
                                   (1 - lam) * _w(1, K) + lam * _w(2, K), rtol=1e-13)


def test_total_variance_is_non_decreasing_in_t_at_fixed_k(surface: Surface) -> None:
    t = np.concatenate([np.geomspace(1e-4, 2.0, 400), TS])
    t.sort()
    w = surface.total_variance(K[:, None], t[None, :])
    assert w.shape == (K.size, t.size)
    assert np.all(np.diff(w, axis=1) >= 0)


def test_before_the_first_expiry_each_k_keeps_the_first_slice_vol(surface: Surface) -> None:
    for t in (1e-4, 0.3 * TS[0], 0.99 * TS[0]):
        np.testing.assert_allclose(surface.total_variance(K, t), _w(0, K) * t / TS[0],
                                   rtol=1e-14)


def test_after_the_last_expiry_variance_grows_at_the_last_atm_rate(surface: Surface) -> None:
    rate = float(_w(3, np.zeros(1))[0]) / TS[3]
    for t in (TS[3] * 1.01, 1.0, 3.0):
        np.testing.assert_allclose(surface.total_variance(K, t), _w(3, K) + (t - TS[3]) * rate,
                                   rtol=1e-14)


def test_forward_is_exact_at_slices_and_log_linear_in_t(surface: Surface) -> None:
    np.testing.assert_array_equal(surface.forward(np.array(EXPIRIES_MS)), FORWARDS)
    mid = 0.5 * (TS[1] + TS[2])
    assert float(surface.forward(mid)) == pytest.approx(math.sqrt(FORWARDS[1] * FORWARDS[2]),
                                                        rel=1e-14)
    # before the first slice: towards spot at t = 0
    assert float(surface.forward(1e-9)) == pytest.approx(SPOT, rel=1e-9)
    # after the last: the last segment's carry rate continues
    rate = math.log(FORWARDS[3] / FORWARDS[2]) / (TS[3] - TS[2])
    expected = FORWARDS[3] * math.exp(rate * (1.5 - TS[3]))
    assert float(surface.forward(1.5)) == pytest.approx(expected, rel=1e-13)


def test_without_a_spot_the_forward_is_flat_before_the_first_slice() -> None:
    surface = Surface(make_surface(spot=math.nan))
    assert float(surface.forward(0.2 * TS[0])) == pytest.approx(FORWARDS[0], rel=1e-14)


def test_shapes_follow_numpy_broadcasting(surface: Surface) -> None:
    assert surface.vol(100e3, 0.25).shape == ()
    assert isinstance(float(surface.vol(100e3, EXPIRIES_MS[0])), float)
    assert surface.vol(STRIKES, 0.25).shape == (7,)
    assert surface.vol(STRIKES.reshape(7, 1) * np.ones((1, 3)), 0.25).shape == (7, 3)
    grid = surface.vol(STRIKES[:, None], np.array(EXPIRIES_MS)[None, :])
    assert grid.shape == (7, 4)
    for j, e in enumerate(EXPIRIES_MS):
        np.testing.assert_array_equal(grid[:, j], surface.vol(STRIKES, e))
    assert surface.vol([90e3, 110e3], [0.1, 0.3]).shape == (2,)
    assert surface.total_variance(K, np.array([0.1])).shape == (K.size,)
    assert surface.forward([0.1, 0.2, 0.3]).shape == (3,)
    assert surface.vol(np.empty(0), 0.1).shape == (0,)


@pytest.mark.parametrize("strike", [0.0, -1.0, math.nan, math.inf, [100e3, -5.0]])
def test_a_bad_strike_raises_value_error(surface: Surface, strike: object) -> None:
    with pytest.raises(ValueError, match="strikes"):
        surface.vol(strike, 0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize("expiry", [0.0, -0.1, math.nan, math.inf, NOW_MS, NOW_MS - DAY,
                                    "2024-11-01T08:00:00Z", [0.1, -0.1]])
def test_an_expiry_not_after_the_surface_time_raises_value_error(surface: Surface,
                                                                 expiry: object) -> None:
    with pytest.raises(ValueError, match="expiry"):
        surface.vol(100e3, expiry)  # type: ignore[arg-type]


@pytest.mark.parametrize("expiry", [True, np.array(["x"]), np.array([1 + 2j]), None])
def test_an_expiry_of_the_wrong_type_raises_type_error(surface: Surface, expiry: object) -> None:
    with pytest.raises(TypeError, match="expiry"):
        surface.vol(100e3, expiry)  # type: ignore[arg-type]


def test_a_malformed_iso_expiry_and_non_finite_k_raise_value_error(surface: Surface) -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        surface.vol(100e3, "next friday")
    with pytest.raises(ValueError, match="log-moneyness"):
        surface.total_variance([0.0, math.nan], 0.1)



def test_unusable_slices_are_kept_for_inspection_but_skipped() -> None:
    bad = [make_slice(EXPIRIES_MS[1], {**svi_params(TS[1]), "b": math.nan}, forward=FORWARDS[1]),
           make_slice(EXPIRIES_MS[2], {"a": 0.01}, forward=FORWARDS[2]),
           make_slice(NOW_MS - DAY, svi_params(0.01), forward=SPOT)]
    good = [make_slice(e, svi_params(t), forward=f)
            for e, t, f in zip(EXPIRIES_MS[::3], TS[::3], FORWARDS[::3], strict=True)]
    surface = Surface(make_surface(slices=[*good, *bad]))
    reference = Surface(make_surface(slices=good))
    assert surface.expiries == (EXPIRIES_MS[0], EXPIRIES_MS[3])
    assert surface.slice(EXPIRIES_MS[1]).problem == "non-finite parameter"
    assert surface.slice(EXPIRIES_MS[2]).problem == "missing svi parameter 'b'"
    assert "expired" in (surface.slice(NOW_MS - DAY).problem or "")
    for t in (0.005, 0.1, 0.3, 1.0):
        np.testing.assert_array_equal(surface.vol(STRIKES, t), reference.vol(STRIKES, t))
    with pytest.raises(ValueError, match="not usable"):
        surface.slice(EXPIRIES_MS[1]).total_variance(K)


def test_a_surface_without_usable_slices_raises_on_evaluation() -> None:
    surface = Surface(make_surface(slices=[]))
    assert surface.expiries == ()
    with pytest.raises(ValueError, match="no usable slice"):
        surface.vol(100e3, 0.1)
    with pytest.raises(ValueError, match="no usable slice"):
        surface.forward(0.1)


def test_slices_are_found_by_epoch_ms_or_iso_and_attributes_mirror_the_update(
        surface: Surface) -> None:
    s = surface.slice(iso(EXPIRIES_MS[2]))
    assert s is surface.slice(EXPIRIES_MS[2])
    assert (s.t, s.forward, s.status, s.model) == (TS[2], FORWARDS[2], "warm", "svi")
    with pytest.raises(KeyError):
        surface.slice(EXPIRIES_MS[2] + 1)
    assert (surface.venue, surface.underlying, surface.key) == ("deribit", "BTC", "deribit:BTC")
    assert (surface.seq, surface.exchange_ts_ms, surface.model, surface.spot) == (
        7, NOW_MS, "svi", SPOT)
    assert surface.years(EXPIRIES_MS[0] + DAY) == pytest.approx(TS[0] + DAY / YEAR_MS)


def test_decode_builds_the_same_surface_from_the_wire(surface: Surface) -> None:
    decoded = Surface.decode(encode_surface(surface.update))
    np.testing.assert_array_equal(decoded.vol(STRIKES, 0.3), surface.vol(STRIKES, 0.3))


@settings(max_examples=60, deadline=None)
@given(a=st.lists(st.floats(0.0, 0.05), min_size=2, max_size=5),
       b=st.lists(st.floats(0.0, 0.05), min_size=5, max_size=5),
       rho=st.floats(-0.9, 0.9), m=st.floats(-0.2, 0.2), sigma=st.floats(0.01, 0.5),
       k=st.floats(-1.5, 1.5))
def test_calendar_free_slices_give_total_variance_non_decreasing_in_t(
        a: list[float], b: list[float], rho: float, m: float, sigma: float, k: float) -> None:
    # cumulative sums of non-negative increments of a and b: w_i(k) <= w_j(k) for i < j
    aa, bb = np.cumsum(a) + 1e-4, np.cumsum(b[:len(a)]) + 0.01
    days = np.cumsum(np.arange(1, len(a) + 1) * 9)
    slices = [make_slice(NOW_MS + int(d) * DAY,
                         {"a": float(ai), "b": float(bi), "rho": rho, "m": m, "sigma": sigma},
                         forward=SPOT) for d, ai, bi in zip(days, aa, bb, strict=True)]
    surface = Surface(make_surface(slices=slices))
    t = np.geomspace(1e-3, 2.0, 300)
    assert np.all(np.diff(surface.total_variance(k, t)) >= 0)
