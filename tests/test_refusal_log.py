"""A refused fit is said once in the log per underlying and reason; the counter keeps count."""

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
        return EngineReport(fallbacks=Counter(self.fallbacks))


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
    assert said == ["BTC: a fit was refused (rmse_too_high): the expiries kept their last "
                    "good slice or were left out; counted in streamer_fallbacks_total from "
                    "now on"]
    assert registry.get_sample_value(
        "streamer_fallbacks_total", {"underlying": "BTC", "reason": "rmse_too_high"}) == 4
