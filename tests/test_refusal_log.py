"""A refused fit is said once in the log per underlying, reason and burst; the counter keeps
count."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from streamer.app import service as app
from streamer.pipeline.engine import EngineReport
from streamer.telemetry.metrics import Metrics


class _Engine:
    def __init__(self, fallbacks: dict[tuple[str, str], int]) -> None:
        self.fallbacks = fallbacks

    def drain_report(self) -> EngineReport:
        # every report calibrated BTC once (a burst ends on one without the refusal)
        return EngineReport(fallbacks=Counter(self.fallbacks),
                            calibration_seconds=[(("ssvi", "BTC"), 0.001)])


def test_the_first_refusal_of_each_reason_is_logged_once_and_every_one_counted(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "_REFUSALS_SAID", set())
    registry = CollectorRegistry()
    metrics = Metrics(registry=registry)
    engine = cast(Any, _Engine({("BTC", "rmse_too_high"): 2, ("BTC", "too_few_quotes"): 5}))
    with caplog.at_level(logging.WARNING, logger="streamer.app.service"):
        app.apply_report(metrics, engine)
        app.apply_report(metrics, engine)
    said = [r.getMessage() for r in caplog.records]
    assert said == [_SAID]
    assert registry.get_sample_value(
        "streamer_fallbacks_total", {"underlying": "BTC", "reason": "rmse_too_high"}) == 4


_SAID = ("BTC: a fit was refused (rmse_too_high): the expiries were fitted by the per-slice "
         "fallback, kept their last good slice or were left out; counted in "
         "streamer_fallbacks_total until the refusals stop")


def test_a_refusal_is_said_again_after_a_batch_without_it(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "_REFUSALS_SAID", set())
    metrics = Metrics(registry=CollectorRegistry())
    refusing = cast(Any, _Engine({("BTC", "rmse_too_high"): 1}))
    quiet = cast(Any, _Engine({}))
    idle = cast(Any, type("Idle", (), {"drain_report": lambda self: EngineReport()})())
    with caplog.at_level(logging.WARNING, logger="streamer.app.service"):
        for engine in (refusing, refusing, idle, refusing, quiet, refusing):
            app.apply_report(metrics, engine)
    # no calibration at all (idle) does not end the burst; a calibration without it does
    assert [r.getMessage() for r in caplog.records] == [_SAID, _SAID]
