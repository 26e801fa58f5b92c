"""A surface model's fit is judged expiry by expiry: one expiry it cannot fit is refused
alone (kept at its last good slice, or left out) while the rest publish."""

from __future__ import annotations

import numpy as np

from streamer.config import CalibrationConfig
from streamer.core.models.ssvi import SSVIModel
from streamer.pipeline.calibrator import WholeSurface
from streamer.pipeline.snapshot import SliceSnapshot
from tests.pipeline.chain import SURFACE_TIMES, surface_snaps

TIMES = SURFACE_TIMES
BROKEN = 2  # this expiry's quotes zigzag 12 vol points: no smooth smile fits them


def _snaps(zigzag: float = 0.12) -> list[SliceSnapshot]:
    return surface_snaps(zigzag, broken=BROKEN)


def test_an_unfittable_expiry_is_refused_alone_on_a_cold_start() -> None:
    calibrator = WholeSurface(SSVIModel(), CalibrationConfig())
    outcome = calibrator.calibrate(_snaps(), None, float("nan"), {})
    # the surface-wide RMSE is above max_rmse_vol (0.05): judged whole, nothing would be
    # published; accepted in part, the acceptance limit stays where it was (none yet)
    assert np.isnan(outcome.rmse_vol)
    assert sorted(outcome.fits) == [1, 2, 4]
    assert all(f.status == "cold" and f.rmse_vol < 0.025 for f in outcome.fits.values())
    assert outcome.fallback_reason == "rmse_too_high"
    assert outcome.params is not None


def test_an_unfittable_expiry_keeps_its_last_good_slice_when_it_has_one() -> None:
    calibrator = WholeSurface(SSVIModel(), CalibrationConfig())
    good = calibrator.calibrate(_snaps(zigzag=0.0), None, float("nan"), {})
    assert good.fallback_reason is None
    assert len(good.fits) == 4
    outcome = calibrator.calibrate(_snaps(), good.params, good.rmse_vol, good.fits)
    assert outcome.fits[BROKEN + 1].status == "fallback"
    assert outcome.fits[BROKEN + 1].params == good.fits[BROKEN + 1].params
    assert [outcome.fits[e].status for e in (1, 2, 4)] != ["fallback"] * 3
    assert outcome.fallback_reason == "rmse_too_high"


def test_a_surface_no_expiry_of_which_fits_is_refused_whole() -> None:
    snaps = [SliceSnapshot(expiry_ts_ms=s.expiry_ts_ms, t=s.t, forward=1.0,
                           forward_method="parity", k=s.k,
                           iv=s.iv + 0.12 * (-1.0) ** np.arange(s.k.size),
                           bid_iv=s.bid_iv, ask_iv=s.ask_iv, weights=s.weights)
             for s in _snaps(zigzag=0.0)]
    outcome = WholeSurface(SSVIModel(), CalibrationConfig()).calibrate(
        snaps, None, float("nan"), {})
    assert outcome.fits == {}
    assert outcome.fallback_reason == "rmse_too_high"


def test_a_surface_model_leaves_out_the_expiries_under_its_own_quote_minimum() -> None:
    """calibration.min_quotes is 5 (SVI's parameter count); Heston's one parameter set
    takes expiries of 6 quotes or more: a 5-quote expiry hours away is not fitted into it."""
    import dataclasses

    from streamer.core.models.heston import HestonModel

    seen: list[int] = []

    @dataclasses.dataclass(frozen=True)
    class Recording(SSVIModel):
        reduced_slices: bool = False
        min_slice_quotes: int = HestonModel.min_slice_quotes

        def calibrate_surface(self, k, iv, t, weights, previous, **kw):  # type: ignore[no-untyped-def]
            seen.extend(kk.size for kk in k)
            return super().calibrate_surface(k, iv, t, weights, previous, **kw)

    snaps = _snaps(zigzag=0.0)
    short = snaps[0]
    snaps[0] = SliceSnapshot(expiry_ts_ms=short.expiry_ts_ms, t=short.t, forward=1.0,
                             forward_method="parity", k=short.k[5:10], iv=short.iv[5:10],
                             bid_iv=short.bid_iv[5:10], ask_iv=short.ask_iv[5:10],
                             weights=short.weights[5:10])
    assert CalibrationConfig().min_quotes == 5
    outcome = WholeSurface(Recording(), CalibrationConfig()).calibrate(
        snaps, None, float("nan"), {})
    assert seen == [15, 15, 15]
    assert sorted(outcome.fits) == [2, 3, 4]
