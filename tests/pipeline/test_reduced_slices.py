"""Slices with too few quotes for their model: a reduced 3-parameter fit, or a reason."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.config import CalibrationConfig
from streamer.core.models import svi
from streamer.core.models.sabr import SABRModel
from streamer.core.models.svi import SVIModel
from streamer.pipeline.calibrator import PerExpiry
from streamer.pipeline.snapshot import SliceSnapshot

T = 0.25 / 365  # six hours
TRUTH = svi.SVIParams(a=1e-4, b=0.01, rho=-0.2, m=0.0, sigma=0.02)


def _snap(n: int) -> SliceSnapshot:
    k = np.linspace(-0.03, 0.03, n)
    iv = np.sqrt(svi.total_variance(k, TRUTH) / T)
    return SliceSnapshot(expiry_ts_ms=1, t=T, forward=100.0, forward_method="parity", k=k,
                         iv=iv, bid_iv=iv - 0.01, ask_iv=iv + 0.01, weights=np.ones(n))


@pytest.mark.parametrize("model", [SVIModel(), SABRModel()])
@pytest.mark.parametrize("n", [4, 5])
def test_four_or_five_quotes_publish_a_reduced_fit(model: SVIModel | SABRModel, n: int
                                                    ) -> None:
    out = PerExpiry(model, CalibrationConfig()).calibrate(_snap(n), None)
    assert out.fit is not None
    assert out.fallback_reason is None
    assert out.fit.status == "cold"
    assert out.fit.n_quotes == n
    atm_truth = float(np.sqrt(svi.total_variance(0.0, TRUTH) / T))
    assert out.fit.metrics.atm_vol == pytest.approx(atm_truth, abs=0.01)


def test_fewer_than_the_reduced_minimum_is_not_fitted_and_says_why() -> None:
    out = PerExpiry(SVIModel(), CalibrationConfig()).calibrate(_snap(3), None)
    assert out.fit is None
    assert out.fallback_reason == "too_few_quotes"


def test_five_quotes_fit_the_full_svi_smile() -> None:
    """SVI's five parameters from five quotes (its priors hold the fit on a short span):
    the smile the quotes come from, where the 3-parameter reduced fit cannot follow it
    (on the real hourly chains, the expiries under a day: 1.53 -> 1.14 vol points from
    Deribit's marks)."""
    snap = _snap(5)
    full = PerExpiry(SVIModel(), CalibrationConfig()).calibrate(snap, None)
    reduced = PerExpiry(SVIModel(), CalibrationConfig(min_quotes=6)).calibrate(snap, None)
    assert full.fit is not None
    assert reduced.fit is not None
    assert full.fit.rmse_vol < 1e-4
    assert full.fit.rmse_vol < 0.1 * reduced.fit.rmse_vol


def test_the_reduced_minimum_is_configurable() -> None:
    config = CalibrationConfig(min_quotes=6, min_quotes_reduced=6)
    out = PerExpiry(SVIModel(), config).calibrate(_snap(5), None)
    assert out.fit is None
    assert out.fallback_reason == "too_few_quotes"
