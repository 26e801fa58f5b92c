"""``streamer backtest``: on worlds whose smile dynamics are known, the matching delta wins.

Worlds from ``streamer synth --dynamics``: sticky strike (each strike keeps its vol, so
the Black-76 delta is the right hedge) and sticky moneyness (each k = ln(K/F) keeps
its vol). Every instrument is requoted together every 2 s so the fitted smiles follow
the world rather than a mix of stale quotes. The experiment is Alexander & Imeraj,
"Delta hedging bitcoin options with a smile", Quantitative Finance 23(5), 2023.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from streamer.backtest import BacktestReport, main
from streamer.devtools.synth import main as synth_main


def _world(tmp_path: Path, dynamics: str) -> Path:
    out = tmp_path / f"{dynamics}.ndjson.gz"
    assert synth_main(["--out", str(out), "--truth", str(tmp_path / f"{dynamics}.json"),
                       "--duration", "60", "--dynamics", dynamics, "--underlying", "BTC",
                       "--seed", "3", "--requote", "2", "--spot-vol", "1.2"]) == 0
    return out


def _report(path: Path, capsys: pytest.CaptureFixture[str]) -> BacktestReport:
    capsys.readouterr()
    assert main([str(path), "--json"]) == 0
    # JSON has no NaN: a rule without data (no measured SSR yet) is null.
    raw = msgspec.json.decode(capsys.readouterr().out)
    for variances in [raw["variance_bp2"], *(b["variance_bp2"] for b in raw["buckets"])]:
        variances.update({r: float("nan") for r, v in variances.items() if v is None})
    return msgspec.convert(raw, BacktestReport)


@pytest.mark.parametrize(("dynamics", "right", "wrong"), [
    ("sticky_strike", "black76", "sticky_moneyness"),
    ("sticky_moneyness", "sticky_moneyness", "black76"),
])
def test_the_delta_of_the_worlds_dynamics_hedges_best(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], dynamics: str, right: str,
        wrong: str) -> None:
    report = _report(_world(tmp_path, dynamics), capsys)
    assert report.steps > 20
    assert report.observations > 1000
    assert report.variance_bp2[right] < report.variance_bp2[wrong]
    assert report.best in (right, "measured_ssr")
    assert {b.tenor for b in report.buckets} >= {"<7d", ">90d"}
    assert sum(b.n for b in report.buckets) == report.observations


def test_a_file_with_nothing_to_hedge_exits_1(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.ndjson"
    empty.write_text("")
    assert main([str(empty)]) == 1
    assert "nothing to hedge" in capsys.readouterr().err


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "absent.ndjson.gz")]) == 2
    assert "no such tick file" in capsys.readouterr().err
