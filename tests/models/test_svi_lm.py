"""The SVI fit's C kernels (``_svi_lm.c``) against the numpy paths they replace.

The contract (streamer/core/models/svi_lm.py): the same fits up to rounding. Checked on
the bundled real Deribit hourly chain through the engine (every published slice), and on
synthetic chains built to reach the paths a real chain rarely does: ask-only quotes,
slices of very different lengths (padding), narrow k spans (the priors), cold
multi-start fits, slices whose grid has no curvature.
"""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer.config import load_config
from streamer.core.models import svi, svi_lm
from streamer.pipeline.engine import Engine
from streamer.sources.registry import make_decoder
from streamer.tickfile import read_tickfile

HOURLY = Path(__file__).parent.parent / "data" / "real" / "deribit_btc_hourly_2026-01-23.ndjson.gz"


def _banded_chain(seed: int) -> tuple[list[Any], ...]:
    rng = np.random.default_rng(seed)
    ks, ivs, ts, bids, asks = [], [], [], [], []
    for i in range(9):
        n = int(rng.integers(5, 60))
        narrow = i == 3  # a few quotes around the money: the priors hold sigma and m
        k = np.sort(rng.uniform(-0.05, 0.04, n) if narrow else rng.uniform(-0.7, 0.5, n))
        t = float(rng.uniform(0.005, 1.5))
        w = svi.total_variance(k, svi.SVIParams(a=0.04 * t, b=0.1 * np.sqrt(t), rho=-0.3,
                                                 m=0.02, sigma=0.1))
        iv = np.sqrt(w / t) + rng.normal(0.0, 0.004, n)
        half = rng.uniform(0.001, 0.04, n)
        bid, ask = iv - half, iv + half
        ask_only = rng.random(n) < 0.1  # no bid: an upper bound only, no mid
        bid[ask_only], iv[ask_only] = np.nan, np.nan
        ks.append(k), ivs.append(np.where(ask_only, ask, iv)), ts.append(t)
        bids.append(bid), asks.append(ask)
    return ks, ivs, ts, bids, asks


def _assert_same_fits(got: list[Any], want: list[Any], ks: list[Any]) -> None:
    """Rounding may take a long fit a few steps another way (the step counts then
    differ), not to another fit: over each slice's quoted k the smiles agree to far
    below a vol tick (outside it a narrow slice's wings are not pinned by anything)."""
    assert [f.status for f in got] == [f.status for f in want]
    for a, b, k in zip(got, want, ks, strict=True):
        np.testing.assert_allclose(svi.total_variance(k, a.params),
                                   svi.total_variance(k, b.params), rtol=1e-7, atol=1e-10)
        assert a.rmse_vol == pytest.approx(b.rmse_vol, rel=1e-7, abs=1e-10)


@pytest.mark.parametrize("seed", range(6))
def test_cold_and_warm_chain_fits_are_the_numpy_fits(kernels: svi_lm.Kernels, numpy_path: Any,
                                                     seed: int) -> None:
    ks, ivs, ts, bids, asks = _banded_chain(seed)
    cold = svi.calibrate_chain(ks, ivs, ts, bid_ivs=bids, ask_ivs=asks)
    _assert_same_fits(cold, numpy_path(
        lambda: svi.calibrate_chain(ks, ivs, ts, bid_ivs=bids, ask_ivs=asks)), ks)
    assert all(f.ok for f in cold)
    # warm from parameters a little off, so the refinement has steps to take
    previous = [svi.SVIParams(**{k: v * 1.05 for k, v in f.params.as_dict().items()})
                for f in cold]
    warm = svi.calibrate_chain(ks, ivs, ts, previous=previous, bid_ivs=bids, ask_ivs=asks)
    assert sum(f.iterations for f in warm) > 0
    _assert_same_fits(warm, numpy_path(lambda: svi.calibrate_chain(
        ks, ivs, ts, previous=previous, bid_ivs=bids, ask_ivs=asks)), ks)


def test_mid_only_least_squares_is_the_numpy_fit(kernels: svi_lm.Kernels,
                                                 numpy_path: Any) -> None:
    ks, ivs, ts, _, _ = _banded_chain(7)
    ivs = [np.where(np.isfinite(v), v, 0.5) for v in ivs]
    weights = [np.linspace(0.5, 2.0, k.size) for k in ks]
    got = svi.calibrate_chain(ks, ivs, ts, weights)
    _assert_same_fits(got, numpy_path(lambda: svi.calibrate_chain(ks, ivs, ts, weights)), ks)


def test_a_slice_with_no_curvature_on_its_grid_starts_flat_on_both_paths(
        kernels: svi_lm.Kernels, numpy_path: Any) -> None:
    # a smile that falls off like a frown: no grid point has c > 0
    k = np.linspace(-0.3, 0.3, 12)
    iv = 0.6 - 0.5 * k * k
    got = svi._seed_grid(svi._pad([svi._Slice(k, iv, np.ones(k.size), None, None)], [0.2]), 3)
    want = numpy_path(lambda: svi._seed_grid(
        svi._pad([svi._Slice(k, iv, np.ones(k.size), None, None)], [0.2]), 3))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def _published(limit: int) -> list[tuple[int, str, list[float]]]:
    config = load_config(None, env={})
    engine = Engine("deribit", config.calibration, config.batch, config.dynamics,
                    config.analytics)
    decoder = make_decoder("deribit")
    out = []
    for line in itertools.islice(read_tickfile(HOURLY), limit):
        for quote in decoder.decode(line.raw, line.received_ts_ns).quotes:
            engine.on_quote(quote)
        for update in engine.on_timer(line.received_ts_ns):
            out += [(s.expiry_ts_ms, s.status, s.params, np.linspace(s.k_min, s.k_max, 41))
                    for s in update.slices]
    return out


def test_the_real_hourly_chain_publishes_the_same_slices(kernels: svi_lm.Kernels,
                                                         numpy_path: Any) -> None:
    """Slice by slice, the same smiles over each one's quoted range (the criterion of
    :func:`_assert_same_fits`: warm starts carry rounding from batch to batch, and a
    parameter along a flat direction of the fit may move by 1e-7 with the smile still)."""
    with gzip.open(HOURLY, "rt") as f:  # the head of the file: its first snapshots
        limit = sum(1 for _ in itertools.islice(f, 4000))
    got, want = _published(limit), numpy_path(lambda: _published(limit))
    assert len(got) == len(want) > 50
    for (e1, s1, p1, k), (e2, s2, p2, _) in zip(got, want, strict=True):
        assert (e1, s1) == (e2, s2)
        np.testing.assert_allclose(svi.total_variance(k, svi.SVIParams.from_dict(p1)),
                                   svi.total_variance(k, svi.SVIParams.from_dict(p2)),
                                   rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("bad", ["short", "float32", "strided"])
def test_kernels_refuse_wrong_buffers_with_a_clear_error(kernels: svi_lm.Kernels,
                                                         bad: str) -> None:
    n, m = 2, 4
    k = np.zeros((n, m))
    if bad == "short":
        k = np.zeros(n * m - 1)
    elif bad == "float32":
        k = np.zeros((n, m), np.float32)
    elif bad == "strided":
        k = np.zeros((n, 2 * m))[:, ::2]
    band = [np.zeros((n, m))] * 6
    with pytest.raises((ValueError, BufferError)):
        kernels.lm(k, *band, np.ones(n), np.zeros(n), np.zeros(n), np.ones(n),
                   np.arange(n, dtype=np.int64), np.zeros((n, 5)), np.zeros(n, np.int64),
                   np.zeros(n, np.int64),
                   np.zeros(n, np.bool_), n, 10, 1e-10, 1.0, 1e-12, 1e-3, 1e-12, 1e12, 1e-10)
