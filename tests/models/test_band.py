"""The bid/ask band objective (Kaiko, arXiv 2207.02989, with a pull toward the centre)."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.core.models.band import MIN_HALF_SPREAD, make_band, residuals

MID, BID, ASK = np.array([0.50]), np.array([0.48]), np.array([0.52])


def test_inside_the_band_only_the_pull_costs() -> None:
    vols = np.linspace(0.48, 0.52, 11)
    r, dr = residuals(vols, make_band(MID, BID, ASK, pull=0.0))
    assert np.all(r == 0.0)
    assert np.all(dr == 0.0)
    r, dr = residuals(vols, make_band(MID, BID, ASK, pull=0.2))
    # uniform pull: in vol points times the slice's median 1/h (here 1/0.02)
    np.testing.assert_allclose(r, 0.2 * (vols - 0.50) / 0.02)
    np.testing.assert_allclose(dr, 0.2 / 0.02)


def test_outside_the_band_the_cost_is_linear_in_half_spreads() -> None:
    half = np.array([0.02, 0.01, 0.05])
    b = make_band(np.full(3, 0.5), 0.5 - half, 0.5 + half, pull=0.0)
    for n_half in (0.5, 1.0, 3.0):
        r_up, dr_up = residuals(0.5 + half + n_half * half, b)
        r_dn, _ = residuals(0.5 - half - n_half * half, b)
        np.testing.assert_allclose(r_up, n_half)
        np.testing.assert_allclose(r_dn, -n_half)
        np.testing.assert_allclose(dr_up, 1.0 / half)


def test_half_spreads_are_floored_and_one_sided_quotes_take_the_median() -> None:
    b = make_band(np.array([0.5, 0.5, 0.6, 0.7]), np.array([0.4999, 0.48, 0.56, np.nan]),
                  np.array([0.5001, 0.52, 0.64, 0.75]), pull=0.0)
    np.testing.assert_allclose(b.band_w, 1.0 / np.array([MIN_HALF_SPREAD, 0.02, 0.04, 0.02]))


def test_the_residual_is_continuous_at_the_band_edges() -> None:
    b = make_band(MID, BID, ASK, pull=0.3)
    for edge in (BID[0], ASK[0]):
        r = residuals(np.array([edge - 1e-12, edge, edge + 1e-12]), b)[0]
        assert np.ptp(r) < 1e-9


def test_the_pull_is_toward_the_centre_of_the_band_in_iv() -> None:
    # The IV of the mid price (0.505) is not the centre of the IV band (0.50).
    b = make_band(np.array([0.505]), BID, ASK)
    assert b.centre[0] == pytest.approx(0.50)


def test_ask_only_quotes_are_upper_bounds_and_missing_bids_no_lower_bound() -> None:
    b = make_band(np.array([np.nan, 0.6, 0.5]), np.array([np.nan, np.nan, 0.49]),
                  np.array([0.9, 0.7, 0.51]), pull=0.5)
    r, _ = residuals(np.array([0.1, 0.1, 0.5]), b)
    assert r[0] == 0.0  # far below an ask-only quote: no cost
    assert r[1] == pytest.approx(b.pull_w[1] * (0.1 - 0.6))  # no bid: only the pull
    r, _ = residuals(np.array([1.0, 0.8, 0.5]), b)
    assert r[0] == pytest.approx(0.1 * b.band_w[0])  # above the ask: its distance, no pull
    assert r[1] == pytest.approx(b.pull_w[1] * 0.2 + 0.1 * b.band_w[1])


def test_without_a_band_it_is_weighted_least_squares_on_mids() -> None:
    b = make_band(np.array([0.5, 0.6]), None, None, np.array([4.0, 1.0]), pull=0.5)
    vols = np.array([0.52, 0.55])
    r, dr = residuals(vols, b)
    np.testing.assert_allclose(r, 1.5 * np.array([2.0, 1.0]) * (vols - [0.5, 0.6]))
    np.testing.assert_allclose(dr, 1.5 * np.array([2.0, 1.0]))


def test_a_margin_moves_both_edges_in_by_its_share_of_the_half_spread() -> None:
    # Aiming inside the band (Kaiko, arXiv 2207.02989, fits to the band's edges): a vol
    # within m half spreads of an edge now costs its distance to the moved edge.
    b = make_band(np.array([0.5, 0.6]), np.array([0.48, np.nan]), np.array([0.52, 0.7]),
                  pull=0.0, margin=0.5)
    np.testing.assert_allclose(b.lower[0], 0.49)
    np.testing.assert_allclose(b.upper, [0.51, 0.7])  # an ask-only quote: its ask
    r, _ = residuals(np.array([0.485, 0.69]), b)
    np.testing.assert_allclose(r, [-0.005 / 0.02, 0.0])
    np.testing.assert_array_equal(make_band(MID, BID, ASK).lower, BID)  # default: none


def test_beyond_the_tail_the_distance_costs_linearly_and_continuously() -> None:
    # Huber (1964): r^2 = z^2 up to c half spreads out, 2 c |z| - c^2 beyond.
    b = make_band(MID, BID, ASK, pull=0.0, tail=0.5)
    z = np.array([0.2, 0.5, 1.0, 3.0, 9.0])
    r, dr = residuals(ASK[0] + z * 0.02, b)
    np.testing.assert_allclose(r * r, np.where(z > 0.5, z - 0.25, z * z))
    r_dn, _ = residuals(BID[0] - z * 0.02, b)
    np.testing.assert_allclose(r_dn, -r)
    eps = 1e-9  # dr matches the residual's own slope, at the tail too
    for vol in ASK[0] + z * 0.02:
        up, down = residuals(np.array([vol + eps]), b)[0], residuals(np.array([vol - eps]), b)[0]
        slope = residuals(np.array([vol]), b)[1]
        np.testing.assert_allclose((up - down) / (2 * eps), slope, rtol=1e-5)
    np.testing.assert_allclose(dr[0], 1.0 / 0.02)


def test_padding_of_stacked_bands_costs_nothing_with_a_tail() -> None:
    # Zero-weight padding has an infinite tail (never 0 * inf = NaN).
    b = make_band(np.array([[0.5, 0.5]]), np.array([[0.48, 0.48]]), np.array([[0.52, 0.52]]),
                  np.array([[1.0, 0.0]]), pull=0.3, tail=0.5)
    r, dr = residuals(np.array([[0.9, 0.9]]), b)
    assert np.isfinite(r).all()
    assert np.isfinite(dr).all()
    assert r[0, 1] == 0.0
    assert dr[0, 1] == 0.0
