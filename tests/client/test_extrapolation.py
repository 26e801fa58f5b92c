"""The client marks extrapolation: strikes outside the quotes behind an expiry's fit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from streamer.app.file_replay import replay_file
from streamer.client import Surface
from streamer.config import load_config
from streamer.devtools.synth import synthesise
from streamer.sinks.base import MemorySink
from streamer.sinks.codec import decode_surface, encode_surface
from tests.client.factory import (
    EXPIRIES_MS,
    FORWARDS,
    TS,
    make_slice,
    make_surface,
    svi_params,
)

RANGES = ((-0.1, 0.05), (-0.3, 0.2), (-0.5, 0.4), (-0.6, 0.5))


def _surface() -> Surface:
    slices = [make_slice(e, svi_params(t), forward=f, k_min=lo, k_max=hi)
              for e, t, f, (lo, hi) in zip(EXPIRIES_MS, TS, FORWARDS, RANGES, strict=True)]
    return Surface(make_surface(slices=slices))


def test_quoted_range_at_an_expiry_is_its_slices_in_strikes() -> None:
    surface = _surface()
    low, high = surface.quoted_range(EXPIRIES_MS[0])
    assert low == pytest.approx(FORWARDS[0] * math.exp(-0.1), rel=1e-12)
    assert high == pytest.approx(FORWARDS[0] * math.exp(0.05), rel=1e-12)
    assert surface.slice(EXPIRIES_MS[1]).quoted_range() == pytest.approx(
        (FORWARDS[1] * math.exp(-0.3), FORWARDS[1] * math.exp(0.2)), rel=1e-12)


def test_between_expiries_the_quoted_range_is_where_both_were_quoted() -> None:
    surface = _surface()
    t = 0.5 * (TS[1] + TS[2])
    low, high = surface.quoted_range(t)
    forward = surface.forward(t)
    assert np.log(low / forward) == pytest.approx(-0.3)
    assert np.log(high / forward) == pytest.approx(0.2)


def test_vol_outside_the_quoted_range_is_flagged_and_nan_on_request() -> None:
    surface = _surface()
    strikes = np.array([FORWARDS[0] * 0.5, FORWARDS[0], FORWARDS[0] * 1.02, FORWARDS[0] * 2])
    assert surface.extrapolated(strikes, EXPIRIES_MS[0]).tolist() == [True, False, False, True]
    vols = surface.vol(strikes, EXPIRIES_MS[0])
    assert np.isfinite(vols).all()  # the default is unchanged: the model's wing
    honest = surface.vol(strikes, EXPIRIES_MS[0], extrapolate=False)
    assert np.isnan(honest[[0, 3]]).all()
    assert honest[1:3].tolist() == vols[1:3].tolist()


def test_without_a_published_range_nothing_is_flagged() -> None:
    surface = Surface(make_surface())  # an older publisher: no k_min / k_max
    assert not surface.extrapolated([1.0, 1e9], 0.1).any()
    assert np.isnan(surface.quoted_range(0.1)[0])


async def test_published_slices_carry_the_quoted_range_of_their_fit(tmp_path: Path) -> None:
    recording = tmp_path / "deribit.ndjson"
    synthesise(recording, tmp_path / "truth.json", duration_s=20.0, underlyings=("BTC",))
    sink = MemorySink()
    assert await replay_file(recording, load_config(None, env={}), sink) > 0
    last = decode_surface(encode_surface(sink.updates[-1]))  # across the wire
    fitted = [s for s in last.slices if s.status in ("warm", "cold")]
    assert fitted
    for s in fitted:
        assert -3.0 < s.k_min < 0.0 < s.k_max < 3.0, s
    surface = Surface(last)
    near = min(fitted, key=lambda s: s.t)
    far_out = near.forward * math.exp(near.k_max + 1.0)
    assert surface.extrapolated(far_out, near.expiry_ts_ms).item()
    assert math.isnan(surface.vol(far_out, near.expiry_ts_ms, extrapolate=False).item())
