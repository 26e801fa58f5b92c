"""Smile dynamics survive a restart: the estimator's memory (vol.dynamics.v1) restores it.

A tracker stopped mid-stream publishes its state; a new tracker restored from that
state (through its JSON encoding, as it travels on Kafka) and fed the rest of the
stream ends exactly where one tracker fed the whole stream ends, with the same
observation count. Without the state it starts over, with far fewer observations.
"""

from __future__ import annotations

import msgspec
import pytest

from streamer.config import BatchConfig, CalibrationConfig, DynamicsConfig
from streamer.pipeline.dynamics import DynamicsTracker
from streamer.pipeline.engine import Engine
from streamer.types import DynamicsState, SurfaceUpdate
from tests.dynamics.worlds import translation_world

CONFIG = DynamicsConfig(window=300, bucket_days=(7.0, 90.0))


def _feed(tracker: DynamicsTracker, surfaces: list[SurfaceUpdate]) -> None:
    for s in surfaces:
        tracker.update(s)


@pytest.fixture(scope="module")
def stream() -> list[SurfaceUpdate]:
    return translation_world(1.0, n=3000, seed=2)


@pytest.mark.parametrize("split", [200, 1700])  # before and after the window is full
def test_a_restored_tracker_continues_where_the_stopped_one_was(
        stream: list[SurfaceUpdate], split: int) -> None:
    whole = DynamicsTracker(CONFIG)
    _feed(whole, stream[:-1])
    expected = whole.update(stream[-1])

    stopped = DynamicsTracker(CONFIG)
    _feed(stopped, stream[:split])
    state = stopped.state(stream[split - 1])
    assert state is not None
    wire = msgspec.json.decode(msgspec.json.encode(state), type=DynamicsState)
    restored = DynamicsTracker(CONFIG)
    restored.restore(wire)
    _feed(restored, stream[split:-1])
    got = restored.update(stream[-1])

    assert expected is not None
    assert got == expected
    assert got.n_obs == expected.n_obs > 0

    fresh = DynamicsTracker(CONFIG)
    _feed(fresh, stream[split:-1])
    restarted = fresh.update(stream[-1])
    assert restarted is not None
    assert restarted != expected


def test_a_state_with_a_longer_window_keeps_the_newest_observations(
        stream: list[SurfaceUpdate]) -> None:
    wide = DynamicsTracker(DynamicsConfig(window=1000, bucket_days=()))
    _feed(wide, stream)
    state = wide.state(stream[-1])
    assert state is not None
    narrow = DynamicsTracker(DynamicsConfig(window=100, bucket_days=()))
    narrow.restore(state)
    again = narrow.state(stream[-1])
    assert again is not None
    (tenor,) = again.tenors
    assert tenor.dlnf == state.tenors[0].dlnf[-100:]


def test_the_engine_publishes_dynamics_state_only_when_it_changed_and_seeds_only_new_keys(
        stream: list[SurfaceUpdate]) -> None:
    tracker = DynamicsTracker(CONFIG)
    _feed(tracker, stream[:500])
    state = tracker.state(stream[499])
    assert state is not None
    engine = Engine(state.venue, CalibrationConfig(), BatchConfig(), CONFIG)
    assert engine.take_dynamics_states() == []  # nothing published yet
    assert engine.seed_dynamics(state)
    assert not engine.seed_dynamics(msgspec.structs.replace(state, venue="elsewhere"))
