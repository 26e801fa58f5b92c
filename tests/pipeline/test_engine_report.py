"""The engine's numbers for the metrics: drain_report hands over what happened since the
previous call (and only that), and apply_report turns it into metric increments."""

from __future__ import annotations

from collections import Counter

import msgspec
from prometheus_client import CollectorRegistry

from streamer.app.service import apply_report
from streamer.config import BatchConfig, CalibrationConfig
from streamer.pipeline.engine import Engine, EngineReport
from streamer.telemetry.metrics import Metrics
from tests.pipeline.chain import NOW_NS, chain_quotes

DAYS = (7, 20)


def _feed(engine: Engine, received_ns: int, crossed: int = 0) -> None:
    quotes = chain_quotes(DAYS, received_ns=received_ns)
    for i in range(crossed):  # out-of-the-money calls, so each would have been used
        q = quotes[len(quotes) // 4 + 1 + i]
        quotes[len(quotes) // 4 + 1 + i] = msgspec.structs.replace(q, bid_price=2 * q.ask_price)
    for quote in quotes:
        engine.on_quote(quote)


def test_drain_report_gives_the_numbers_since_the_previous_call() -> None:
    engine = Engine("deribit", CalibrationConfig(), BatchConfig())
    _feed(engine, NOW_NS, crossed=2)
    (update,) = engine.flush(NOW_NS)
    report = engine.drain_report()
    assert report.rejects == {("deribit", "crossed"): 2}
    assert report.slices == {("BTC", "cold"): len(DAYS)}
    assert [key for key, _ in report.calibration_seconds] == [("svi", "BTC")]
    assert report.rmse["BTC"][0] == max(s.rmse_vol for s in update.slices)
    assert report.fallbacks == {}
    assert report.deferred_slices == 0
    assert engine.drain_report() == EngineReport()  # handed over once
    _feed(engine, NOW_NS + 1)
    engine.flush(NOW_NS + 1)
    again = engine.drain_report()
    assert again.rejects == {}  # the crossed quotes were replaced
    assert again.slices == {("BTC", "warm"): len(DAYS)}


def test_a_later_report_adds_to_an_earlier_one() -> None:
    first = EngineReport(rejects=Counter({("deribit", "crossed"): 2}),
                         calibration_seconds=[(("svi", "BTC"), 0.5)],
                         slices=Counter({("BTC", "cold"): 3}), rmse={"BTC": (0.02, 0.01)},
                         deferred_slices=1)
    first.add(EngineReport(rejects=Counter({("deribit", "crossed"): 1, ("deribit", "stale"): 4}),
                           calibration_seconds=[(("svi", "BTC"), 0.25)],
                           fallbacks=Counter({("BTC", "rmse_too_high"): 1}),
                           arbitrage=Counter({("BTC", "calendar"): 2}),
                           rmse={"BTC": (0.03, 0.02)}, deferred_slices=2))
    assert first == EngineReport(
        rejects=Counter({("deribit", "crossed"): 3, ("deribit", "stale"): 4}),
        calibration_seconds=[(("svi", "BTC"), 0.5), (("svi", "BTC"), 0.25)],
        fallbacks=Counter({("BTC", "rmse_too_high"): 1}), slices=Counter({("BTC", "cold"): 3}),
        arbitrage=Counter({("BTC", "calendar"): 2}), rmse={"BTC": (0.03, 0.02)},
        deferred_slices=3)


class _Engine:
    """Hands out the given reports in turn, as Engine.drain_report would."""

    def __init__(self, *reports: EngineReport) -> None:
        self.reports = list(reports)

    def drain_report(self) -> EngineReport:
        return self.reports.pop(0)


def test_apply_report_turns_each_report_into_metric_increments() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry=registry)
    report = EngineReport(rejects=Counter({("deribit", "crossed"): 2, ("deribit", "stale"): 3}),
                          calibration_seconds=[(("svi", "BTC"), 0.5)],
                          slices=Counter({("BTC", "warm"): 4}),
                          arbitrage=Counter({("BTC", "butterfly"): 1}),
                          rmse={"BTC": (0.03, 0.01)})
    later = EngineReport(rejects=Counter({("deribit", "crossed"): 1}),
                         rmse={"BTC": (0.02, 0.015)})
    engine = _Engine(report, later)
    assert apply_report(metrics, engine) == 5  # type: ignore[arg-type]
    assert apply_report(metrics, engine) == 1  # type: ignore[arg-type]

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("streamer_ticks_rejected_total", venue="deribit", reason="crossed") == 3
    assert sample("streamer_ticks_rejected_total", venue="deribit", reason="stale") == 3
    assert sample("streamer_calibration_seconds_count", model="svi", underlying="BTC") == 1
    assert sample("streamer_calibration_seconds_sum", model="svi", underlying="BTC") == 0.5
    assert sample("streamer_slices_fitted_total", underlying="BTC", status="warm") == 4
    assert sample("streamer_arbitrage_violations_total", underlying="BTC",
                  kind="butterfly") == 1
    assert sample("streamer_fit_rmse_vol", underlying="BTC", stat="worst") == 0.02  # the latest
    assert sample("streamer_fit_rmse_vol", underlying="BTC", stat="median") == 0.015
