"""The calibrator's one acceptance rule and its fallbacks, on scripted fits: warm from the
last good fit, within ``rmse_jump_factor`` of its RMSE; cold when warm is refused; the
last good fit kept when cold is refused too; nothing published without one."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import numpy as np
import pytest

from streamer.config import CalibrationConfig
from streamer.core.models import svi
from streamer.core.models.fit import Fit
from streamer.core.models.ssvi import SSVIModel
from streamer.core.models.svi import SVIModel
from streamer.pipeline import calibrator
from streamer.pipeline.calibrator import Calibrator, PerExpiry, SliceFit, WholeSurface
from streamer.pipeline.snapshot import SliceSnapshot

T = 0.1
SMILE = svi.SVIParams(a=0.004, b=0.04, rho=-0.3, m=0.0, sigma=0.1)
CONFIG = CalibrationConfig(max_rmse_vol=0.05, rmse_jump_factor=4.0)
NAN = float("nan")


def _snap(shift: float = 0.0, expiry: int = 1, t: float = T) -> SliceSnapshot:
    """The smile SMILE at T, its vols the same at every ``t`` (calendar-free)."""
    k = np.linspace(-0.3, 0.3, 15)
    iv = np.sqrt(svi.total_variance(k, SMILE) / T) + shift
    return SliceSnapshot(expiry_ts_ms=expiry, t=t, forward=100.0, forward_method="parity",
                         k=k, iv=iv, bid_iv=iv - 0.005, ask_iv=iv + 0.005,
                         weights=np.ones(k.size))


@dataclasses.dataclass(frozen=True)
class _Scripted(SVIModel):
    """SVI whose fits are the true smile with the scripted RMSEs, in turn (NaN: a failed
    fit); records the parameters each fit started from (None: cold)."""

    rmses: list[float] = dataclasses.field(default_factory=list)
    starts: list[Any] = dataclasses.field(default_factory=list)

    def calibrate(self, k: Any, iv: Any, t: float, weights: Any, previous: Any | None,
                  **kw: Any) -> Fit[Any]:
        self.starts.append(previous)
        rmse = self.rmses.pop(0)
        if np.isnan(rmse):
            return Fit.failed(SMILE, "scripted", warm=previous is not None)
        return Fit(params=SMILE, rmse_vol=rmse, iterations=1, status="converged")


def _last_good(rmse: float) -> SliceFit:
    fit = PerExpiry(_Scripted(rmses=[rmse]), CONFIG).calibrate(_snap(), None).fit
    assert fit is not None
    assert fit.rmse_vol == rmse
    return fit


@pytest.mark.parametrize(("ok", "rmse", "previous_rmse", "accepted"), [
    (True, 0.049, NAN, True),     # under max_rmse_vol
    (True, 0.051, NAN, False),    # over it, and no last good fit to raise the limit
    (True, 0.079, 0.02, True),    # within rmse_jump_factor (4) of the last good RMSE
    (True, 0.081, 0.02, False),   # a jump beyond it
    (True, 0.04, 0.001, True),    # a good last fit never lowers the limit
    (False, 0.01, NAN, False),    # a failed fit, whatever its RMSE
    (True, NAN, NAN, False),
])
def test_the_acceptance_rule(ok: bool, rmse: float, previous_rmse: float,
                             accepted: bool) -> None:
    assert Calibrator(SVIModel(), CONFIG).acceptable(ok, rmse, previous_rmse) is accepted


def test_a_warm_fit_within_the_jump_limit_is_published_warm() -> None:
    previous = _last_good(0.02)
    model = _Scripted(rmses=[0.07])
    out = PerExpiry(model, CONFIG).calibrate(_snap(), previous)
    assert out.fallback_reason is None
    assert out.fit is not None
    assert out.fit.status == "warm"
    assert out.fit.rmse_vol == 0.07
    assert model.starts == [previous.params]  # no cold retry


def test_a_warm_fit_beyond_the_jump_limit_is_refitted_cold() -> None:
    previous = _last_good(0.02)
    model = _Scripted(rmses=[0.09, 0.03])
    out = PerExpiry(model, CONFIG).calibrate(_snap(), previous)
    assert model.starts == [previous.params, None]
    assert out.fallback_reason is None
    assert out.fit is not None
    assert out.fit.status == "cold"
    assert out.fit.rmse_vol == 0.03


def test_a_kept_fit_does_not_raise_the_limit() -> None:
    kept = msgspec.structs.replace(_last_good(0.02), status="fallback")
    out = PerExpiry(_Scripted(rmses=[0.07, 0.07]), CONFIG).calibrate(_snap(), kept)
    assert out.fallback_reason == "rmse_too_high"
    assert out.fit is not None
    assert out.fit.status == "fallback"


def test_when_warm_and_cold_are_refused_the_last_good_fit_is_kept_against_the_new_quotes(
        ) -> None:
    previous = _last_good(0.02)
    out = PerExpiry(_Scripted(rmses=[0.5, 0.5]), CONFIG).calibrate(_snap(shift=0.01), previous)
    assert out.fallback_reason == "rmse_too_high"
    assert out.fit is not None
    assert out.fit.status == "fallback"
    assert out.fit.params == previous.params
    assert out.fit.rmse_vol == pytest.approx(0.01)  # the old smile, 1 vol point under now


def test_a_failed_fit_keeps_the_last_good_one_and_without_one_publishes_nothing() -> None:
    previous = _last_good(0.02)
    kept = PerExpiry(_Scripted(rmses=[NAN, NAN]), CONFIG).calibrate(_snap(), previous)
    assert kept.fallback_reason == "fit_failed"
    assert kept.fit is not None
    assert kept.fit.params == previous.params
    cold = PerExpiry(_Scripted(rmses=[NAN]), CONFIG).calibrate(_snap(), None)
    assert cold.fallback_reason == "fit_failed"
    assert cold.fit is None


@dataclasses.dataclass(frozen=True)
class _ScriptedSurface(SSVIModel):
    """eSSVI whose surface fits are a real fit's parameters with the scripted RMSEs, in
    turn (NaN: a failed fit); records the parameters each fit started from."""

    good: Any = None
    rmses: list[float] = dataclasses.field(default_factory=list)
    starts: list[Any] = dataclasses.field(default_factory=list)

    def calibrate_surface(self, k: Any, iv: Any, t: Any, weights: Any, previous: Any | None,
                          **kw: Any) -> Fit[Any]:
        self.starts.append(previous)
        rmse = self.rmses.pop(0)
        if np.isnan(rmse):
            return Fit.failed(self.good, "scripted", warm=previous is not None)
        return Fit(params=self.good, rmse_vol=rmse, iterations=1, status="converged")


def _surface_snaps() -> list[SliceSnapshot]:
    return [_snap(expiry=1), _snap(expiry=2, t=3 * T)]


def test_a_surface_follows_the_same_rule_warm_then_cold_then_the_last_good_slices() -> None:
    good = WholeSurface(SSVIModel(), CONFIG).calibrate(_surface_snaps(), None, NAN, {})
    assert good.fallback_reason is None
    assert good.params is not None
    model = _ScriptedSurface(good=good.params, rmses=[0.2, 0.001])  # warm: a jump past 4x
    warm_refused = WholeSurface(model, CONFIG).calibrate(
        _surface_snaps(), good.params, 0.01, good.fits)
    assert model.starts == [good.params, None]
    assert {f.status for f in warm_refused.fits.values()} == {"cold"}
    assert warm_refused.rmse_vol == 0.001
    failed = _ScriptedSurface(good=good.params, rmses=[NAN, NAN])
    kept = WholeSurface(failed, CONFIG).calibrate(_surface_snaps(), good.params, 0.01,
                                                  good.fits)
    assert kept.fallback_reason == "fit_failed"
    assert kept.params is good.params
    assert kept.rmse_vol == 0.01
    assert {e: f.status for e, f in kept.fits.items()} == {1: "fallback", 2: "fallback"}
    assert [kept.fits[e].params for e in (1, 2)] == [good.fits[e].params for e in (1, 2)]


def test_padded_quotes_are_reused_only_for_the_very_same_slices() -> None:
    a, b = _snap(expiry=1), _snap(0.01, expiry=2)
    made = calibrator._Padded([a, b])
    assert calibrator._Padded.of([a, b], made) is made
    for other in ([b, a], [a], [a, _snap(expiry=2)]):  # order, length, an equal copy
        rebuilt = calibrator._Padded.of(other, made)
        assert rebuilt is not made
        np.testing.assert_array_equal(rebuilt.k, calibrator._Padded(other).k)
