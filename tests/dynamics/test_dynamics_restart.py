"""Smile dynamics survive a restart: the estimator's memory (vol.dynamics.v1) restores it.

A tracker stopped mid-stream publishes its state (its tenors' regression sums and each
instrument's last counted quote); a new tracker restored from that state (through its
JSON encoding, as it travels on Kafka) and fed the rest of the stream ends where one
tracker fed the whole stream ends, with the same observation count. Without the state
it starts over, with fewer observations.
"""

from __future__ import annotations

import msgspec
import pytest

from streamer.config import BatchConfig, CalibrationConfig, DynamicsConfig
from streamer.pipeline.dynamics import DynamicsTracker, InstrumentMarks
from streamer.pipeline.engine import Engine
from streamer.types import DynamicsState, SurfaceUpdate
from tests.dynamics.worlds import translation_requotes

CONFIG = DynamicsConfig(half_life_s=36_000.0, bucket_days=(7.0, 90.0))
Stream = list[tuple[SurfaceUpdate, InstrumentMarks]]


def _feed(tracker: DynamicsTracker, stream: Stream) -> None:
    for surface, marks in stream:
        tracker.update(surface, marks)


@pytest.fixture(scope="module")
def stream() -> Stream:
    return translation_requotes(1.0, n=600, seed=2)


@pytest.mark.parametrize("split", [3, 400])  # early, and after hours of decay (10 h half-life)
def test_a_restored_tracker_continues_where_the_stopped_one_was(stream: Stream,
                                                                 split: int) -> None:
    whole = DynamicsTracker(CONFIG)
    _feed(whole, stream[:-1])
    expected = whole.update(*stream[-1])

    stopped = DynamicsTracker(CONFIG)
    _feed(stopped, stream[:split])
    state = stopped.state(stream[split - 1][0])
    assert state is not None
    wire = msgspec.json.decode(msgspec.json.encode(state), type=DynamicsState)
    restored = DynamicsTracker(CONFIG)
    restored.restore(wire)
    _feed(restored, stream[split:-1])
    got = restored.update(*stream[-1])

    assert expected is not None
    assert got is not None
    assert got.n_obs == expected.n_obs > 0
    for field in ("ssr", "ssr_low", "ssr_high", "r2", "spot_vol_beta"):
        # the sums travel as JSON floats: equal to the last bits, not bit for bit
        assert getattr(got, field) == pytest.approx(getattr(expected, field), rel=1e-9)

    fresh = DynamicsTracker(CONFIG)
    _feed(fresh, stream[split:-1])
    restarted = fresh.update(*stream[-1])
    assert restarted is not None
    assert restarted.n_obs < expected.n_obs


def test_a_state_restored_under_other_tenors_keeps_only_those_configured(
        stream: Stream) -> None:
    tracker = DynamicsTracker(CONFIG)
    _feed(tracker, stream[:50])
    state = tracker.state(stream[49][0])
    assert state is not None
    assert [t.tenor_days for t in state.tenors] == [7.0, 30.0, 90.0]
    narrow = DynamicsTracker(DynamicsConfig(bucket_days=(90.0,)))
    narrow.restore(state)
    again = narrow.state(stream[49][0])
    assert again is not None
    assert [t.tenor_days for t in again.tenors] == [30.0, 90.0]
    assert again.instruments == state.instruments


def test_the_engine_publishes_dynamics_state_only_when_it_changed_and_seeds_only_new_keys(
        stream: Stream) -> None:
    tracker = DynamicsTracker(CONFIG)
    _feed(tracker, stream[:500])
    state = tracker.state(stream[499][0])
    assert state is not None
    engine = Engine(state.venue, CalibrationConfig(), BatchConfig(), CONFIG)
    assert engine.take_dynamics_states() == []  # nothing published yet
    assert engine.seed_dynamics(state)
    assert not engine.seed_dynamics(msgspec.structs.replace(state, venue="elsewhere"))
