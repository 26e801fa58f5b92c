"""DynamicsTracker on surface streams from known dynamics (tests/dynamics/worlds.py).

The claim under test (issue: smile dynamics): after a realistic amount of data — a
week of one-minute surfaces, with 0.1 vol point of fit noise on ATM vols and 0.01 on
skews — the SSR is recovered within ±0.15 in each world, and the spot-vol beta has
the sign and size the world implies (``beta = SSR * skew``; Bergomi 2016, ch. 2).
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from streamer.config import DynamicsConfig
from streamer.core.models.heston import HestonParams
from streamer.pipeline.dynamics import DynamicsTracker
from streamer.types import Dynamics, SurfaceUpdate
from tests.dynamics.worlds import heston_world, translation_world

WEEK = DynamicsConfig(window=2000, bucket_days=())


def _run(surfaces: list[SurfaceUpdate], config: DynamicsConfig = WEEK
         ) -> tuple[Dynamics, list[Dynamics | None]]:
    tracker = DynamicsTracker(config)
    history = [tracker.update(s) for s in surfaces]
    last = history[-1]
    assert last is not None
    return last, history


@pytest.mark.parametrize(("ssr", "regime"), [(0.0, "sticky_moneyness"),
                                             (1.0, "sticky_strike"), (2.0, "local_vol")])
def test_a_week_of_surfaces_recovers_the_ssr_of_each_world(ssr: float, regime: str) -> None:
    result, history = _run(translation_world(ssr, seed=1))
    assert result.ssr == pytest.approx(ssr, abs=0.15)
    assert result.ssr_low < result.ssr < result.ssr_high
    assert result.ssr_high - result.ssr_low < 0.5
    assert result.regime == regime
    assert result.ssr_n_obs > 300
    # beta = SSR * skew, the skew averaged over the week (it moves with the smile).
    mean_skew = float(np.mean([d.atm_skew for d in history if d is not None]))
    assert -0.6 < mean_skew < -0.2
    assert result.spot_vol_beta == pytest.approx(ssr * mean_skew, abs=0.08)
    assert result.fixed_strike_beta == pytest.approx((ssr - 1) * mean_skew, abs=0.08)
    if ssr > 0:
        assert result.spot_vol_beta < -0.2  # put skew: vol up when spot down
        assert result.r2 > 0.1
    else:
        assert abs(result.spot_vol_beta) < 0.06


def test_heston_ssr_matches_the_models_own_value_at_30_days() -> None:
    # rho = -0.7: with a weak spot-vol correlation the SSR's standard error is about
    # |SSR / rho| sqrt((1 - rho^2) / n) (docs/dynamics.md), far beyond +-0.15 in a week.
    params = HestonParams(v0=0.3, kappa=3.0, theta=0.3, sigma=1.0, rho=-0.7)
    world = heston_world(params, n=20_160, seed=1)
    config = DynamicsConfig(window=5000, min_move=0.001, bucket_days=())
    result, _ = _run(world.surfaces, config)
    j = int(np.flatnonzero(world.tenor_days == 30.0)[0])
    truth = float(np.median(world.ssr[:, j]))
    assert 1.5 < truth < 2.0  # below the short-maturity limit of 2 (Bergomi 2016, ch. 2)
    assert result.ssr == pytest.approx(truth, abs=0.15)
    assert result.regime == "local_vol"
    assert result.spot_vol_beta < 0


def test_a_skew_that_changes_sign_keeps_the_ssr_and_a_finite_fixed_strike_beta() -> None:
    # Under sticky strike a rising spot walks the ATM point into the smile's upturn: with
    # rho = -0.05 the 30-day skew crosses zero along this path (seed 2).
    surfaces = translation_world(1.0, seed=2, rho=-0.05)
    result, history = _run(surfaces)
    skews = [d.atm_skew for d in history if d is not None]
    assert min(skews) < -0.05
    assert max(skews) > 0.05
    assert result.ssr == pytest.approx(1.0, abs=0.15)
    late = [d for d in history[len(history) // 2:] if d is not None]
    assert all(math.isfinite(d.fixed_strike_beta) for d in late)
    assert max(abs(d.fixed_strike_beta) for d in late) < 0.1  # (SSR - 1) * skew ~ 0


def test_buckets_report_each_tenor_with_the_reference_on_top() -> None:
    surfaces = translation_world(2.0, n=3000, seed=3)
    result, _ = _run(surfaces, DynamicsConfig(bucket_days=(7.0, 30.0, 90.0, 400.0)))
    assert result.tenor_days == 30.0
    assert [b.tenor_days for b in result.by_expiry] == [7.0, 30.0, 90.0]  # 400 d not listed
    assert all(b.by_expiry == [] for b in result.by_expiry)
    main = msgspec.structs.replace(result, by_expiry=[])
    assert result.by_expiry[1] == main
    for bucket in result.by_expiry:
        assert bucket.n_obs > 30
        assert bucket.ssr == pytest.approx(2.0, abs=0.5)


def test_nothing_is_published_until_the_reference_tenor_is_bracketed() -> None:
    surfaces = translation_world(1.0, n=5, seed=4)
    short = [msgspec.structs.replace(s, slices=[x for x in s.slices if x.t < 20 / 365])
             for s in surfaces]
    tracker = DynamicsTracker()
    assert [tracker.update(s) for s in short] == [None] * 5
    first = tracker.update(surfaces[0])
    assert first is not None
    assert first.n_obs == 0
    assert math.isnan(first.ssr)
    assert first.regime == "unknown"
    assert first.atm_vol == pytest.approx(0.55, abs=0.05)


def test_fallback_and_stale_slices_are_ignored() -> None:
    surface = translation_world(1.0, n=1, seed=5)[0]
    frozen = [msgspec.structs.replace(x, status="fallback", atm_vol=9.9)
              if 20 < 365 * x.t < 45 else x for x in surface.slices]
    with_fallback = DynamicsTracker().update(msgspec.structs.replace(surface, slices=frozen))
    clean = DynamicsTracker().update(surface)
    assert with_fallback is not None
    assert clean is not None
    assert with_fallback.atm_vol == pytest.approx(clean.atm_vol, abs=0.01)
    assert with_fallback.atm_vol < 1.0


def test_each_underlying_keeps_its_own_history() -> None:
    btc = translation_world(2.0, n=4000, seed=6)
    eth = [msgspec.structs.replace(s, underlying="ETH")
           for s in translation_world(0.0, n=4000, seed=7)]
    tracker = DynamicsTracker(DynamicsConfig(bucket_days=()))
    last: dict[str, Dynamics | None] = {}
    for a, b in zip(btc, eth, strict=True):
        last["BTC"], last["ETH"] = tracker.update(a), tracker.update(b)
    assert last["BTC"] is not None
    assert last["ETH"] is not None
    assert last["BTC"].ssr > 1.5
    assert abs(last["ETH"].ssr) < 0.5
    tracker.reset("synthetic:BTC")
    again = tracker.update(btc[-1])
    assert again is not None
    assert again.n_obs == 0


def test_a_jump_beyond_max_move_restarts_instead_of_making_an_observation() -> None:
    surfaces = translation_world(1.0, n=2, seed=8)
    jumped = msgspec.structs.replace(surfaces[1], slices=[
        msgspec.structs.replace(x, forward=x.forward * 1.5) for x in surfaces[1].slices])
    tracker = DynamicsTracker()
    tracker.update(surfaces[0])
    result = tracker.update(jumped)
    assert result is not None
    assert result.n_obs == 0


def test_published_dynamics_survive_the_wire_with_nans_and_buckets() -> None:
    from streamer.sinks.codec import decode_surface, encode_surface, surface_json_schema

    surfaces = translation_world(1.0, n=3, seed=9)
    tracker = DynamicsTracker()
    dyn = [tracker.update(s) for s in surfaces][-1]
    assert dyn is not None
    assert math.isnan(dyn.ssr)  # too early: NaN, published as null
    assert len(dyn.by_expiry) == 4
    update = msgspec.structs.replace(surfaces[-1], dynamics=dyn)
    for fmt in ("json", "msgpack"):
        back = decode_surface(encode_surface(update, fmt), fmt)
        assert back.dynamics is not None
        assert back.dynamics.by_expiry[0].tenor_days == 7.0
        assert math.isnan(back.dynamics.by_expiry[0].ssr)
        assert back.dynamics.atm_vol == dyn.atm_vol
    props = surface_json_schema()["$defs"]["Dynamics"]["properties"]
    assert {"ssr_low", "ssr_high", "ssr_n_obs", "atm_vol", "atm_skew", "by_expiry",
            "fixed_strike_beta"} <= set(props)
