"""The progress line: on stderr, agreeing with /metrics, and a bar only on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from streamer.app.service import Service
from streamer.config import load_config
from streamer.devtools.synth import synthesise
from streamer.telemetry.progress import ProgressBar


def _counter_total(service: Service, name: str) -> float:
    return sum(sample.value for family in service.metrics.registry.collect()
               for sample in family.samples if sample.name == name)


async def test_the_progress_lines_rejected_count_is_the_metrics_rejected_count(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recording = tmp_path / "deribit.ndjson"
    synthesise(recording, tmp_path / "truth.json", duration_s=20.0)
    config = tmp_path / "config.yaml"
    config.write_text(f"sink: stdout\nmetrics: {{port: 0}}\n"
                      f"replay: {{speed: 10, file: {recording}}}\n")
    progress = io.StringIO()
    service = Service(load_config(config, env={}), duration_s=60, progress_stream=progress)
    # Declared at zero before anything happened: rate() sees the first increment.
    assert service.metrics.registry.get_sample_value(
        "streamer_ticks_rejected_total", {"venue": "deribit", "reason": "stale"}) == 0.0
    assert await service.run() == 0
    rejected = _counter_total(service, "streamer_ticks_rejected_total")
    assert rejected > 0  # the wings' missing bids: the engine's rejects, not the decoder's
    assert service.progress.rejected == rejected
    assert capsys.readouterr().out.startswith("{")  # stdout: surfaces only
    # The recording's exchange times are from 2024: no exchange-stage latency (it was all
    # +Inf); the receive stage measures the run.
    stages = {s.labels["stage"]: s.value for family in service.metrics.registry.collect()
              for s in family.samples if s.name == "streamer_tick_to_publish_seconds_count"}
    assert stages.get("exchange", 0.0) == 0.0
    assert stages["receive"] > 0


def test_the_bar_draws_on_a_terminal_at_most_every_period_and_ends_its_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [0.0]
    stream = Terminal()
    bar = ProgressBar("replay f", stream, every_s=1.0, clock=lambda: now[0])
    bar.update(0.25, "3 surfaces")
    bar.update(0.5, "skipped: too soon")
    now[0] = 1.5
    bar.update(0.5, "7 surfaces")
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 2
    assert "25% 3 surfaces" in text
    assert "50% 7 surfaces" in text
    assert "too soon" not in text
    assert text.endswith("\n")


def test_the_bar_is_silent_when_piped() -> None:
    stream = io.StringIO()  # not a terminal
    bar = ProgressBar("replay f", stream)
    bar.update(0.5, "x")
    bar.close()
    assert stream.getvalue() == ""
