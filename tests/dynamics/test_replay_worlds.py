"""End to end: synthesiser world -> tick file -> decoder, engine, SVI fits -> DynamicsTracker.

Unlike the direct streams of test_tracker.py, here every ATM vol and skew comes out of
real fits to tick-rounded bid/ask quotes. To keep this under half a minute the market
is compressed: spot vol 800% a year (about 2% over the run), every instrument
requoted together every 3 s (quotes of different ages would price one strike against
several forwards — a real and separate problem, see docs/dynamics.md), one batch per
requote. Eighty surfaces pin the SSR to about ±0.2 (95%), enough to tell the worlds
apart and name each one; the ±0.15 precision claim is tested on longer streams.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from streamer.app import replay_file
from streamer.config import DynamicsConfig, load_config
from streamer.devtools.synth import synthesise
from streamer.devtools.synth_market import WORLDS
from streamer.pipeline.dynamics import DynamicsTracker
from streamer.sinks.base import MemorySink
from streamer.types import Dynamics

DURATION_S, SPOT_VOL, REQUOTE_S = 240.0, 8.0, 3.0


def _world(tmp_path: Path, world: str) -> Dynamics:
    path = tmp_path / f"{world}.ndjson"
    synthesise(path, tmp_path / f"{world}.truth.json", seed=1, duration_s=DURATION_S,
               underlyings=("BTC",), dynamics=world, spot_vol=SPOT_VOL, requote_s=REQUOTE_S)
    config = load_config(None, env={})
    config = msgspec.structs.replace(
        config, batch=msgspec.structs.replace(config.batch, interval_ms=1000))
    sink = MemorySink()
    assert asyncio.run(replay_file(path, config, sink)) >= DURATION_S / REQUOTE_S - 1
    tracker = DynamicsTracker(DynamicsConfig(min_move=0.0005, min_obs=20, bucket_days=()))
    results = [tracker.update(u) for u in sink.updates]
    assert results[-1] is not None
    return results[-1]


def test_replayed_worlds_are_told_apart_and_named(tmp_path: Path) -> None:
    found = {world: _world(tmp_path, world) for world in sorted(WORLDS)}
    for world, result in found.items():
        assert result.n_obs >= 40, world
        assert result.ssr == pytest.approx(WORLDS[world], abs=0.4), world
        # The interval covers the truth (with 0.1 to spare for what fits get wrong).
        assert result.ssr_low - 0.1 <= WORLDS[world] <= result.ssr_high + 0.1, world
        assert result.regime == world
    assert (found["sticky_moneyness"].ssr < found["sticky_strike"].ssr
            < found["local_vol"].ssr)
    # Put skew: a fixed strike's vol rises with spot under sticky moneyness (beta - skew > 0),
    # stays under sticky strike, falls under local vol.
    assert found["sticky_moneyness"].fixed_strike_beta > 0.2
    assert abs(found["sticky_strike"].fixed_strike_beta) < 0.15
    assert found["local_vol"].fixed_strike_beta < -0.2
    assert found["local_vol"].spot_vol_beta < found["sticky_strike"].spot_vol_beta < -0.2
