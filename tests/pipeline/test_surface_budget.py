"""A surface fit honours the calibration time budget (on an injected clock)."""

from __future__ import annotations

import numpy as np

from streamer.config import CalibrationConfig
from streamer.core.models import heston
from streamer.core.models.heston import HestonModel
from streamer.pipeline.calibrator import WholeSurface
from streamer.pipeline.snapshot import SliceSnapshot

TRUTH = heston.HestonParams(v0=0.36, kappa=2.0, theta=0.49, sigma=1.5, rho=-0.2)


def _snaps() -> list[SliceSnapshot]:
    out = []
    for i, t in enumerate((0.05, 0.2, 0.5, 1.0)):
        k = np.linspace(-0.4, 0.4, 15) * np.sqrt(t)
        iv = heston.implied_vols(k, t, TRUTH) * (1.0 + 0.02 * k)  # a little off the model
        out.append(SliceSnapshot(expiry_ts_ms=i + 1, t=t, forward=1.0, forward_method="parity",
                                 k=k, iv=iv, bid_iv=iv - 0.01, ask_iv=iv + 0.01,
                                 weights=np.ones(k.size)))
    return out


class _Clock:
    """Each reading is ``step`` seconds after the last."""

    def __init__(self, step: float) -> None:
        self.now, self.step, self.reads = 0.0, step, 0

    def __call__(self) -> float:
        self.now += self.step
        self.reads += 1
        return self.now


def test_a_heston_fit_stops_at_the_budget_and_still_publishes_its_best() -> None:
    config = CalibrationConfig(surface_budget_ms=100.0)
    slow = _Clock(0.04)  # the budget runs out after about three evaluations
    budgeted = WholeSurface(HestonModel(), config, budget_clock=slow).calibrate(
        _snaps(), None, float("nan"), {})
    free = WholeSurface(HestonModel(), config, budget_clock=_Clock(0.0)).calibrate(
        _snaps(), None, float("nan"), {})
    assert slow.reads <= 6
    assert len(budgeted.fits) == 4
    assert budgeted.rmse_vol > free.rmse_vol


def test_heston_dense_grids_read_a_spline_within_1e_7_of_the_exact_smile() -> None:
    # Butterfly margins and analytics evaluate hundreds of points a slice; each exact
    # point is a row of the quadrature. The spline they read must not move a published
    # number: vols within 1e-7 and the butterfly margin within 1e-5 of the exact ones.
    from streamer.core.arbitrage import numeric_butterfly_margin

    model = HestonModel()
    for t in (0.002, 0.05, 0.5):
        sd = 0.6 * np.sqrt(t)
        k = np.linspace(-5 * sd, 5 * sd, 603)
        np.testing.assert_allclose(model.vol(k, t, TRUTH), heston.implied_vols(k, t, TRUTH),
                                   rtol=0, atol=1e-7)
        exact = numeric_butterfly_margin(
            lambda x, t=t: heston.implied_vols(x, t, TRUTH) ** 2 * t, -3 * sd, 3 * sd)
        assert abs(model.butterfly_margin(TRUTH, t, -3 * sd, 3 * sd) - exact) < 1e-5
    wide = np.linspace(-3.0, 3.0, 301)  # mostly beyond the spline's range: priced exactly
    far = np.abs(wide) > 1.0  # the spline spans six ATM total-vol widths, about 0.8
    np.testing.assert_allclose(model.vol(wide, 0.05, TRUTH)[far],
                               heston.implied_vols(wide[far], 0.05, TRUTH), rtol=1e-10)
