"""``streamer plot``: a replayed tick file becomes smile, term-structure and dynamics PNGs."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.devtools.synth import synthesise
from streamer.plot import main  # imports matplotlib only when drawing

pytest.importorskip("matplotlib", reason="streamer plot needs the [plot] extra")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tick_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plot") / "lv.ndjson"
    synthesise(path, path.with_suffix(".truth.json"), seed=2, duration_s=30.0,
               underlyings=("ETH",), dynamics="local_vol", spot_vol=8.0, requote_s=3.0)
    return path


def test_plot_writes_three_pngs_per_underlying(tick_file: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "img"
    assert main([str(tick_file), "--out", str(out), "--min-move", "0.0005"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["dynamics_ETH.png", "smiles_ETH.png", "term_ETH.png"]
    for png in out.iterdir():
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 20_000  # axes, curves and labels, not an empty canvas
    assert capsys.readouterr().out.count("wrote ") == 3


def test_plot_of_an_underlying_not_in_the_file_writes_nothing(tick_file: Path,
                                                             tmp_path: Path) -> None:
    assert main([str(tick_file), "--out", str(tmp_path), "--underlying", "BTC"]) == 0
    assert list(tmp_path.iterdir()) == []


def test_plot_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    assert main([str(tmp_path / "nope.ndjson"), "--out", str(tmp_path)]) == 2
