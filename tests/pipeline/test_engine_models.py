"""Every configured model through the engine on the start of the bundled recording."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from streamer.app.file_replay import replay_file
from streamer.client import Slice
from streamer.config import load_config
from streamer.core.smile import smile_metrics
from streamer.devtools.exchanges import bundled_sample
from streamer.sinks.base import MemorySink
from streamer.sinks.codec import decode_surface, encode_surface
from streamer.types import SurfaceUpdate

TRUTH = json.loads(bundled_sample().with_name("deribit_sample.truth.json").read_text())
LINES = 1500


@pytest.fixture(scope="module")
def short_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ticks") / "start.ndjson.gz"
    with gzip.open(bundled_sample(), "rb") as src, gzip.open(path, "wb") as dst:
        for _, line in zip(range(LINES), src, strict=False):
            dst.write(line)
    return path


async def _replay(path: Path, **env: str) -> list[SurfaceUpdate]:
    overrides = {"STREAMER_BATCH__INTERVAL_MS": "2000", **env}
    sink = MemorySink()
    await replay_file(path, load_config("config.yaml", overrides), sink)
    return sink.updates


def _atm_errors(update: SurfaceUpdate) -> list[float]:
    truth: dict[int, dict[str, Any]] = {
        e["expiry_ts_ms"]: e["svi"] for e in TRUTH["underlyings"][update.underlying]["expiries"]}
    errors = []
    for s in update.slices:
        p = truth[s.expiry_ts_ms]
        w0 = p["a"] + p["b"] * (-p["rho"] * p["m"] + np.hypot(p["m"], p["sigma"]))
        errors.append(abs(s.atm_vol - np.sqrt(w0 / s.t)))
    return errors


@pytest.mark.parametrize(("model", "atm_tol", "surface_keys"), [
    ("svi", 0.01, set()),
    ("sabr", 0.01, set()),
    ("ssvi", 0.01, set()),  # eSSVI: every expiry its own theta, rho, phi
    ("heston", 0.06, {"v0", "kappa", "theta", "sigma", "rho"}),
])
async def test_each_model_publishes_a_fitted_surface(
        short_recording: Path, model: str, atm_tol: float, surface_keys: set[str]) -> None:
    updates = await _replay(short_recording, STREAMER_CALIBRATION__MODEL=model)
    last = {u.underlying: u for u in updates}
    assert set(last) == {"BTC", "ETH"}
    for update in last.values():
        assert update.model == model
        assert set(update.params) == surface_keys
        assert all(s.status in ("warm", "cold") for s in update.slices)
        assert len(update.slices) >= 8
        assert max(_atm_errors(update)) < atm_tol
        # Margins, not only flags: the flags are exactly their signs.
        first, *rest = update.slices
        assert np.isnan(first.calendar_margin)
        assert all(np.isfinite(s.calendar_margin) for s in rest)
        assert all(s.calendar_free == (s.calendar_margin >= -1e-12) for s in rest)
        assert all(s.butterfly_free == (s.butterfly_margin >= 0.0) for s in update.slices)
        if model == "ssvi":  # arbitrage-free by construction, and the checks agree
            assert all(s.calendar_free and s.butterfly_free for s in update.slices)
        _check_slice_analytics(update)


def _check_slice_analytics(update: SurfaceUpdate) -> None:
    """Curvature, 10-delta RR/BF and the spread statistics: published, plausible, and
    what a subscriber recomputes from the published parameters."""
    wire = encode_surface(update)
    assert encode_surface(decode_surface(wire)) == wire  # NaN != NaN: compare as published
    assert b'"within_spread_fraction":' in wire
    assert b'"rr10":' in wire
    for s in update.slices:
        analytics = (s.atm_curvature, s.rr10, s.bf10, s.half_spread_vol,
                     s.rmse_half_spreads, s.within_spread_fraction)
        assert all(np.isfinite(analytics)), s
        # Decimal vol, and a smile's: a risk reversal of half a vol is a broken solver.
        for rr, bf in ((s.rr10, s.bf10), (s.rr25, s.bf25)):
            assert abs(rr) < 0.5, s
            assert -0.05 < bf < 0.5, s
        assert 0.0 < s.half_spread_vol < 0.2
        assert 0.0 <= s.within_spread_fraction <= 1.0
        # Markov: the share of quotes outside their spread is at most mean(z^2).
        assert 1.0 - s.within_spread_fraction <= s.rmse_half_spreads ** 2 + 1e-12
        client = Slice(s, update.model, update.params)
        theirs = smile_metrics(client.vol_k, s.t)
        # Heston's exact vols fail in the far wings of the shortest expiries (NaN):
        # the publisher reads its smile off a spline, which holds the edge vols.
        for ours, recomputed, tol in ((s.rr10, theirs.rr10, 1e-4), (s.bf10, theirs.bf10, 1e-4),
                                      (s.atm_curvature, theirs.atm_curvature,
                                       1e-2 * abs(theirs.atm_curvature))):
            assert not abs(ours - recomputed) > tol, (s.expiry, ours, recomputed)


async def test_per_underlying_model_override(short_recording: Path) -> None:
    updates = await _replay(short_recording, STREAMER_CALIBRATION__MODELS="{ETH: sabr}")
    models = {u.underlying: u.model for u in updates}
    assert models == {"BTC": "svi", "ETH": "sabr"}
    eth = next(u for u in reversed(updates) if u.underlying == "ETH")
    assert set(eth.slices[0].params) == {"alpha", "beta", "rho", "nu"}


@pytest.mark.parametrize("model", ["sabr", "ssvi"])
async def test_replays_are_deterministic_for_every_model(
        short_recording: Path, model: str) -> None:
    first = await _replay(short_recording, STREAMER_CALIBRATION__MODEL=model)
    second = await _replay(short_recording, STREAMER_CALIBRATION__MODEL=model)
    # Compared as published (NaN as null): NaN never equals itself in a Struct compare.
    def published(u: SurfaceUpdate) -> bytes:
        return encode_surface(msgspec.structs.replace(u, published_ts_ns=0))

    assert [published(u) for u in first] == [published(u) for u in second]


async def test_slices_take_the_venues_forward_unless_told_parity(short_recording: Path) -> None:
    """Deribit's ``underlying_price`` is the forward its IVs are computed on: by default
    each published slice's forward is one the expiry's quotes carried; with
    ``calibration.forward: parity`` it is the call-put estimate instead."""
    from streamer.sources.registry import make_decoder
    from streamer.tickfile import read_tickfile

    decoder = make_decoder("deribit")
    carried: dict[int, set[float]] = {}
    for line in read_tickfile(short_recording):
        for q in decoder.decode(line.raw, line.received_ts_ns).quotes:
            carried.setdefault(q.expiry_ts_ms, set()).add(q.underlying_price)
    venue, parity = (await _replay(short_recording),
                     await _replay(short_recording, STREAMER_CALIBRATION__FORWARD="parity"))
    venue_f = [s.forward for u in venue for s in u.slices]
    assert all(s.forward in carried[s.expiry_ts_ms] for u in venue for s in u.slices)
    off = [s.forward not in carried[s.expiry_ts_ms] for u in parity for s in u.slices]
    assert sum(off) > len(off) // 2
    assert len(venue_f) > 10


def test_only_venues_that_send_their_forward_use_it() -> None:
    from streamer.config import publishes_forward
    from streamer.pipeline.engine import Engine

    config = load_config(None, env={})
    assert [publishes_forward(v) for v in ("deribit", "okx", "bybit", "binance")] == [
        True, True, True, False]
    engines = {v: Engine(v, config.calibration, config.batch, config.dynamics, config.analytics)
               for v in ("deribit", "binance")}
    assert engines["deribit"]._venue_forward
    assert not engines["binance"]._venue_forward
