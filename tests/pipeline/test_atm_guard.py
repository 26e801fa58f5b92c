"""A fit whose ATM vol the market is not showing is not published (issue 12: no slice
more than 3 vol points from the market's ATM), and neither is a last fit that has
become one."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from streamer.config import CalibrationConfig
from streamer.core.models import svi
from streamer.core.models.fit import Fit
from streamer.core.models.svi import SVIModel
from streamer.pipeline.calibrator import ATM_OFF_MARKET, PerExpiry, market_atm, market_atms
from streamer.pipeline.snapshot import SliceSnapshot

T = 2 / 365
SMILE = svi.SVIParams(a=0.0002, b=0.004, rho=-0.2, m=0.0, sigma=0.03)


def _snap(shift: float = 0.0, half: float = 0.005) -> SliceSnapshot:
    k = np.linspace(-0.08, 0.07, 12)
    iv = np.sqrt(svi.total_variance(k, SMILE) / T) + shift
    return SliceSnapshot(expiry_ts_ms=1, t=T, forward=100.0, forward_method="parity", k=k,
                         iv=iv, bid_iv=iv - half, ask_iv=iv + half, weights=np.ones(k.size))


@dataclasses.dataclass(frozen=True)
class _Lifted(SVIModel):
    """SVI whose every fit is the smile lifted by ``lift`` in total variance: a fit that
    meets the RMSE limit but whose ATM is off the quotes (what Heston did a day out)."""

    lift: float = 0.0

    def calibrate(self, k: Any, iv: Any, t: float, weights: Any, previous: Any | None,
                  **kw: Any) -> Fit[Any]:
        fit = super().calibrate(k, iv, t, weights, previous, **kw)
        params = svi.SVIParams(a=fit.params.a + self.lift, b=fit.params.b, rho=fit.params.rho,
                               m=fit.params.m, sigma=fit.params.sigma)
        return Fit(params=params, rmse_vol=fit.rmse_vol, iterations=fit.iterations,
                   status=fit.status, warm=fit.warm)


def test_the_market_atm_is_the_band_centres_at_the_money() -> None:
    snap = _snap()
    atm, half = market_atm(snap)  # type: ignore[misc]
    truth = float(np.sqrt(svi.total_variance(0.0, SMILE) / T))
    assert atm == pytest.approx(truth, abs=0.003)  # the chord between the two nearest
    assert half == pytest.approx(0.005)
    one_side = SliceSnapshot(**{**{f: getattr(snap, f) for f in snap.__struct_fields__},
                                "k": np.abs(snap.k) + 0.01})
    assert market_atm(one_side) is None


def test_a_fit_off_the_markets_atm_is_refused_and_nothing_is_published_cold() -> None:
    lift = 0.05**2 * T * 20  # several vol points at the money on a two-day expiry
    calibrator = PerExpiry(_Lifted(lift=lift), CalibrationConfig(max_rmse_vol=1.0))
    out = calibrator.calibrate(_snap(), None)
    assert out.fit is None
    assert out.fallback_reason == ATM_OFF_MARKET


def test_a_refused_fit_keeps_the_last_one_only_while_the_market_still_shows_it() -> None:
    good = PerExpiry(SVIModel(), CalibrationConfig()).calibrate(_snap(), None).fit
    assert good is not None
    lifted = PerExpiry(_Lifted(lift=0.05**2 * T * 20), CalibrationConfig(max_rmse_vol=1.0))
    kept = lifted.calibrate(_snap(shift=0.002), good)  # the market barely moved
    assert kept.fallback_reason == ATM_OFF_MARKET
    assert kept.fit is not None
    assert kept.fit.status == "fallback"
    moved = lifted.calibrate(_snap(shift=0.08), good)  # 8 vol points up: the last fit is off
    assert moved.fallback_reason == ATM_OFF_MARKET
    assert moved.fit is None


def test_a_wide_market_is_off_only_beyond_its_half_spread() -> None:
    lift_vp = 0.045  # 4.5 vol points above the quotes at the money
    atm = float(np.sqrt(svi.total_variance(0.0, SMILE) / T))
    lift = (atm + lift_vp) ** 2 * T - atm**2 * T
    calibrator = PerExpiry(_Lifted(lift=lift), CalibrationConfig(max_rmse_vol=1.0))
    assert calibrator.calibrate(_snap(half=0.06), None).fit is not None  # inside the band
    assert calibrator.calibrate(_snap(half=0.01), None).fit is None


def test_an_expiry_left_with_nothing_to_publish_leaves_the_surface() -> None:
    """The engine forgets the expiry's last fit instead of publishing it again."""
    from streamer.config import BatchConfig
    from streamer.pipeline.calibrator import SliceOutcome
    from streamer.pipeline.engine import Engine

    engine = Engine("deribit", CalibrationConfig(), BatchConfig())
    state = engine._state("BTC")
    good = PerExpiry(SVIModel(), CalibrationConfig()).calibrate(_snap(), None).fit
    assert good is not None
    state.fits[1] = good
    engine._record("BTC", state, 1, SliceOutcome(fit=None, fallback_reason=ATM_OFF_MARKET))
    assert 1 not in state.fits
    assert engine.drain_report().fallbacks[("BTC", ATM_OFF_MARKET)] == 1


def test_the_venues_marks_are_the_market_atm_where_it_sends_them() -> None:
    """Deribit's marks at the two quotes around the money, not the band centres: the
    reference the issue's goal is measured against."""
    snap = _snap()
    marks = snap.iv + 0.02
    marked = SliceSnapshot(**{**{f: getattr(snap, f) for f in snap.__struct_fields__},
                              "mark_iv": marks})
    (centres, _), (from_marks, _) = market_atm(snap), market_atm(marked)  # type: ignore[misc]
    assert from_marks == pytest.approx(centres + 0.02)
    half_marked = marks.copy()
    half_marked[np.argmin(np.where(snap.k >= 0, snap.k, np.inf))] = np.nan
    partial = SliceSnapshot(**{**{f: getattr(snap, f) for f in snap.__struct_fields__},
                               "mark_iv": half_marked})
    assert market_atm(partial)[0] == pytest.approx(centres)  # type: ignore[index]


def test_a_partial_book_with_a_gap_at_the_money_has_no_market_atm() -> None:
    """Five quotes, none within a total-vol width of the money (a session's first
    seconds): the chord across the gap is no ATM, so no fit is refused against it (the
    bundled recording's 119-day expiry, quoted at k = -0.89 and +0.50: the chord said 65%
    where the smile is at 52%)."""
    k = np.array([-0.89, 0.495, 0.613, 0.667, 0.767])
    iv = np.array([0.75, 0.6, 0.62, 0.63, 0.65])
    gap = SliceSnapshot(expiry_ts_ms=1, t=119 / 365, forward=100.0, forward_method="parity",
                        k=k, iv=iv, bid_iv=iv - 0.02, ask_iv=iv + 0.02, weights=np.ones(5))
    assert market_atm(gap) is None
    assert market_atm(_snap()) is not None


def test_the_market_atms_of_a_chain_are_each_slices_own() -> None:
    """One padded pass over slices of different lengths, with and without marks, one
    without quotes either side of the money and one with a gap there: each slice's
    answer as if it were alone (the padding never lends a quote to a shorter row)."""
    snap = _snap()

    def with_(**fields: object) -> SliceSnapshot:
        return SliceSnapshot(**{**{f: getattr(snap, f) for f in snap.__struct_fields__},
                                **fields})

    short = with_(k=snap.k[3:9], iv=snap.iv[3:9], bid_iv=snap.bid_iv[3:9],
                  ask_iv=snap.ask_iv[3:9], weights=snap.weights[3:9])
    marked = with_(mark_iv=snap.iv + 0.01)
    one_side = with_(k=np.abs(snap.k) + 0.01)
    gap_k = np.array([-0.89, 0.495, 0.613, 0.667, 0.767])
    gap = with_(k=gap_k, iv=np.full(5, 0.6), bid_iv=np.full(5, 0.58), ask_iv=np.full(5, 0.62),
                weights=np.ones(5), t=119 / 365)
    chain = [snap, short, marked, one_side, gap, short]
    alone = [market_atms([s])[0] for s in chain]
    assert market_atms(chain) == alone
    assert alone[3] is None
    assert alone[4] is None
    assert None not in (alone[0], alone[1], alone[2])
    assert alone[2][0] == pytest.approx(alone[0][0] + 0.01)  # type: ignore[index]
