"""A surface model's expiry it cannot fit is published from the per-slice fallback (raw
SVI, the same acceptance rule), flagged with that model and the refusal, instead of
being left out; the engine, the codec and the client evaluate it as SVI."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from streamer.client import Surface
from streamer.config import BatchConfig, CalibrationConfig
from streamer.core.models import svi
from streamer.core.models.ssvi import SSVIModel, SSVISlice
from streamer.core.models.ssvi_surface import SSVISurface
from streamer.core.models.svi import SVIParams
from streamer.pipeline import engine as engine_module
from streamer.pipeline.calibrator import ATM_OFF_MARKET, WholeSurface
from streamer.pipeline.engine import Engine
from streamer.pipeline.greeks import surface_of
from streamer.pipeline.snapshot import SliceSnapshot
from streamer.sinks.codec import decode_surface, encode_surface
from tests.pipeline.chain import NOW_NS, SURFACE_TIMES, chain_quotes, expiry_ms, surface_snaps

TIMES = SURFACE_TIMES
LIFTED = 1  # the index of the expiry whose surface slice the scripted model puts off the market


@dataclasses.dataclass(frozen=True)
class _OffMarket(SSVIModel):
    """SSVI whose slice ``lifted`` is replaced by the SSVI slice proper (no level, no
    shift) of half again its ``theta``: within the RMSE limit as a surface, but that
    expiry's ATM is vol points off the quotes."""

    lifted: int = LIFTED

    def slice_params(self, params: SSVISurface, index: int) -> SSVISlice:
        s = params.slice(index)
        if index != self.lifted:
            return s
        return SSVISlice(theta=1.5 * s.theta, rho=s.rho, phi=s.phi / 1.5)


def _snaps(zigzag: float = 0.0) -> list[SliceSnapshot]:
    return surface_snaps(zigzag, broken=LIFTED)


def test_an_expiry_the_surface_model_puts_off_the_market_is_published_as_an_svi_slice() -> None:
    outcome = WholeSurface(_OffMarket(), CalibrationConfig()).calibrate(
        _snaps(), None, float("nan"), {})
    assert sorted(outcome.fits) == [1, 2, 3, 4]  # before: 2 was left out
    fallback = outcome.fits[LIFTED + 1]
    assert isinstance(fallback.params, SVIParams)
    assert fallback.status == "cold"  # a fresh fit: 'fallback' still means kept
    assert fallback.fallback_reason == ATM_OFF_MARKET
    assert fallback.rmse_vol < 0.005
    assert abs(fallback.metrics.atm_vol - 0.55) < 0.005  # where the market is
    assert np.isfinite(fallback.atm_vol_se)  # SVI's own error bars
    others = [outcome.fits[e] for e in (1, 3, 4)]
    assert all(isinstance(f.params, SSVISlice) and f.fallback_reason == "" for f in others)
    assert outcome.refused == {ATM_OFF_MARKET: 1}


def test_the_next_fallback_fit_starts_warm_and_a_refused_one_keeps_the_svi_slice() -> None:
    calibrator = WholeSurface(_OffMarket(), CalibrationConfig())
    first = calibrator.calibrate(_snaps(), None, float("nan"), {})
    again = calibrator.calibrate(_snaps(), first.params, first.rmse_vol, first.fits)
    assert again.fits[LIFTED + 1].status == "warm"
    assert isinstance(again.fits[LIFTED + 1].params, SVIParams)
    # quotes that zigzag 12 vol points: the SVI fit is refused too; the last SVI slice is kept
    broken = calibrator.calibrate(_snaps(zigzag=0.12), first.params, first.rmse_vol,
                                  first.fits)
    kept = broken.fits[LIFTED + 1]
    assert kept.status == "fallback"
    assert kept.params == first.fits[LIFTED + 1].params
    assert kept.fallback_reason == "rmse_too_high"  # the surface model's refusal, named
    assert broken.refused == {"rmse_too_high": 1}


def test_an_expiry_neither_model_fits_is_still_left_out() -> None:
    outcome = WholeSurface(_OffMarket(), CalibrationConfig()).calibrate(
        _snaps(zigzag=0.12), None, float("nan"), {})
    assert sorted(outcome.fits) == [1, 3, 4]


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> tuple[Engine, Any]:
    """One surface of the scripted eSSVI through the engine, on a synthetic chain."""
    monkeypatch.setattr(engine_module, "model_for", lambda name: _OffMarket())
    engine = Engine("deribit", CalibrationConfig(model="ssvi"), BatchConfig())
    for q in chain_quotes((7, 30, 60, 120)):
        engine.on_quote(q)
    (update,) = engine.flush(NOW_NS)
    return engine, update


def test_the_engine_publishes_the_fallback_slice_flagged_and_counts_it(
        published: tuple[Engine, Any]) -> None:
    engine, update = published
    assert update.model == "ssvi"
    flagged = [(s.model, s.fallback_reason) for s in update.slices]
    assert flagged == [("", ""), ("svi", ATM_OFF_MARKET), ("", ""), ("", "")]
    fallback = update.slices[LIFTED]
    assert set(fallback.params) == {"a", "b", "rho", "m", "sigma"}
    assert set(fallback.jw) == {"v", "psi", "p", "c", "v_tilde"}
    assert np.isfinite(update.slices[LIFTED + 1].calendar_margin)  # compared across models
    assert all(np.isfinite(v.atm_vol) for v in update.tenors)
    assert engine.drain_report().fallbacks == {("BTC", ATM_OFF_MARKET): 1}


def test_the_client_and_the_greeks_evaluate_the_fallback_slice_with_svi(
        published: tuple[Engine, Any]) -> None:
    _, update = published
    back = decode_surface(encode_surface(update))
    assert [(s.model, s.fallback_reason, s.params) for s in back.slices] == [
        (s.model, s.fallback_reason, s.params) for s in update.slices]
    surface = Surface(back)
    fallback = surface.slice(expiry_ms(30))
    assert fallback.model == "svi"
    assert fallback.fallback_reason == ATM_OFF_MARKET
    assert fallback.usable
    k = np.linspace(-0.2, 0.2, 9)
    params = svi.SVIParams.from_dict(back.slices[LIFTED].params)
    expected = np.sqrt(svi.total_variance(k, params) / fallback.t)
    np.testing.assert_allclose(fallback.vol_k(k), expected, rtol=1e-12)
    assert abs(fallback.vol_k(np.zeros(1))[0] - back.slices[LIFTED].atm_vol) < 1e-9
    assert surface.slice(expiry_ms(7)).model == "ssvi"
    node = surface_of(back).nodes[LIFTED]
    np.testing.assert_allclose(node.vol_k(k), expected, rtol=1e-12)
