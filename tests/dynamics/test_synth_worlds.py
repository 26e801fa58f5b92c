"""The synthesiser's dynamics switch: the default is untouched, the worlds move as named."""

from __future__ import annotations

import gzip
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from streamer.devtools import synth
from streamer.devtools.exchanges import bundled_sample
from streamer.devtools.synth import START_TS_MS, synthesise
from streamer.devtools.synth_market import SPECS, WORLDS
from streamer.sources.deribit.protocol import parse_instrument_name
from streamer.tickfile import read_tickfile


def test_the_default_world_still_writes_the_bundled_sample(tmp_path: Path) -> None:
    out = tmp_path / "sample.ndjson.gz"
    assert synth.main(["--out", str(out), "--seed", "7"]) == 0
    bundled = bundled_sample()
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(bundled.read_bytes())
    truth = bundled.with_name("deribit_sample.truth.json")
    assert (tmp_path / "sample.truth.json").read_bytes() == truth.read_bytes()
    assert "dynamics" not in json.loads(truth.read_text())


def _data(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line.raw)["params"]["data"] for line in read_tickfile(path)]


def _svi_vol(svi: dict[str, float], k: float, t: float) -> float:
    x = k - svi["m"]
    w = svi["a"] + svi["b"] * (svi["rho"] * x + math.sqrt(x * x + svi["sigma"] ** 2))
    return math.sqrt(w / t)


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_each_world_prices_quotes_from_the_smile_read_at_k_plus_ssr_ln_s(
        tmp_path: Path, world: str) -> None:
    out, truth_path = tmp_path / "w.ndjson", tmp_path / "w.truth.json"
    synthesise(out, truth_path, seed=3, duration_s=20.0, underlyings=("ETH",),
               dynamics=world, spot_vol=3.0)
    truth = json.loads(truth_path.read_text())
    assert truth["dynamics"] == {"world": world, "ssr": WORLDS[world], "requote_ms": None}
    assert truth["underlyings"]["ETH"]["spec"]["annual_vol"] == 3.0
    smiles = {e["expiry_ts_ms"]: e["svi"] for e in truth["underlyings"]["ETH"]["expiries"]}
    s0 = SPECS["ETH"].spot
    for data in _data(out):
        info = parse_instrument_name(data["instrument_name"])
        assert info is not None
        t = (info.expiry_ts_ms - data["timestamp"]) / (365 * 86_400_000)
        k = math.log(info.strike / data["underlying_price"])
        # mark_iv is rounded to 0.01, so 0.005 off at most; the spot behind index_price was
        # rounded to 0.01 too: the smile was read somewhere between these two points.
        vols = [100 * _svi_vol(smiles[info.expiry_ts_ms],
                               k + WORLDS[world] * math.log((data["index_price"] + d) / s0), t)
                for d in (-0.005, 0.005)]
        assert min(vols) - 0.00501 <= data["mark_iv"] <= max(vols) + 0.00501


def test_under_sticky_strike_an_instruments_vol_stays_while_spot_moves(tmp_path: Path) -> None:
    out = tmp_path / "s.ndjson"
    synthesise(out, tmp_path / "s.truth.json", seed=4, duration_s=30.0, underlyings=("ETH",),
               dynamics="sticky_strike", spot_vol=5.0)
    by_name: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for data in _data(out):
        info = parse_instrument_name(data["instrument_name"])
        assert info is not None
        t = (info.expiry_ts_ms - data["timestamp"]) / (365 * 86_400_000)
        # Each expiry's total variance w(K) is fixed, so iv * sqrt(t) is what must stay.
        by_name[data["instrument_name"]].append((data["index_price"],
                                                 data["mark_iv"] * math.sqrt(t)))
    spot = [p for rows in by_name.values() for p, _ in rows]
    assert max(spot) / min(spot) > 1.005  # spot did move
    for rows in by_name.values():  # two roundings of mark_iv to 0.01, times sqrt(t) < 1
        assert max(v for _, v in rows) - min(v for _, v in rows) <= 0.0101


def test_requote_mode_refreshes_every_instrument_at_once(tmp_path: Path) -> None:
    out = tmp_path / "r.ndjson"
    summary = synthesise(out, tmp_path / "r.truth.json", seed=5, duration_s=6.0,
                         underlyings=("ETH",), dynamics="local_vol", requote_s=2.0)
    rows = _data(out)
    times = sorted({d["timestamp"] for d in rows})
    assert times == [START_TS_MS, START_TS_MS + 2000, START_TS_MS + 4000]
    assert summary.lines == 3 * summary.instruments
    for ts in times:  # one spot per requote: a consistent chain
        assert len({d["index_price"] for d in rows if d["timestamp"] == ts}) == 1


def test_an_unknown_world_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dynamics"):
        synthesise(tmp_path / "x.ndjson", tmp_path / "x.json", dynamics="sticky_delta")
    with pytest.raises(SystemExit):
        synth.main(["--out", str(tmp_path / "x.ndjson"), "--dynamics", "sticky_delta"])
