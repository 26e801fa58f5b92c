"""End to end: a 7-minute synthesiser world -> tick file -> `streamer replay`'s path -> dynamics.

The issue's setting: one BTC chain for 7 minutes at its own spot vol (55% a year, so
spot moves about 0.2% over the run), each instrument requoted at random times,
tick-rounded coin prices, the default configuration. Every ATM vol, skew and slope
comes out of real fits; every observation is a real requote. Before the fixed-strike
estimator the published SSR was NaN here (one or two ATM observations); the goal is
the point estimate within 0.4 of the truth and an interval no wider than ±1.5. We
hold ourselves to ±0.75 (about ±0.5 is what these worlds give).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamer.app.file_replay import replay_file
from streamer.config import load_config
from streamer.devtools.synth import synthesise
from streamer.devtools.synth_market import WORLDS
from streamer.sinks.base import MemorySink
from streamer.types import Dynamics

DURATION_S = 420.0


def _published(tmp_path: Path, world: str) -> Dynamics:
    path = tmp_path / f"{world}.ndjson"
    synthesise(path, tmp_path / f"{world}.truth.json", seed=1, duration_s=DURATION_S,
               underlyings=("BTC",), dynamics=world)
    sink = MemorySink()
    assert asyncio.run(replay_file(path, load_config(None, env={}), sink)) > 1000
    last = sink.updates[-1].dynamics
    assert last is not None
    return last


@pytest.mark.parametrize("world", ["sticky_moneyness", "sticky_strike"])
def test_seven_minutes_of_a_replayed_world_pin_its_ssr(tmp_path: Path, world: str) -> None:
    truth = WORLDS[world]
    result = _published(tmp_path, world)
    assert result.ssr == pytest.approx(truth, abs=0.4)
    assert result.ssr_low <= truth <= result.ssr_high
    assert (result.ssr_high - result.ssr_low) / 2 < 0.75
    assert result.n_obs > 1000
    # beta = SSR * skew: a put skew with vol rising as spot falls, except in sticky moneyness
    assert result.spot_vol_beta == pytest.approx(result.ssr * result.atm_skew)
    assert result.atm_skew < -0.1
    for bucket in result.by_expiry:  # every tenor pools its own expiries
        assert bucket.ssr == pytest.approx(truth, abs=0.75), bucket.tenor_days
