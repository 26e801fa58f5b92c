"""Constant-maturity views: the interpolation rule and the delta-vol identities."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.core.models import svi
from streamer.core.smile import smile_metrics
from streamer.core.tenors import forward_at, tenor_view, total_variance_at

P1 = svi.SVIParams(a=0.004, b=0.05, rho=-0.3, m=0.0, sigma=0.1)
P2 = svi.SVIParams(a=0.012, b=0.09, rho=-0.25, m=0.02, sigma=0.15)
TS = [10 / 365, 40 / 365]
SLICES = [lambda k: svi.total_variance(k, P1), lambda k: svi.total_variance(k, P2)]
K = np.linspace(-0.5, 0.5, 11)


#: every test on both paths of the SVI smile metrics (the C kernel, numpy)
pytestmark = pytest.mark.usefixtures("svi_metrics_path")


def test_linear_in_total_variance_between_expiries() -> None:
    t = 25 / 365
    w = total_variance_at(K, t, TS, SLICES)
    expected = 0.5 * (svi.total_variance(K, P1) + svi.total_variance(K, P2))
    np.testing.assert_allclose(w, expected, rtol=1e-14)


def test_on_an_expiry_it_is_the_slice_and_outside_the_documented_rule() -> None:
    np.testing.assert_array_equal(total_variance_at(K, TS[1], TS, SLICES),
                                  svi.total_variance(K, P2))
    np.testing.assert_allclose(total_variance_at(K, TS[0] / 2, TS, SLICES),
                               svi.total_variance(K, P1) / 2, rtol=1e-14)
    t = TS[1] + 0.1
    atm_rate = float(svi.total_variance(np.zeros(1), P2)[0]) / TS[1]
    np.testing.assert_allclose(total_variance_at(K, t, TS, SLICES),
                               svi.total_variance(K, P2) + 0.1 * atm_rate, rtol=1e-14)


def test_forward_log_linear() -> None:
    assert forward_at(25 / 365, TS, [100.0, 104.0]) == pytest.approx(np.sqrt(100 * 104))
    assert forward_at(TS[1], TS, [100.0, 104.0]) == pytest.approx(104.0, rel=1e-15)


def test_view_on_an_expiry_matches_the_slice_metrics() -> None:
    view = tenor_view(40.0, TS[1], TS[1], TS, [100.0, 104.0], SLICES)
    m = smile_metrics(lambda k: np.sqrt(svi.total_variance(k, P2) / TS[1]), TS[1])
    assert view.atm_vol == m.atm_vol
    assert view.rr25 == pytest.approx(m.rr25, abs=1e-14)
    assert view.bf10 == pytest.approx(m.bf10, abs=1e-14)
    assert not view.extrapolated


def test_risk_reversals_and_butterflies_are_the_delta_vols_exactly() -> None:
    view = tenor_view(25.0, 25 / 365, 25 / 365, TS, [100.0, 104.0], SLICES)
    d = view.delta_vols
    assert list(d) == ["10P", "25P", "ATM", "25C", "10C"]
    assert view.rr25 == d["25C"] - d["25P"]
    assert view.rr10 == d["10C"] - d["10P"]
    assert view.bf25 == 0.5 * (d["25C"] + d["25P"]) - d["ATM"]
    assert d["25P"] > d["ATM"]  # negative rho: puts richer


def test_outside_the_expiries_is_flagged() -> None:
    assert tenor_view(1.0, 1 / 365, 1 / 365, TS, [100.0, 104.0], SLICES).extrapolated
    assert tenor_view(90.0, 90 / 365, 90 / 365, TS, [100.0, 104.0], SLICES).extrapolated


def test_all_tenors_in_one_pass_read_the_interpolation_rule_tenor_by_tenor() -> None:
    """Every case of the rule at once (before the first expiry, on one, between, after
    the last), each view equal to the smile metrics of ``total_variance_at`` at its
    tenor, whether the slices are called one by one or evaluated stacked (SVI)."""
    from streamer.core.models.svi import SVIModel
    from streamer.core.tenors import tenor_views

    days = [3.0, 10.0, 25.0, 40.0, 90.0]
    t = [d / 365 for d in days]
    t_cal = [1.02 * x for x in t]  # a variance clock: vols read on the calendar
    forwards = [100.0, 104.0]
    stacked = SVIModel().variance_rows([P1, P2])
    for rows in (None, stacked):
        views = tenor_views(days, t, t_cal, TS, forwards, SLICES, rows)
        for view, t_i, tc in zip(views, t, t_cal, strict=True):
            def vol(k: np.ndarray, t_i: float = t_i, tc: float = tc) -> np.ndarray:
                return np.sqrt(total_variance_at(k, t_i, TS, SLICES) / tc)
            m = smile_metrics(vol, tc)
            got = [view.atm_vol, view.atm_skew, view.delta_vols["25C"], view.delta_vols["10P"]]
            want = [m.atm_vol, m.atm_skew, m.atm_vol + m.bf25 + 0.5 * m.rr25,
                    m.atm_vol + m.bf10 - 0.5 * m.rr10]
            np.testing.assert_allclose(got, want, rtol=1e-10)  # skew: differences over 2e-4
    assert [v.extrapolated for v in views] == [True, False, False, False, True]


def test_the_plan_reads_each_case_of_the_rule() -> None:
    """Before the first expiry, on one, between, on the last, after it, and a NaN time
    (sorted last, as numpy's searchsorted does): each row's blend of the two slices."""
    from streamer.core.tenors import _plan

    d = 1 / 365
    t = [5 * d, 10 * d, 25 * d, 40 * d, 90 * d, float("nan")]
    plan = _plan(t, TS, SLICES)
    assert plan.lo.tolist() == [0, 0, 0, 1, 1, 1]
    assert plan.hi.tolist() == [0, 0, 1, 1, 1, 1]
    assert plan.lam.tolist() == [0.0, 0.0, (25 * d - TS[0]) / (TS[1] - TS[0]), 0.0, 0.0, 0.0]
    assert plan.scale.tolist() == [5 * d / TS[0], 1.0, 1.0, 1.0, 1.0, 1.0]
    w_last = float(svi.total_variance(np.zeros(1), P2)[0])
    assert plan.extra[:5].tolist() == [0.0, 0.0, 0.0, 0.0, (90 * d - TS[1]) * w_last / TS[1]]
    assert np.isnan(plan.extra[5])


def test_stacked_rows_need_the_last_slice_alone() -> None:
    """With ``rows``, only the last slice is called (past the last expiry): the views
    are the same, bit for bit, given it alone."""
    from streamer.core.models.svi import SVIModel
    from streamer.core.tenors import tenor_views

    days = [3.0, 10.0, 25.0, 40.0, 90.0]
    t = [d / 365 for d in days]
    stacked = SVIModel().variance_rows([P1, P2])
    every = tenor_views(days, t, t, TS, [100.0, 104.0], SLICES, stacked)
    last = tenor_views(days, t, t, TS, [100.0, 104.0], SLICES[-1:], stacked)
    assert every == last
