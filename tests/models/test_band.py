"""The bid/ask band objective (Kaiko, arXiv 2207.02989, with a pull toward the mid)."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.core.models.band import make_band, residuals

MID, BID, ASK = np.array([0.50]), np.array([0.48]), np.array([0.53])


def test_inside_the_band_only_the_pull_costs() -> None:
    b = make_band(MID, BID, ASK)
    vols = np.linspace(0.48, 0.53, 11)
    r, dr = residuals(vols, b, pull=0.0)
    assert np.all(r == 0.0)
    assert np.all(dr == 0.0)
    r, dr = residuals(vols, b, pull=0.2)
    np.testing.assert_allclose(r, 0.2 * (vols - 0.50))
    np.testing.assert_allclose(dr, 0.2)


def test_outside_the_band_the_cost_is_linear_in_half_spreads() -> None:
    half = np.array([0.02, 0.01])  # weights 1/h^2: residuals in half spreads
    b = make_band(np.array([0.5, 0.5]), 0.5 - half, 0.5 + half, 1.0 / half**2)
    for n_half in (0.5, 1.0, 3.0):
        above = 0.5 + half + n_half * half
        below = 0.5 - half - n_half * half
        r_up, dr_up = residuals(above, b, pull=0.0)
        r_dn, _ = residuals(below, b, pull=0.0)
        np.testing.assert_allclose(r_up, n_half)
        np.testing.assert_allclose(r_dn, -n_half)
        np.testing.assert_allclose(dr_up, 1.0 / half)


def test_the_residual_is_continuous_at_the_band_edges() -> None:
    b = make_band(MID, BID, ASK)
    for edge in (BID[0], ASK[0]):
        r = residuals(np.array([edge - 1e-12, edge, edge + 1e-12]), b, pull=0.3)[0]
        assert np.ptp(r) < 1e-11


def test_ask_only_quotes_are_upper_bounds_and_missing_bids_no_lower_bound() -> None:
    b = make_band(np.array([np.nan, 0.6]), np.array([np.nan, np.nan]), np.array([0.9, 0.7]))
    r, _ = residuals(np.array([0.1, 0.1]), b, pull=0.3)
    assert r[0] == 0.0  # far below an ask-only quote: no cost
    assert r[1] == pytest.approx(0.3 * (0.1 - 0.6))  # no bid: only the pull
    r, _ = residuals(np.array([1.0, 0.8]), b, pull=0.3)
    assert r[0] == pytest.approx(0.1)  # above the ask: its distance, no pull
    assert r[1] == pytest.approx(0.3 * 0.2 + 0.1)


def test_without_a_band_it_is_least_squares_on_mids() -> None:
    b = make_band(np.array([0.5, 0.6]), None, None, np.array([4.0, 1.0]))
    vols = np.array([0.52, 0.55])
    r, dr = residuals(vols, b, pull=0.5)
    np.testing.assert_allclose(r, 1.5 * np.array([2.0, 1.0]) * (vols - [0.5, 0.6]))
    np.testing.assert_allclose(dr, 1.5 * np.array([2.0, 1.0]))


def test_a_band_not_around_its_mid_is_widened_to_contain_it() -> None:
    b = make_band(np.array([0.5]), np.array([0.51]), np.array([0.49]))
    assert b.lower[0] == 0.5
    assert b.upper[0] == 0.5
