"""Surface.delta: the smile-adjusted forward delta equals a finite difference of Black-76
prices in a smile that moves as each regime says (docs/dynamics.md)."""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt
import pytest

from streamer.client import Surface
from streamer.core import black76
from streamer.types import Dynamics
from tests.client.factory import DAY_MS, EXPIRIES_MS, NOW_MS, make_surface

FloatArray = npt.NDArray[np.float64]

# SSR per published tenor bucket (days); the headline estimate sits at 30 days.
BUCKETS = {7.0: 1.8, 30.0: 1.4, 90.0: 0.6, 180.0: -0.5}
# expiry (epoch ms or years) -> the bucket whose SSR it must use (nearest in log tenor)
EXPECTED_SSR = [(EXPIRIES_MS[0], 1.8), (EXPIRIES_MS[1], 1.4), (EXPIRIES_MS[2], 0.6),
                (EXPIRIES_MS[3], -0.5),
                (NOW_MS + 14 * DAY_MS, 1.8),   # ln(14/7) = 0.69 < ln(30/14) = 0.76
                (NOW_MS + 15 * DAY_MS, 1.4),   # ln(15/7) = 0.76 > ln(30/15) = 0.69
                (55.0 / 365.0, 0.6)]           # between slices: ln(90/55) < ln(55/30)
REL_BUMP = 1e-4


def _dynamics(ssr_30: float = BUCKETS[30.0], **over: float) -> Dynamics:
    buckets = [Dynamics(ssr=v, spot_vol_beta=0.0, r2=0.5, n_obs=100, regime="unknown",
                        tenor_days=d) for d, v in BUCKETS.items()]
    fields = dict(ssr=ssr_30, spot_vol_beta=0.0, r2=0.5, n_obs=100, regime="unknown",
                  tenor_days=30.0, by_expiry=buckets)
    fields.update(over)
    return msgspec.convert(fields, Dynamics, from_attributes=True)


@pytest.fixture
def surface() -> Surface:
    return Surface(make_surface(dynamics=_dynamics()))


def _fd_delta(surface: Surface, strike: FloatArray, expiry: int | float,
              is_call: npt.NDArray[np.bool_], ssr: float) -> FloatArray:
    """d price / d F by central differences, the smile read at ``k + ssr * ln(F'/F)``.

    ``ssr`` 1 keeps each strike's vol (sticky strike), 0 each log-moneyness's (sticky
    moneyness); the unbumped smile is the surface's own ``w(k, t)``.
    """
    t = float(surface.years(expiry))
    forward = float(surface.forward(expiry))

    def price(bumped: float) -> FloatArray:
        k_moved = np.log(strike / bumped) + ssr * np.log(bumped / forward)
        vol = np.sqrt(surface.total_variance(k_moved, t) / t)
        return black76.price(bumped, strike, t, vol, is_call)

    h = REL_BUMP * forward
    result: FloatArray = (price(forward + h) - price(forward - h)) / (2 * h)
    return result


def _strikes(surface: Surface, expiry: int | float) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    forward = float(surface.forward(expiry))
    strike = forward * np.exp(np.linspace(-0.5, 0.5, 21))
    return strike, strike >= forward  # OTM calls and puts, mixed in one call


@pytest.mark.parametrize(("expiry", "ssr"), EXPECTED_SSR)
def test_measured_delta_is_the_price_derivative_in_the_bucket_ssr_world(
        surface: Surface, expiry: int | float, ssr: float) -> None:
    strike, is_call = _strikes(surface, expiry)
    got = surface.delta(strike, expiry, is_call)
    assert got.shape == strike.shape
    np.testing.assert_allclose(got, _fd_delta(surface, strike, expiry, is_call, ssr),
                               rtol=0, atol=2e-7)
    assert float(surface.ssr(expiry)) == ssr


@pytest.mark.parametrize(("dynamics", "ssr"), [("sticky_strike", 1.0),
                                               ("sticky_moneyness", 0.0)])
@pytest.mark.parametrize("expiry", [EXPIRIES_MS[0], EXPIRIES_MS[1], EXPIRIES_MS[3], 0.3])
def test_sticky_deltas_are_the_price_derivative_in_their_worlds(
        surface: Surface, dynamics: str, ssr: float, expiry: int | float) -> None:
    strike, is_call = _strikes(surface, expiry)
    got = surface.delta(strike, expiry, is_call, dynamics=dynamics)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, _fd_delta(surface, strike, expiry, is_call, ssr),
                               rtol=0, atol=2e-7)


def test_the_regimes_differ_by_vega_times_skew(surface: Surface) -> None:
    """Not three names for one number: with this put skew, sticky moneyness (a fixed
    strike's vol rises with spot) adds delta over sticky strike; the measured 30-day SSR
    of 1.4 (a fixed strike's vol falls with spot) takes some away."""
    expiry = EXPIRIES_MS[1]
    strike, is_call = _strikes(surface, expiry)
    by = {d: surface.delta(strike, expiry, is_call, dynamics=d)  # type: ignore[arg-type]
          for d in ("sticky_strike", "sticky_moneyness", "measured")}
    atm = strike.size // 2
    assert by["sticky_moneyness"][atm] - by["sticky_strike"][atm] > 0.01
    assert by["measured"][atm] - by["sticky_strike"][atm] < -0.004
    t, forward = float(surface.years(expiry)), float(surface.forward(expiry))
    np.testing.assert_allclose(by["sticky_strike"],
                               black76.delta(forward, strike, t, surface.vol(strike, expiry),
                                             is_call), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dynamics", ["sticky_strike", "sticky_moneyness", "measured"])
def test_call_minus_put_is_one_and_it_broadcasts(surface: Surface, dynamics: str) -> None:
    strike = np.array([80_000.0, 100_000.0, 130_000.0])[:, None]
    expiries = np.array(EXPIRIES_MS)
    calls = surface.delta(strike, expiries, True, dynamics=dynamics)  # type: ignore[arg-type]
    puts = surface.delta(strike, expiries, False, dynamics=dynamics)  # type: ignore[arg-type]
    assert calls.shape == (3, 4)
    np.testing.assert_allclose(calls - puts, 1.0, rtol=0, atol=1e-12)
    assert np.all((calls > 0) & (calls < 1.2))


def test_buckets_without_an_ssr_are_skipped() -> None:
    by_expiry = [Dynamics(ssr=float("nan") if d == 7.0 else v, spot_vol_beta=0.0, r2=0.5,
                          n_obs=5, regime="unknown", tenor_days=d) for d, v in BUCKETS.items()]
    surface = Surface(make_surface(dynamics=_dynamics(by_expiry=by_expiry)))  # type: ignore[arg-type]
    assert float(surface.ssr(EXPIRIES_MS[0])) == 1.4  # 7 days: the 30-day estimate


@pytest.mark.parametrize("dynamics", [None, _dynamics(ssr_30=float("nan"), by_expiry=[])])
def test_measured_delta_without_a_published_ssr_is_an_error(dynamics: Dynamics | None) -> None:
    surface = Surface(make_surface(dynamics=dynamics))
    with pytest.raises(ValueError, match="no measured SSR"):
        surface.delta(100_000.0, EXPIRIES_MS[1], True)
    assert 0.4 < float(surface.delta(100_000.0, EXPIRIES_MS[1], True, "sticky_strike")) < 0.7


def test_bad_arguments_are_errors(surface: Surface) -> None:
    with pytest.raises(ValueError, match="unknown smile dynamics"):
        surface.delta(100_000.0, EXPIRIES_MS[1], True, "local_vol")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strikes"):
        surface.delta(-1.0, EXPIRIES_MS[1], True)
