"""Implied vol of undiscounted Black-76 prices: round trips, reasons, and a reference solver.

Reference solver: P. Jäckel (2015), "Let's be rational", Wilmott 2015(75), pp. 40-53,
as implemented by the ``lets_be_rational`` package behind py_vollib's
``black.implied_volatility.implied_volatility(price, F, K, r, t, flag)``, called with
``r = 0`` (undiscounted). py_vollib 1.0.12 is a deprecated alias of ``vollib`` that
warns on import (an error under ``filterwarnings = error``), so the same function is
imported from ``vollib``.

Round-trip prices come from ``streamer.core.black76.price`` (itself checked against
QuantLib in ``test_black76.py``).
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from vollib.black.implied_volatility import implied_volatility as lets_be_rational

from streamer.core.black76 import price, vega
from streamer.core.implied_vol import (
    TIME_VALUE_FLOOR,
    IVReason,
    implied_vol,
    implied_vol_with_reason,
)

EPS = np.finfo(float).eps
HOUR = 1.0 / (365.0 * 24.0)


class Grid:
    """ln(K/F) in [-3, 3] step 0.025, t from 1 hour to 3 years, vol 0.05 to 5; both types."""

    def __init__(self) -> None:
        self.f = 1.0
        x, t, vol, call = np.meshgrid(np.linspace(-3.0, 3.0, 241), np.geomspace(HOUR, 3.0, 40),
                                      np.geomspace(0.05, 5.0, 60), [True, False], indexing="ij")
        self.k, self.t, self.vol, self.call = self.f * np.exp(x), t, vol, call
        self.price = price(self.f, self.k, t, vol, call)
        intrinsic = np.maximum(np.where(call, self.f - self.k, self.k - self.f), 0.0)
        self.time_value = self.price - intrinsic
        self.invertible = self.time_value > TIME_VALUE_FLOOR * self.f
        self.otm = np.where(call, self.k >= self.f, self.k < self.f)
        self.iv, self.reason = implied_vol_with_reason(self.price, self.f, self.k, t, call)
        self.err = np.abs(self.iv - vol)
        # What rounding the price alone does to the vol: the black76 price carries an
        # absolute error of a few eps * max(F, K) (F N(d1) - K N(d2)), worth that / vega.
        with np.errstate(divide="ignore", over="ignore"):
            self.conditioning = EPS * np.maximum(self.f, self.k) / vega(self.f, self.k, t, vol)


@functools.cache
def grid() -> Grid:
    return Grid()


def test_grid_is_dense_and_mostly_invertible() -> None:
    g = grid()
    assert g.price.size > 1_000_000
    assert g.invertible.sum() > 400_000
    assert np.all(g.reason[g.invertible] == IVReason.OK)
    assert np.all(g.reason[~g.invertible] == IVReason.NO_TIME_VALUE)
    assert np.all(np.isnan(g.iv[~g.invertible]))


def test_round_trip_of_out_of_the_money_prices_is_within_1e_12() -> None:
    """|σ̂ − σ| ≤ 1e-12 max(1, σ) wherever the OTM time value exceeds 1e-14 F."""
    g = grid()
    sel = g.invertible & g.otm
    rel = g.err[sel] / np.maximum(1.0, g.vol[sel])
    assert rel.max() <= 1e-12, f"max round-trip error {rel.max():.3g}"


def test_round_trip_of_in_the_money_prices_is_limited_only_by_price_rounding() -> None:
    """ITM prices hold the time value under intrinsic; their own rounding bounds the error.

    A deep ITM call worth 0.95 F with 1e-13 F of time value has lost most digits of the
    time value before the solver sees it; no inversion can undo that. The bound adds to
    the 1e-12 the vol shift that 4 eps max(F, K) of price error causes.
    """
    g = grid()
    sel = g.invertible & ~g.otm
    bound = 1e-12 * np.maximum(1.0, g.vol[sel]) + 4.0 * g.conditioning[sel]
    assert np.all(g.err[sel] <= bound)
    # Where the price rounding is negligible the plain 1e-12 bound holds for ITM too.
    clean = sel & (g.conditioning < 1e-14)
    assert clean.sum() > 50_000
    assert (g.err[clean] / np.maximum(1.0, g.vol[clean])).max() <= 1e-12


def test_in_the_money_round_trip_through_parity_is_within_1e_12_plus_one_ulp() -> None:
    """Prices built as intrinsic + OTM price; the error is then rounding of that sum only."""
    g = grid()
    sel = g.invertible & ~g.otm
    intrinsic = np.maximum(np.where(g.call, g.f - g.k, g.k - g.f), 0.0)[sel]
    otm_price = price(g.f, g.k[sel], g.t[sel], g.vol[sel], ~g.call[sel])
    p = intrinsic + otm_price
    iv = implied_vol(p, g.f, g.k[sel], g.t[sel], g.call[sel])
    with np.errstate(divide="ignore", over="ignore"):
        half_ulp_shift = 0.5 * np.spacing(p) / vega(g.f, g.k[sel], g.t[sel], g.vol[sel])
    bound = 1e-12 * np.maximum(1.0, g.vol[sel]) + 2.0 * half_ulp_shift
    finite = p - intrinsic > TIME_VALUE_FLOOR * g.f
    assert np.all(np.abs(iv - g.vol[sel])[finite] <= bound[finite])


def test_agrees_with_lets_be_rational_on_a_subsample() -> None:
    """Both solvers to ~1e-12 of the vol implied by the same (rounded) double price."""
    g = grid()
    rng = np.random.default_rng(20150701)
    idx = rng.choice(np.flatnonzero(g.invertible), 3000, replace=False)
    p, k, t = g.price.flat[idx], g.k.flat[idx], g.t.flat[idx]
    call, vol = g.call.flat[idx], g.vol.flat[idx]
    ref = np.array([lets_be_rational(float(pp), g.f, float(kk), 0.0, float(tt), "c" if c else "p")
                    for pp, kk, tt, c in zip(p, k, t, call, strict=True)])
    ours = implied_vol(p, g.f, k, t, call)
    bound = 2e-12 * np.maximum(1.0, vol) + 4.0 * g.conditioning.flat[idx]
    assert np.all(np.abs(ours - ref) <= bound)


@pytest.mark.parametrize(
    ("p", "f", "k", "t", "is_call", "reason"),
    [
        (math.nan, 100.0, 100.0, 0.5, True, IVReason.NON_FINITE),
        (5.0, math.inf, 100.0, 0.5, True, IVReason.NON_FINITE),
        (5.0, 100.0, math.nan, 0.5, False, IVReason.NON_FINITE),
        (5.0, 100.0, 100.0, math.nan, True, IVReason.NON_FINITE),
        (-1.0, 100.0, 100.0, 0.5, True, IVReason.NON_POSITIVE),
        (5.0, 100.0, 100.0, 0.0, True, IVReason.NON_POSITIVE),
        (5.0, 100.0, 100.0, -0.1, False, IVReason.NON_POSITIVE),
        (5.0, 0.0, 100.0, 0.5, True, IVReason.NON_POSITIVE),
        (5.0, 100.0, -100.0, 0.5, True, IVReason.NON_POSITIVE),
        (19.0, 100.0, 80.0, 0.5, True, IVReason.BELOW_INTRINSIC),
        (0.0, 100.0, 120.0, 0.5, False, IVReason.BELOW_INTRINSIC),
        (100.0, 100.0, 80.0, 0.5, True, IVReason.ABOVE_MAX),
        (150.0, 100.0, 120.0, 0.5, True, IVReason.ABOVE_MAX),
        (120.0, 100.0, 120.0, 0.5, False, IVReason.ABOVE_MAX),
        (0.0, 100.0, 120.0, 0.5, True, IVReason.NO_TIME_VALUE),
        (20.0, 100.0, 80.0, 0.5, True, IVReason.NO_TIME_VALUE),
        (1e-13, 100.0, 100.0, 0.5, True, IVReason.NO_TIME_VALUE),
        (5.0, 100.0, 100.0, 0.5, True, IVReason.OK),
    ],
)
def test_uninvertible_inputs_give_nan_and_the_reason(p: float, f: float, k: float, t: float,
                                                    is_call: bool, reason: IVReason) -> None:
    vol, code = implied_vol_with_reason(p, f, k, t, is_call)
    assert IVReason(int(code)) is reason
    assert np.isnan(vol) == (reason is not IVReason.OK)


def test_reasons_are_per_element_in_one_call() -> None:
    p = np.array([math.nan, -1.0, 19.0, 100.0, 0.0, 5.0])
    k = np.array([100.0, 100.0, 80.0, 80.0, 120.0, 100.0])
    vol, code = implied_vol_with_reason(p, 100.0, k, 0.5, True)
    assert code.tolist() == [IVReason.NON_FINITE, IVReason.NON_POSITIVE,
                             IVReason.BELOW_INTRINSIC, IVReason.ABOVE_MAX,
                             IVReason.NO_TIME_VALUE, IVReason.OK]
    assert np.isnan(vol[:5]).all()
    # At the money C = F (2 N(σ √t / 2) − 1), so σ = 2 N⁻¹((1 + C / F) / 2) / √t.
    assert vol[5] == pytest.approx(2 * NormalDist().inv_cdf(0.525) / math.sqrt(0.5), rel=1e-13)


def test_reason_labels_are_metric_friendly() -> None:
    assert IVReason.BELOW_INTRINSIC.label == "below_intrinsic"
    assert {r.label for r in IVReason} == {"ok", "non_finite", "non_positive",
                                           "below_intrinsic", "above_max", "no_time_value"}


def test_shapes_broadcast_and_scalars_stay_scalar() -> None:
    vol, code = implied_vol_with_reason(5.0, 100.0, 100.0, 0.5, True)
    assert vol.shape == ()
    assert code.shape == ()
    assert code.dtype == np.int8
    k = np.array([90.0, 100.0, 110.0])[:, None]
    t = np.array([0.25, 0.5])[None, :]
    assert implied_vol(5.0, 100.0, k, t, np.array([False, True])).shape == (3, 2)
    empty_vol, empty_code = implied_vol_with_reason([], [], [], [], [])
    assert empty_vol.shape == (0,)
    assert empty_code.shape == (0,)


def test_tiny_total_vol_is_recovered_not_clipped() -> None:
    """1e-8 vol for an hour ATM is a time value of 4e-11 F, above the 1e-14 floor.

    It used to come back as 9.4e-8 (the root lay below the solver's old bracket).
    The body formula loses ~eps/b relative precision, hence 1e-5 here.
    """
    p = price(1.0, 1.0, HOUR, 1e-8, True)
    vol, code = implied_vol_with_reason(p, 1.0, 1.0, HOUR, True)
    assert code == IVReason.OK
    assert vol == pytest.approx(1e-8, rel=1e-5)


any_float = st.floats(min_value=-1e9, max_value=1e9) | \
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0])


@given(any_float, any_float, any_float, any_float, st.booleans())
def test_never_raises_and_nan_exactly_when_not_ok(p: float, f: float, k: float, t: float,
                                                  is_call: bool) -> None:
    vol, code = implied_vol_with_reason(p, f, k, t, is_call)
    reason = IVReason(int(code))
    assert np.isnan(vol) == (reason is not IVReason.OK)
    if reason is IVReason.OK:
        assert vol > 0.0


@given(
    st.floats(1e-2, 1e6),  # forward
    st.floats(-3.0, 3.0),  # ln(K/F)
    st.floats(HOUR, 3.0),  # t, years
    st.floats(0.05, 5.0),  # vol
    st.booleans(),
)
def test_price_to_vol_to_price_round_trip(f: float, x: float, t: float, vol: float,
                                          is_call: bool) -> None:
    k = f * math.exp(x)
    p = float(price(f, k, t, vol, is_call))
    intrinsic = max(f - k, 0.0) if is_call else max(k - f, 0.0)
    assume(p - intrinsic > TIME_VALUE_FLOOR * f)
    iv, code = implied_vol_with_reason(p, f, k, t, is_call)
    assert code == IVReason.OK
    again = float(price(f, k, t, iv, is_call))
    assert abs(again - p) <= 1e-12 * (p - intrinsic) + 8 * EPS * max(f, k)


def test_flat_invertible_arrays_take_the_unmasked_path_to_the_same_bits() -> None:
    """A market's quotes (all invertible, flat float64) skip the reason masks; one bad
    element sends the same quotes the masked way, and the good ones' vols keep every bit."""
    rng = np.random.default_rng(13)
    n = 400
    f = rng.uniform(50.0, 150.0, n)
    k = f * np.exp(rng.uniform(-0.8, 0.8, n))
    t = rng.uniform(0.05, 3.0, n)
    call = rng.random(n) < 0.5
    p = price(f, k, t, rng.uniform(0.2, 2.0, n), call)
    fast, reason = implied_vol_with_reason(p, f, k, t, call)
    assert not reason.any()
    assert reason.dtype == np.int8
    assert fast.shape == (n,)
    for bad in (np.nan, -1.0, 0.0, 1e9):  # non-finite, non-positive, no time value, above max
        masked, why = implied_vol_with_reason(np.append(p, bad), np.append(f, 100.0),
                                              np.append(k, 100.0), np.append(t, 1.0),
                                              np.append(call, True))
        assert why[-1] != IVReason.OK
        assert not why[:-1].any()
        assert np.array_equal(masked[:-1], fast)  # bit for bit, no tolerance
    # lists go through the broadcast to the same bits
    listed, _ = implied_vol_with_reason(p.tolist(), f.tolist(), k.tolist(), t.tolist(),
                                        call.tolist())
    assert np.array_equal(listed, fast)
