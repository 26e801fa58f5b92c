"""The ssvi model's surface: natural-SVI slices (SSVI with a level and a shift) fitted
under calendar constraints."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.core.arbitrage import calendar_free
from streamer.core.models import ssvi, ssvi_surface, svi
from streamer.core.models.fit import Fit

T = (0.02, 0.08, 0.25, 0.6)
# One smile shape scaled in t (so free of calendar arbitrage), its vertex off the money
# and its minimum level negative: raw SVI, no SSVI slice.
SHAPE = svi.SVIParams(a=-0.008, b=0.1, rho=-0.2, m=0.08, sigma=0.15)


def _truth(t: float) -> svi.SVIParams:
    s = t / 0.25
    return svi.SVIParams(a=SHAPE.a * s, b=SHAPE.b * s, rho=SHAPE.rho, m=SHAPE.m,
                         sigma=SHAPE.sigma)


def _market() -> tuple[list[np.ndarray], list[np.ndarray]]:
    ks = [np.linspace(-0.6, 0.5, 25) * min(1.0, np.sqrt(t / 0.25)) for t in T]
    ivs = [np.sqrt(svi.total_variance(k, _truth(t)) / t) for k, t in zip(ks, T, strict=True)]
    return ks, ivs


def test_a_natural_svi_slice_is_the_raw_svi_smile_it_converts_to() -> None:
    k = np.linspace(-2.0, 2.0, 81)
    s = ssvi.SSVISlice.from_raw_svi(SHAPE.a, SHAPE.b, SHAPE.rho, SHAPE.m, SHAPE.sigma)
    np.testing.assert_allclose(ssvi.slice_total_variance(k, s), svi.total_variance(k, SHAPE),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(s.raw_svi(), [SHAPE.a, SHAPE.b, SHAPE.rho, SHAPE.m,
                                             SHAPE.sigma], rtol=1e-12)


def test_a_published_three_parameter_slice_reads_back_with_no_level_or_shift() -> None:
    s = ssvi.SSVIModel().from_dict({"theta": 0.01, "rho": -0.3, "phi": 2.0})
    assert (s.delta, s.mu) == (0.0, 0.0)
    back = ssvi.SSVIModel().from_dict(s.as_dict())
    assert back == s


def test_smiles_no_ssvi_slice_can_follow_are_fitted_exactly() -> None:
    ks, ivs = _market()
    fit = ssvi.SSVIModel().calibrate_surface(ks, ivs, T, [np.ones_like(k) for k in ks], None)
    assert fit.ok
    assert fit.rmse_vol < 1e-4
    # eSSVI's three parameters an expiry cannot (the reason for the natural slices)
    assert ssvi.calibrate(ks, ivs, T).rmse_vol > 0.003


def _crossed_market() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The last expiry's quotes dip below the one before's total variance in both wings."""
    ks, ivs = _market()
    low = [v.copy() for v in ivs]
    before = svi.total_variance(ks[3], _truth(T[2]))
    low[3] = np.sqrt(before * (1.2 - 1.5 * ks[3] ** 2) / T[3])
    assert np.min(low[3] ** 2 * T[3] - before) < -0.01  # the premise
    return ks, low


def _assert_calendar_free(fit: Fit[ssvi_surface.SSVISurface]) -> None:
    k = np.linspace(-0.9, 0.75, 400)
    w = np.array([ssvi.slice_total_variance(k, s) for s in fit.params.slices])
    assert calendar_free(w, tol=1e-12).all()


@pytest.mark.parametrize("calls", [0, 25])
def test_a_refit_stopped_by_its_budget_ends_calendar_free_at_its_best_point(calls: int) -> None:
    ks, low = _crossed_market()
    seen: list[int] = []

    def stop() -> bool:
        seen.append(1)
        return len(seen) > calls

    fit = ssvi_surface.calibrate(ks, low, T, should_stop=stop)
    assert (fit.status, fit.message) == ("max_iter", "stopped")
    _assert_calendar_free(fit)
    full = ssvi_surface.calibrate(ks, low, T)
    assert full.rmse_vol <= fit.rmse_vol + 1e-12


def test_quotes_with_calendar_arbitrage_give_a_calendar_free_surface() -> None:
    ks, low = _crossed_market()
    fit = ssvi_surface.calibrate(ks, low, T)
    _assert_calendar_free(fit)
    up = [s.raw_svi()[1] * (1 + s.rho) for s in fit.params.slices]
    down = [s.raw_svi()[1] * (1 - s.rho) for s in fit.params.slices]
    # an ulp of give: the slopes are read back through raw_svi()'s conversion, and the
    # repair may leave two consecutive slopes equal in its own parameters
    assert np.all(np.diff(up) >= -1e-15)
    assert np.all(np.diff(down) >= -1e-15)


def test_the_repair_raises_a_crossing_slice_to_its_predecessor_and_leaves_the_rest() -> None:
    # local variables: a, right slope, left slope, m, ln sigma
    z = np.array([[0.010, 0.30, 0.40, 0.0, np.log(0.1)],
                  [0.012, 0.20, 0.50, 0.1, np.log(0.2)],   # right wing below the first
                  [0.030, 0.60, 0.70, 0.0, np.log(0.3)]])
    grid = ssvi_surface.calendar_grid(np.full(3, -0.5), np.full(3, 0.5), 401)
    fixed = ssvi_surface.repair(z, grid)
    w = ssvi_surface._w(fixed, np.tile(grid[0], (3, 1)))
    assert calendar_free(w, tol=1e-15).all()
    assert fixed[1, 1] == pytest.approx(0.30)  # its right slope raised to the first's
    np.testing.assert_array_equal(fixed[0], z[0])
    np.testing.assert_array_equal(fixed[2], z[2])  # already above: untouched
    again = ssvi_surface.repair(fixed, grid)
    np.testing.assert_array_equal(again, fixed)


def test_the_coloured_jacobian_is_the_plain_finite_difference_one() -> None:
    ks, ivs = _market()
    rng = np.random.default_rng(3)
    noisy = [v + rng.normal(0, 0.003, v.size) for v in ivs]
    ks_, vs, sides, _ = ssvi_surface._clean(ks, noisy, None, None, None)
    tt = np.asarray(T)
    problem = ssvi_surface._problem(ks_, vs, tt, sides)
    x = ssvi_surface._free(ssvi_surface._seeds(ks_, vs, tt, sides, [np.ones(4)] * 4)
                           ).ravel()
    jac = problem.jacobian(x)
    plain = np.empty_like(jac)
    r0 = problem.residuals(x)
    for j in range(x.size):
        step = np.zeros(x.size)
        step[j] = 1e-7 * max(1.0, abs(x[j]))
        plain[:, j] = (problem.residuals(x + step) - r0) / step[j]
    np.testing.assert_allclose(jac, plain, rtol=1e-3, atol=1e-3 * np.abs(plain).max())
