"""A batch's fits tried are padded and their smiles stacked once: the ATM checks and the
published state share them (one smile-metrics pass where the fits tried are those
published), and what is published is what a fresh pass over the same fits gives."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from streamer.config import CalibrationConfig
from streamer.core.models import svi
from streamer.core.models.svi import SVIModel
from streamer.pipeline import calibrator
from streamer.pipeline.calibrator import PerExpiry, _Published
from streamer.pipeline.snapshot import SliceSnapshot


def _chain() -> list[SliceSnapshot]:
    snaps = []
    for i, t in enumerate([3 / 365, 20 / 365, 90 / 365]):
        smile = svi.SVIParams(a=0.01 * t * 40, b=0.05 + 0.02 * i, rho=-0.3, m=0.0,
                              sigma=0.1 + 0.05 * i)
        k = np.linspace(-0.3 - 0.1 * i, 0.25 + 0.1 * i, 14 + 3 * i)
        iv = np.sqrt(svi.total_variance(k, smile) / t)
        snaps.append(SliceSnapshot(expiry_ts_ms=i + 1, t=t, forward=100.0,
                                   forward_method="parity", k=k, iv=iv, bid_iv=iv - 0.004,
                                   ask_iv=iv + 0.006, weights=np.ones(k.size),
                                   mark_iv=iv + 0.001))
    return snaps


def test_the_metrics_of_a_batch_are_taken_once_and_publish_as_a_fresh_pass(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = SVIModel()
    cal = PerExpiry(model, CalibrationConfig())
    snaps = _chain()
    fits = [model.calibrate(s.k, s.iv, s.t, s.weights, None, bid_iv=s.bid_iv, ask_iv=s.ask_iv)
            for s in snaps]
    passes: list[int] = []
    metrics_rows = calibrator.smile_metrics_rows

    def counted(*args: object) -> object:
        passes.append(1)
        return metrics_rows(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(calibrator, "smile_metrics_rows", counted)
    outcomes = cal.calibrate_many([(s, None, f) for s, f in zip(snaps, fits, strict=True)])
    assert len(passes) == 1
    published = [o.fit for o in outcomes]
    assert all(p is not None for p in published)
    fresh = cal.slice_fits([_Published(s, f.params, f.rmse_vol, "cold", fit_status=f.status)
                            for s, f in zip(snaps, fits, strict=True)])
    assert len(passes) == 2  # nothing made to reuse: a pass of its own
    assert msgspec.json.encode(published) == msgspec.json.encode(fresh)
    atms = [m.atm_vol for m in (p.metrics for p in fresh)]
    rows = model.vol_rows([f.params for f in fits], [s.t for s in snaps])
    assert atms == rows(np.zeros((len(snaps), 1)))[:, 0].tolist()  # the ATM checks' vols


def test_smiles_of_other_fits_are_made_again() -> None:
    cal = PerExpiry(SVIModel(), CalibrationConfig())
    a = svi.SVIParams(a=0.01, b=0.1, rho=-0.3, m=0.0, sigma=0.1)
    b = svi.SVIParams(a=0.01, b=0.1, rho=-0.3, m=0.0, sigma=0.1)
    made = calibrator._Smiles(cal, [a], [0.1])
    assert calibrator._Smiles.of(cal, [a], [0.1], made) is made
    assert calibrator._Smiles.of(cal, [b], [0.1], made) is not made  # equal, not the same
    assert calibrator._Smiles.of(cal, [a], [0.2], made) is not made
    assert calibrator._Smiles.of(cal, [a, a], [0.1, 0.1], made) is not made
