"""Undiscounted Black-76 prices and greeks against QuantLib, closed forms and differences.

Reference values: QuantLib 1.44 ``blackFormula`` and ``BlackCalculator``
(ql/pricingengines/blackformula.cpp, ql/pricingengines/blackcalculator.cpp) with
discount 1 and ``stdDev = vol * sqrt(t)``; closed forms from Black (1976), "The pricing
of commodity contracts", J. Financial Economics 3, evaluated with the standard library's
``statistics.NormalDist`` so that they share no code with the module under test.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
import QuantLib as ql  # noqa: N813 - the alias QuantLib's own examples use
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.black76 import delta, gamma, price, vega

_N = NormalDist()
F = 100.0
LOG_MONEYNESS = np.linspace(-1.0, 1.0, 41)
TIMES = np.array([1.0 / (365 * 24), 1.0 / 365, 0.1, 0.5, 1.0, 3.0])
VOLS = np.array([0.05, 0.1, 0.3, 0.6, 1.0, 2.0, 5.0])


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k, t, v = np.meshgrid(F * np.exp(LOG_MONEYNESS), TIMES, VOLS, indexing="ij")
    return k.ravel(), t.ravel(), v.ravel()


def _ql_type(is_call: bool) -> int:
    return ql.Option.Call if is_call else ql.Option.Put


def _closed_form(f: float, k: float, t: float, vol: float) -> dict[str, float]:
    """Black-76 call price, greeks from the textbook formulas (undiscounted)."""
    s = vol * math.sqrt(t)
    d1 = math.log(f / k) / s + 0.5 * s
    d2 = d1 - s
    return {
        "call": f * _N.cdf(d1) - k * _N.cdf(d2),
        "put": k * _N.cdf(-d2) - f * _N.cdf(-d1),
        "call_delta": _N.cdf(d1),
        "put_delta": _N.cdf(d1) - 1.0,
        "gamma": _N.pdf(d1) / (f * s),
        "vega": f * _N.pdf(d1) * math.sqrt(t),
    }


@pytest.mark.parametrize("is_call", [True, False], ids=["call", "put"])
def test_price_matches_quantlib_black_formula_on_grid(is_call: bool) -> None:
    """Relative 1e-12 wherever the price is at least 1e-4 F, absolute 1e-14 F everywhere.

    QuantLib's normal CDF is ``(1 + erf(z / sqrt 2)) / 2``, which keeps only absolute
    precision in the left tail, so far-wing prices are compared absolutely.
    """
    k, t, v = _grid()
    ours = price(F, k, t, v, is_call)
    ref = np.array([ql.blackFormula(_ql_type(is_call), kk, F, vv * math.sqrt(tt))
                    for kk, tt, vv in zip(k, t, v, strict=True)])
    assert np.all(np.abs(ours - ref) <= 1e-14 * F)
    body = ref >= 1e-4 * F
    assert body.sum() > 0.6 * body.size
    np.testing.assert_allclose(ours[body], ref[body], rtol=1e-12, atol=0.0)


def test_put_call_parity_holds_to_rounding() -> None:
    """C - P = F - K for undiscounted prices (Black 1976), to a few ulps of max(F, K)."""
    k, t, v = _grid()
    parity = price(F, k, t, v, True) - price(F, k, t, v, False)
    err = np.abs(parity - (F - k))
    assert np.all(err <= 8 * np.finfo(float).eps * np.maximum(F, k))


def test_greeks_match_quantlib_black_calculator() -> None:
    k, t, v = _grid()
    for kk, tt, vv in zip(k[::7], t[::7], v[::7], strict=True):
        std = vv * math.sqrt(tt)
        for is_call in (True, False):
            calc = ql.BlackCalculator(ql.PlainVanillaPayoff(_ql_type(is_call), kk), F, std, 1.0)
            assert delta(F, kk, tt, vv, is_call) == pytest.approx(calc.deltaForward(),
                                                                   rel=1e-12, abs=1e-15)
        calc = ql.BlackCalculator(ql.PlainVanillaPayoff(ql.Option.Call, kk), F, std, 1.0)
        # Far-tail greeks (~1e-175) differ by the rounding of exp(-d1^2 / 2) for |d1| ~ 30.
        assert gamma(F, kk, tt, vv) == pytest.approx(calc.gammaForward(), rel=1e-11,
                                                     abs=1e-14 / F)
        assert vega(F, kk, tt, vv) == pytest.approx(calc.vega(tt), rel=1e-11, abs=1e-14 * F)


@pytest.mark.parametrize(
    ("f", "k", "t", "vol"),
    [(100.0, 100.0, 0.5, 0.6), (100.0, 80.0, 0.1, 0.3), (65000.0, 90000.0, 1.2, 0.75),
     (1.0, 1.5, 3.0, 2.0), (2500.0, 2400.0, 1.0 / 365, 0.9)],
)
def test_price_and_greeks_match_closed_forms(f: float, k: float, t: float, vol: float) -> None:
    ref = _closed_form(f, k, t, vol)
    assert price(f, k, t, vol, True) == pytest.approx(ref["call"], rel=1e-12)
    assert price(f, k, t, vol, False) == pytest.approx(ref["put"], rel=1e-12)
    assert delta(f, k, t, vol, True) == pytest.approx(ref["call_delta"], rel=1e-12)
    assert delta(f, k, t, vol, False) == pytest.approx(ref["put_delta"], rel=1e-12)
    assert gamma(f, k, t, vol) == pytest.approx(ref["gamma"], rel=1e-12)
    assert vega(f, k, t, vol) == pytest.approx(ref["vega"], rel=1e-12)


@pytest.mark.parametrize(
    ("f", "k", "t", "vol"),
    [(100.0, 100.0, 0.5, 0.6), (100.0, 80.0, 0.1, 0.3), (100.0, 140.0, 1.2, 0.75),
     (1.0, 1.5, 3.0, 2.0), (100.0, 96.0, 1.0 / 365, 0.9)],
)
def test_greeks_match_central_finite_differences(f: float, k: float, t: float,
                                                 vol: float) -> None:
    """Central differences with steps scaled by the total vol: truncation O(h^2) ~ 1e-8."""
    hf, hv = 1e-4 * f * vol * math.sqrt(t), 1e-4 * vol
    for is_call in (True, False):
        up, down = price(f + hf, k, t, vol, is_call), price(f - hf, k, t, vol, is_call)
        fd_delta = (up - down) / (2 * hf)
        assert delta(f, k, t, vol, is_call) == pytest.approx(fd_delta, rel=1e-6, abs=1e-9)
        fd_gamma = (up - 2 * price(f, k, t, vol, is_call) + down) / hf**2
        assert gamma(f, k, t, vol) == pytest.approx(fd_gamma, rel=1e-5)
        fd_vega = (price(f, k, t, vol + hv, is_call) - price(f, k, t, vol - hv, is_call)) / (2 * hv)
        assert vega(f, k, t, vol) == pytest.approx(fd_vega, rel=1e-6)


def test_inputs_broadcast_like_numpy() -> None:
    strikes = np.array([80.0, 100.0, 120.0])[:, None]
    times = np.array([0.1, 0.5, 1.0, 2.0])[None, :]
    is_call = np.array([True, False, True, False])
    assert price(F, strikes, times, 0.5, is_call).shape == (3, 4)
    assert delta(F, strikes, times, 0.5, is_call).shape == (3, 4)
    assert vega(F, strikes, times, 0.5).shape == (3, 4)
    assert gamma(F, strikes, times, 0.5).shape == (3, 4)
    assert price(F, 100.0, 0.5, 0.5, True).shape == ()
    # Each broadcast element equals the scalar evaluation.
    grid = price(F, strikes, times, 0.5, is_call)
    assert grid[2, 1] == price(F, 120.0, 0.5, 0.5, False)


def test_zero_vol_or_zero_time_gives_intrinsic_and_flat_greeks() -> None:
    k = np.array([80.0, 100.0, 120.0])
    np.testing.assert_array_equal(price(F, k, 0.0, 0.5, True), [20.0, 0.0, 0.0])
    np.testing.assert_array_equal(price(F, k, 0.5, 0.0, False), [0.0, 0.0, 20.0])
    np.testing.assert_array_equal(vega(F, k, 0.0, 0.5), 0.0)
    np.testing.assert_array_equal(gamma(F, k, 0.5, 0.0), 0.0)


finite_inputs = st.tuples(
    st.floats(1e-2, 1e6),  # forward
    st.floats(-3.0, 3.0),  # ln(K/F)
    st.floats(1e-4, 5.0),  # t, years
    st.floats(1e-3, 5.0),  # vol
    st.booleans(),
)


@given(finite_inputs)
def test_vega_and_gamma_are_non_negative(args: tuple[float, float, float, float, bool]) -> None:
    f, x, t, vol, _ = args
    k = f * math.exp(x)
    assert vega(f, k, t, vol) >= 0.0
    assert gamma(f, k, t, vol) >= 0.0


@given(finite_inputs)
def test_price_within_no_arbitrage_bounds(args: tuple[float, float, float, float, bool]) -> None:
    """max(±(F − K), 0) ≤ price ≤ F for calls, ≤ K for puts (Merton 1973 bounds)."""
    f, x, t, vol, is_call = args
    k = f * math.exp(x)
    p = float(price(f, k, t, vol, is_call))
    intrinsic = max(f - k, 0.0) if is_call else max(k - f, 0.0)
    cap = f if is_call else k
    slack = 4 * np.finfo(float).eps * max(f, k)
    assert intrinsic - slack <= p <= cap + slack
    d = float(delta(f, k, t, vol, is_call))
    assert (0.0 <= d <= 1.0) if is_call else (-1.0 <= d <= 0.0)


def test_a_far_out_of_the_money_price_never_rounds_below_zero() -> None:
    """Both terms subnormal, their difference rounded to -5e-324 (these puts, from the
    implied-vol grid), which the implied-vol solver then refused as a negative price."""
    k = np.array([0.06392786120670757, 0.08847811904208731, 0.10539922456186433,
                  0.1353352832366127, 0.1422740715865136])
    t = np.array([0.01624226944112276, 0.6268720281829262, 1.3713555645961326,
                  0.00014819024670249752, 0.0004208375948161593])
    vol = np.array([0.5621050175310434, 0.07986561400301269, 0.05, 4.2773362677828395,
                    2.4767676044795848])
    assert np.all(price(1.0, k, t, vol, False) >= 0.0)
