"""The real-chain tick files: Deribit's tick, forwards and capture times read off deltas,
and the bundled files rebuilt byte for byte from /work/shared/data/real."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from streamer.core import black76
from streamer.devtools import real_chains
from streamer.sources.registry import make_decoder
from streamer.tickfile import read_tickfile

DATA = Path(__file__).parent.parent / "data" / "real"
BUNDLED = sorted(DATA.glob("*.ndjson.gz"))


def test_tick_round_follows_deribit_tick_steps() -> None:
    # BTC options: tick 0.0001 below 0.005 BTC, 0.0005 from there; never below 0.0001.
    got = real_chains.tick_round([0.00004, 0.00016, 0.00494, 0.00526, 0.0123, 0.01276])
    np.testing.assert_allclose(got, [0.0001, 0.0002, 0.0049, 0.0055, 0.0125, 0.0130])


def test_capture_time_and_forwards_are_recovered_from_deltas() -> None:
    label_ms = 1_769_130_000_000
    capture_ms = label_ms + 37 * 60_000 + 15_000
    expiries = np.array([label_ms + d * 86_400_000 for d in (1, 8, 36)], np.int64)
    forwards = {int(expiries[0]): 89_500.0, int(expiries[1]): 89_700.0,
                int(expiries[2]): 90_400.0}
    strikes = np.arange(70_000.0, 112_000.0, 2_000.0)
    ex = np.repeat(expiries, strikes.size * 2)
    k = np.tile(np.repeat(strikes, 2), 3)
    call = np.tile([True, False], strikes.size * 3)
    f = np.array([forwards[int(e)] for e in ex])
    t = (ex - capture_ms) / real_chains.YEAR_MS
    vol = 0.45 + 0.5 * np.log(k / f) ** 2
    delta = np.round(black76.delta(f, k, t, vol, call), 5)  # Deribit's 5 decimals
    got_ms, got_f, dispersion = real_chains.recover_capture_and_forwards(
        label_ms, ex, k, call, vol, delta)
    assert got_ms == capture_ms
    for e, fwd in forwards.items():
        assert got_f[e] == pytest.approx(fwd, rel=2e-5)
    assert dispersion < 2e-5


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_bundled_files_decode_to_quotes_without_rejects(path: Path) -> None:
    decoder = make_decoder("deribit")
    quotes = rejects = 0
    for line in read_tickfile(path):
        decoded = decoder.decode(line.raw, line.received_ts_ns)
        quotes += len(decoded.quotes)
        rejects += len(decoded.rejects)
    with gzip.open(real_chains_ref(path), "rt") as ref:
        ref_rows = sum(1 for _ in ref) - 1
    assert rejects == 0
    assert quotes == ref_rows > 500


def real_chains_ref(path: Path) -> Path:
    return path.with_name(path.name.replace(".ndjson.gz", ".ref.csv.gz"))


@pytest.mark.skipif(not real_chains.REAL_DIR.exists(), reason="no /work/shared/data/real")
def test_bundled_files_rebuild_byte_for_byte(tmp_path: Path) -> None:
    written = real_chains.build(tmp_path)
    assert sorted(p.name for p in written) == [p.name for p in BUNDLED]
    for path in written:
        assert path.read_bytes() == (DATA / path.name).read_bytes()
        ref = real_chains_ref(path)
        assert gzip.decompress(ref.read_bytes()) == gzip.decompress(
            (DATA / ref.name).read_bytes())


@pytest.mark.skipif(not real_chains.REAL_DIR.exists(), reason="no /work/shared/data/real")
def test_hourly_snapshots_are_distinct_and_self_consistent() -> None:
    snaps = real_chains.hourly_chains(real_chains.REAL_DIR / real_chains.HOURLY_FILE)
    assert len(snaps) == 34  # 37 labels, 3 exact repeats dropped
    offsets = [s.checks["capture_offset_min"] for s in snaps]
    # PROVENANCE.md: captured 18-50 minutes after the hour label
    assert min(offsets) >= 15
    assert max(offsets) <= 50
    assert max(s.checks["forward_dispersion"] for s in snaps) < 1e-4
    # a call's and a put's delta at one strike differ by 1 (Deribit rounds to 5 decimals)
    assert np.median([s.checks["put_call_delta_gap"] for s in snaps]) < 1e-3
