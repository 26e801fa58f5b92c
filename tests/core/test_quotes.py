"""Quote filters (one reason per rejected quote), the OTM side, and fit weights.

Reference values are hand-computed from the rules in ``streamer.core.quotes``'s
docstrings; intrinsic values and bounds are the undiscounted ones of Black (1976).
``QuoteReject.STALE`` is assigned by ``streamer.pipeline.snapshot`` (it needs quote
timestamps), so here it is only checked that the pure filter never produces it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.implied_vol import implied_vol_with_reason
from streamer.core.quotes import (
    QuoteReject,
    beyond_upper_bound,
    filter_quotes,
    fit_weights,
    otm_mask,
)

F, T = 100.0, 0.5


@pytest.mark.parametrize(
    ("bid", "ask", "k", "t", "is_call", "reason"),
    [
        (4.0, 4.2, 100.0, T, True, QuoteReject.OK),
        (math.inf, 4.2, 100.0, T, True, QuoteReject.NON_FINITE),
        (4.0, 4.2, math.nan, T, True, QuoteReject.NON_FINITE),
        (4.0, 4.2, 100.0, math.nan, True, QuoteReject.NON_FINITE),
        (-0.1, 4.2, 100.0, T, True, QuoteReject.NON_POSITIVE),
        (4.0, -4.2, 100.0, T, True, QuoteReject.NON_POSITIVE),
        (-1.0, 1.0, 100.0, T, True, QuoteReject.NON_POSITIVE),  # mid 0: no divide warning
        (0.0, 0.0, 100.0, T, True, QuoteReject.NO_BID),
        (4.0, 4.2, 0.0, T, True, QuoteReject.NON_POSITIVE),
        (4.0, 4.2, 100.0, 0.0, True, QuoteReject.NON_POSITIVE),
        (0.0, 4.2, 100.0, T, True, QuoteReject.NO_BID),
        (math.nan, 4.2, 100.0, T, True, QuoteReject.NO_BID),
        (4.0, 0.0, 100.0, T, True, QuoteReject.NO_ASK),
        (4.0, math.nan, 100.0, T, True, QuoteReject.NO_ASK),
        (4.3, 4.2, 100.0, T, True, QuoteReject.CROSSED),
        (1.0, 4.0, 100.0, T, True, QuoteReject.TOO_WIDE),  # spread 3 / mid 2.5 = 1.2 > 1
        (1.0, 2.9, 100.0, T, True, QuoteReject.OK),  # spread 1.9 / mid 1.95 < 1
        (19.0, 19.5, 80.0, T, True, QuoteReject.NO_TIME_VALUE),  # mid under intrinsic 20
        (20.0, 20.0, 80.0, T, True, QuoteReject.NO_TIME_VALUE),  # mid at intrinsic
        (1e-7, 1e-7, 200.0, T, True, QuoteReject.NO_TIME_VALUE),  # 1e-9 F < 1e-8 F
        (19.0, 19.5, 120.0, T, False, QuoteReject.NO_TIME_VALUE),  # put intrinsic 20
        (20.5, 21.0, 120.0, T, False, QuoteReject.OK),
    ],
)
def test_each_rule_gives_its_reason(bid: float, ask: float, k: float, t: float, is_call: bool,
                                    reason: QuoteReject) -> None:
    assert QuoteReject(int(filter_quotes(bid, ask, F, k, t, is_call))) is reason


def test_first_failing_rule_wins() -> None:
    # Non-finite strike and no bid: NON_FINITE; negative bid on a crossed market:
    # NON_POSITIVE; no bid on a far too wide market: NO_BID; crossed and below intrinsic:
    # CROSSED.
    codes = filter_quotes(bid=[0.0, -1.0, math.nan, 21.0], ask=[1.0, -2.0, 50.0, 19.0],
                          forward=F, strike=[math.inf, 100.0, 100.0, 80.0], t=T, is_call=True)
    assert codes.tolist() == [QuoteReject.NON_FINITE, QuoteReject.NON_POSITIVE,
                              QuoteReject.NO_BID, QuoteReject.CROSSED]


def test_spread_threshold_is_configurable() -> None:
    codes = filter_quotes([4.0, 4.0], [4.4, 4.6], F, 100.0, T, True, max_rel_spread=0.1)
    assert codes.tolist() == [QuoteReject.OK, QuoteReject.TOO_WIDE]  # 0.095 vs 0.14


def test_filter_broadcasts_and_returns_int8_codes() -> None:
    strikes = np.array([80.0, 100.0, 120.0])[:, None]
    codes = filter_quotes(np.array([1.0, 2.0]), np.array([1.1, 2.2]), F, strikes, T,
                          np.array([False, True]))
    assert codes.shape == (3, 2)
    assert codes.dtype == np.int8


quote_floats = st.floats(min_value=-10.0, max_value=1e3) | st.sampled_from(
    [math.nan, math.inf, -math.inf, 0.0])


@given(quote_floats, quote_floats, st.floats(1.0, 1e3), st.floats(1e-4, 3.0), st.booleans())
def test_every_quote_gets_exactly_one_known_reason_and_never_stale(
        bid: float, ask: float, k: float, t: float, is_call: bool) -> None:
    code = QuoteReject(int(filter_quotes(bid, ask, F, k, t, is_call)))
    assert code is not QuoteReject.STALE
    assert code is not QuoteReject.IV_FAILED  # decided after the IV solve, not here
    if code is QuoteReject.OK:
        mid = 0.5 * (bid + ask)
        intrinsic = max(F - k, 0.0) if is_call else max(k - F, 0.0)
        assert 0.0 < bid <= ask
        assert (ask - bid) / mid <= 1.0
        assert mid - intrinsic > 1e-8 * F


def _rule_by_rule(bid: float, ask: float, k: float, t: float, is_call: bool) -> QuoteReject:
    """The filter's rules as its docstrings state them, one quote, checked in order."""
    mid = 0.5 * (bid + ask)
    intrinsic = max(F - k, 0.0) if is_call else max(k - F, 0.0)
    rules = [(lambda: math.isinf(bid) or math.isinf(ask) or not math.isfinite(k * t),
              QuoteReject.NON_FINITE),
             (lambda: k <= 0 or t <= 0 or bid < 0 or ask < 0, QuoteReject.NON_POSITIVE),
             (lambda: math.isnan(bid) or bid == 0, QuoteReject.NO_BID),
             (lambda: math.isnan(ask) or ask == 0, QuoteReject.NO_ASK),
             (lambda: bid > ask, QuoteReject.CROSSED),
             (lambda: (ask - bid) / mid > 1.0, QuoteReject.TOO_WIDE),
             (lambda: mid - intrinsic <= 1e-8 * F, QuoteReject.NO_TIME_VALUE)]
    return next((reason for failed, reason in rules if failed()), QuoteReject.OK)


@given(st.lists(st.tuples(quote_floats, quote_floats, st.floats(1.0, 1e3),
                          st.floats(1e-4, 3.0), st.booleans()), min_size=1, max_size=20))
def test_the_first_failing_rule_is_the_reason_of_each_quote_of_an_array(
        rows: list[tuple[float, float, float, float, bool]]) -> None:
    bid, ask, k, t, call = (np.array(col) for col in zip(*rows, strict=True))
    codes = filter_quotes(bid, ask, np.full(bid.size, F), k, t, call)
    assert codes.tolist() == [_rule_by_rule(*row) for row in rows]


big_prices = quote_floats | st.floats(1e3, 1.7e308) | st.sampled_from([150.0, 1.7e308])


@given(big_prices, big_prices, st.floats(1.0, 1e3), st.floats(1e-4, 3.0), st.booleans())
def test_a_kept_quotes_mid_has_no_vol_exactly_where_it_is_beyond_the_upper_bound(
        bid: float, ask: float, k: float, t: float, is_call: bool) -> None:
    """What lets the snapshot skip inverting in-the-money mids: once the filters pass,
    the inversion fails only on a mid at or above the forward (call) or strike (put)."""
    if filter_quotes(bid, ask, F, k, t, is_call) != QuoteReject.OK:
        return
    with np.errstate(over="ignore"):
        mid = np.float64(0.5) * (np.float64(ask) + np.float64(bid))
    _, reason = implied_vol_with_reason(mid, F, k, t, is_call)
    assert bool(reason != 0) == bool(beyond_upper_bound(mid, F, k, is_call))


def test_prices_at_or_above_the_forward_or_strike_are_beyond_the_upper_bound() -> None:
    price = np.array([99.9, 100.0, 79.9, 80.0, math.inf, math.nan])
    call = np.array([True, True, False, False, True, False])
    np.testing.assert_array_equal(beyond_upper_bound(price, F, 80.0, call),
                                  [False, True, False, True, True, True])


def test_reject_labels_name_the_reason() -> None:
    assert QuoteReject.TOO_WIDE.label == "too_wide"
    assert QuoteReject.STALE.label == "stale"
    assert len({r.label for r in QuoteReject}) == len(QuoteReject)


def test_otm_mask_picks_calls_at_or_above_and_puts_below_the_forward() -> None:
    k = np.array([80.0, 99.99, 100.0, 100.01, 120.0])
    np.testing.assert_array_equal(otm_mask(k, F, True), [False, False, True, True, True])
    np.testing.assert_array_equal(otm_mask(k, F, False), [True, True, False, False, False])


@given(st.floats(1e-3, 1e6), st.floats(1e-3, 1e6))
def test_exactly_one_side_of_each_strike_is_out_of_the_money(k: float, f: float) -> None:
    assert bool(otm_mask(k, f, True)) != bool(otm_mask(k, f, False))


def test_tighter_vol_spread_gets_more_weight() -> None:
    w = fit_weights(bid_iv=[0.50, 0.49, 0.45], ask_iv=[0.51, 0.53, 0.60], vega=[10.0] * 3)
    assert w[0] > w[1] > w[2]
    # Same vega: weight ratio is the inverse squared half-spread ratio (0.005 vs 0.02).
    assert w[0] / w[1] == pytest.approx((0.02 / 0.005) ** 2, rel=1e-12)


def test_more_vega_gets_more_weight() -> None:
    w = fit_weights(bid_iv=[0.50] * 3, ask_iv=[0.52] * 3, vega=[40.0, 10.0, 0.0])
    assert w[0] > w[1] > w[2] > 0.0
    assert w[0] / w[1] == pytest.approx(2.0, rel=1e-12)  # sqrt of the vega ratio 4


def test_weights_are_normalised_to_mean_one() -> None:
    w = fit_weights([0.4, 0.5, 0.6, 0.7], [0.45, 0.52, 0.61, 0.8], [1.0, 5.0, 3.0, 0.5])
    assert w.mean() == pytest.approx(1.0, rel=1e-14)


def test_spreads_below_the_floor_count_as_the_floor() -> None:
    w = fit_weights([0.5, 0.5], [0.5001, 0.5040], [1.0, 1.0], floor_vol=0.0025)
    assert w[0] == pytest.approx(w[1], rel=1e-12)  # half-spreads 5e-5 and 2e-3 < 2.5e-3


def test_missing_iv_spread_counts_as_the_median() -> None:
    w = fit_weights([0.50, 0.50, 0.50, math.nan], [0.51, 0.52, 0.53, 0.60], [1.0] * 4)
    assert w[3] == pytest.approx(w[1], rel=1e-12)


iv_or_nan = st.floats(0.0, 10.0) | st.just(math.nan)


@given(st.lists(st.tuples(iv_or_nan, iv_or_nan, st.floats(0.0, 1e6) | st.just(math.nan)),
                min_size=1, max_size=40))
def test_weights_are_finite_and_positive(rows: list[tuple[float, float, float]]) -> None:
    bid, ask, v = (np.array(col) for col in zip(*rows, strict=True))
    w = fit_weights(bid, ask, v)
    assert w.shape == bid.shape
    assert np.all(np.isfinite(w))
    assert np.all(w > 0.0)
