"""A surface fit honours the calibration time budget (on an injected clock)."""

from __future__ import annotations

import numpy as np

from streamer.config import CalibrationConfig
from streamer.core.models import heston
from streamer.pipeline.calibrator import SurfaceCalibrator
from streamer.pipeline.models import HestonModel
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
    budgeted = SurfaceCalibrator(HestonModel(), config, clock=slow).calibrate(
        _snaps(), None, float("nan"), {})
    free = SurfaceCalibrator(HestonModel(), config, clock=_Clock(0.0)).calibrate(
        _snaps(), None, float("nan"), {})
    assert slow.reads <= 6
    assert len(budgeted.fits) == 4
    assert budgeted.rmse_vol > free.rmse_vol
