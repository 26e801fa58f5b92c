"""A fit that stopped at its iteration cap is published as such, not as a converged fit."""

from __future__ import annotations

import numpy as np

from streamer.config import CalibrationConfig
from streamer.core.models import svi
from streamer.core.models.svi import SVIModel
from streamer.pipeline.calibrator import PerExpiry
from streamer.pipeline.snapshot import SliceSnapshot

TRUTH = svi.SVIParams(a=0.02, b=0.12, rho=-0.35, m=0.03, sigma=0.18)
T = 0.4


def _snap(wiggle: float) -> SliceSnapshot:
    k = np.linspace(-0.8, 0.6, 31)
    iv = svi.implied_vol(k, T, TRUTH) + wiggle * np.sin(9 * k)
    return SliceSnapshot(expiry_ts_ms=1, t=T, forward=100.0, forward_method="parity", k=k,
                         iv=iv, bid_iv=iv - 0.005, ask_iv=iv + 0.005, weights=np.ones(k.size))


def test_a_slice_fit_cut_off_at_max_iter_publishes_fit_status_max_iter() -> None:
    snap = _snap(0.01)
    cut = svi.calibrate(snap.k, snap.iv, T, bid_iv=snap.bid_iv, ask_iv=snap.ask_iv, max_iter=2)
    assert cut.status == "max_iter"
    out = PerExpiry(SVIModel(), CalibrationConfig()).calibrate(snap, None, cut)
    assert out.fit is not None
    assert out.fit.status == "cold"
    assert out.fit.fit_status == "max_iter"


def test_a_converged_fit_says_so() -> None:
    out = PerExpiry(SVIModel(), CalibrationConfig()).calibrate(_snap(0.0), None)
    assert out.fit is not None
    assert out.fit.fit_status == "converged"
