"""`streamer synth`: deterministic output, and a truth file that generated the quotes."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from streamer.devtools import synth
from streamer.devtools.synth import START_TS_MS, synthesise
from streamer.devtools.synth_market import SPECS, YEAR_MS, expiries
from streamer.sources.deribit.protocol import parse_instrument_name
from streamer.tickfile import read_tickfile
from streamer.types import expiry_iso

DURATION_S = 3.0


def _tiny(tmp_path: Path, name: str, seed: int, underlyings: tuple[str, ...] = ("ETH",)
          ) -> tuple[Path, Path]:
    out, truth = tmp_path / f"{name}.ndjson", tmp_path / f"{name}.truth.json"
    summary = synthesise(out, truth, seed=seed, duration_s=DURATION_S, underlyings=underlyings)
    assert summary.lines > 0
    assert summary.bytes == out.stat().st_size
    return out, truth


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    first, second = _tiny(tmp_path, "a", 11), _tiny(tmp_path, "b", 11)
    assert first[0].read_bytes() == second[0].read_bytes()
    assert first[1].read_bytes() == second[1].read_bytes()


def test_another_seed_gives_another_market(tmp_path: Path) -> None:
    first, other = _tiny(tmp_path, "a", 11), _tiny(tmp_path, "b", 12)
    assert first[0].read_bytes() != other[0].read_bytes()
    assert json.loads(other[1].read_text())["seed"] == 12


def test_cli_with_the_same_seed_writes_the_same_content(tmp_path: Path) -> None:
    runs = []
    for name in ("one", "two"):
        out = tmp_path / name / "sample.ndjson.gz"
        out.parent.mkdir()
        assert synth.main(["--out", str(out), "--seed", "5", "--duration", "1"]) == 0
        runs.append((gzip.decompress(out.read_bytes()),
                     (out.parent / "sample.truth.json").read_bytes()))
    assert runs[0] == runs[1]
    lines = runs[0][0].splitlines()
    assert lines
    assert {json.loads(line.split(b" ", 1)[1])["params"]["data"]["instrument_name"][:3]
            for line in lines} == {"BTC", "ETH"}


def test_streamer_synth_command_matches_the_library(tmp_path: Path) -> None:
    out = tmp_path / "cli.ndjson"
    proc = subprocess.run([sys.executable, "-m", "streamer.cli", "synth", "--out", str(out),
                           "--seed", "5", "--duration", "1"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrote" in proc.stdout
    lib = tmp_path / "lib.ndjson"
    synthesise(lib, tmp_path / "lib.truth.json", seed=5, duration_s=1.0)
    assert out.read_bytes() == lib.read_bytes()
    assert (tmp_path / "cli.truth.json").read_bytes() == (tmp_path / "lib.truth.json").read_bytes()


def test_gzip_output_does_not_depend_on_the_wall_clock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = []
    for name, now in (("a", 1_000_000.0), ("b", 2_000_000.0)):
        monkeypatch.setattr(gzip, "time", types.SimpleNamespace(time=lambda now=now: now))
        out = tmp_path / name / "sample.ndjson.gz"
        synthesise(out, tmp_path / name / "truth.json", seed=5, duration_s=1.0,
                   underlyings=("ETH",))
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


# -- the truth file is what generated the data ------------------------------------------------

@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[Any]]:
    tmp = tmp_path_factory.mktemp("synth")
    out, truth = tmp / "m.ndjson", tmp / "m.truth.json"
    synthesise(out, truth, seed=21, duration_s=DURATION_S, underlyings=("BTC", "ETH"))
    return json.loads(truth.read_text()), list(read_tickfile(out))


def test_truth_records_the_run_and_the_generator_specs(
        market: tuple[dict[str, Any], list[Any]]) -> None:
    truth, _ = market
    assert truth["seed"] == 21
    assert truth["start_ts_ms"] == START_TS_MS
    assert truth["end_ts_ms"] == START_TS_MS + int(DURATION_S * 1000)
    assert set(truth["underlyings"]) == {"BTC", "ETH"}
    for name, section in truth["underlyings"].items():
        spec = SPECS[name]
        assert section["spec"] == json.loads(json.dumps(spec.__dict__))
        assert section["expiries"] == [
            {"expiry": expiry_iso(e.expiry_ts_ms), "expiry_ts_ms": e.expiry_ts_ms, "label": e.label,
             "svi": e.svi, "basis": spec.basis} for e in expiries(spec, START_TS_MS)]
        path = section["spot_path"]
        assert [ts for ts, _ in path] == [START_TS_MS + i * 1000
                                          for i in range(int(DURATION_S) + 1)]
        assert all(abs(s / spec.spot - 1) < 0.01 for _, s in path)


def test_every_quote_was_priced_from_the_truth_smile_and_basis(
        market: tuple[dict[str, Any], list[Any]]) -> None:
    truth, lines = market
    smiles = {(name, e["expiry_ts_ms"]): (e["svi"], e["basis"])
              for name, section in truth["underlyings"].items() for e in section["expiries"]}
    received = [line.received_ts_ns for line in lines]
    assert received == sorted(received)
    for line in lines:
        data = json.loads(line.raw)["params"]["data"]
        info = parse_instrument_name(data["instrument_name"])
        assert info is not None
        svi, basis = smiles[(info.underlying, info.expiry_ts_ms)]
        ts = data["timestamp"]
        assert truth["start_ts_ms"] <= ts < truth["end_ts_ms"]
        assert 1_000_000 <= line.received_ts_ns - ts * 1_000_000 < 20_000_000
        t = (info.expiry_ts_ms - ts) / YEAR_MS
        fwd = data["underlying_price"]
        assert fwd == pytest.approx(data["index_price"] * math.exp(basis * t), abs=0.011)
        x = math.log(info.strike / fwd) - svi["m"]
        w = svi["a"] + svi["b"] * (svi["rho"] * x + math.sqrt(x * x + svi["sigma"] ** 2))
        assert data["mark_iv"] == pytest.approx(100 * math.sqrt(w / t), abs=0.0051)
        bid, ask = data["best_bid_price"], data["best_ask_price"]
        assert ask > bid >= 0
