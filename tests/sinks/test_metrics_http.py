"""The /metrics, /healthz and /readyz endpoint over a real loopback socket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamer import __version__
from streamer.telemetry.metrics import METRIC_NAMES, Health, HttpServerHandle, Metrics, serve_http


async def request(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    assert int(headers["content-length"]) == len(body)
    return int(status_line.split(" ")[1]), headers, body


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[Metrics, Health, HttpServerHandle]]:
    metrics, health = Metrics(), Health(stale_after_s=30.0)
    handle = await serve_http(metrics, health, "127.0.0.1", 0)
    yield metrics, health, handle
    await handle.close()


def _observe_each(m: Metrics) -> None:
    """One observation of every metric family."""
    m.tick_to_publish_seconds.labels(stage="receive").observe(0.004)
    m.calibration_seconds.labels(model="svi", underlying="BTC").observe(0.002)
    m.kafka_send_seconds.observe(0.001)
    m.event_loop_lag_seconds.observe(0.0001)
    m.ticks_total.labels(venue="deribit").inc()
    m.ticks_rejected_total.labels(venue="deribit", reason="crossed").inc()
    m.surfaces_published_total.labels(underlying="BTC").inc()
    m.ws_reconnects_total.labels(venue="deribit").inc()
    m.kafka_errors_total.labels(reason="KafkaConnectionError").inc()
    m.kafka_conflated_total.inc()
    m.pending_surfaces.set(1)
    m.fit_rmse_vol.labels(underlying="BTC", stat="max").set(0.004)
    m.surface_age_seconds.labels(underlying="BTC").set(0.1)
    m.fallbacks_total.labels(underlying="BTC", reason="rmse").inc()
    m.arbitrage_violations_total.labels(underlying="BTC", kind="butterfly").inc()
    m.slices_fitted_total.labels(underlying="BTC", status="warm").inc()
    m.venue_connected.labels(venue="deribit").set(1)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _exposed_names(text: str) -> set[str]:
    """Family names as exposed: counters with ``_total``; ``_created`` companions left out."""
    return {f.name + "_total" if f.type == "counter" else f.name
            for f in text_string_to_metric_families(text) if not f.name.endswith("_created")}


async def test_metrics_exposes_every_documented_family_after_one_observation(
        endpoint: tuple[Metrics, Health, HttpServerHandle]) -> None:
    metrics, _, handle = endpoint
    _observe_each(metrics)
    status, headers, body = await request(handle.port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert {n for n in _exposed_names(text) if n.startswith("streamer_")} == set(METRIC_NAMES)
    samples = _samples(text)
    assert samples[("streamer_ticks_total", (("venue", "deribit"),))] == 1.0
    assert samples[("streamer_ticks_rejected_total",
                    (("reason", "crossed"), ("venue", "deribit")))] == 1.0
    assert samples[("streamer_tick_to_publish_seconds_count", (("stage", "receive"),))] == 1.0
    assert samples[("streamer_build_info", (("version", __version__),))] == 1.0


async def test_metrics_reports_surface_age_from_the_last_publish(
        endpoint: tuple[Metrics, Health, HttpServerHandle]) -> None:
    _, health, handle = endpoint
    health.set_published("deribit:BTC", time.time() - 12.0)
    _, _, body = await request(handle.port, "/metrics")
    age = _samples(body.decode())[("streamer_surface_age_seconds", (("underlying", "BTC"),))]
    assert age >= 12.0


async def test_healthz_is_ok_while_the_process_serves(
        endpoint: tuple[Metrics, Health, HttpServerHandle]) -> None:
    _, _, handle = endpoint
    status, headers, body = await request(handle.port, "/healthz")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"status": "ok"}


async def _ready(port: int) -> tuple[int, dict[str, Any]]:
    status, _, body = await request(port, "/readyz")
    return status, json.loads(body)


async def test_readyz_fails_before_a_publish_passes_after_and_fails_when_stale(
        endpoint: tuple[Metrics, Health, HttpServerHandle]) -> None:
    _, health, handle = endpoint
    status, body = await _ready(handle.port)
    assert status == 503
    assert body["ready"] is False
    assert set(body["problems"]) == {"no venue connected yet", "broker not reachable",
                                     "no surface published yet"}

    health.set_venue("deribit", True)
    health.set_broker(True)
    status, body = await _ready(handle.port)
    assert (status, body["problems"]) == (503, ["no surface published yet"])

    health.set_published("deribit:BTC", time.time())
    status, body = await _ready(handle.port)
    assert (status, body["ready"], body["problems"]) == (200, True, [])
    assert set(body["surface_age_s"]) == {"deribit:BTC"}

    # The endpoint reads the wall clock; a publish older than stale_after_s is stale.
    health.set_published("deribit:BTC", time.time() - health.stale_after_s - 5.0)
    status, body = await _ready(handle.port)
    assert status == 503
    assert len(body["problems"]) == 1
    assert body["problems"][0].startswith("surface deribit:BTC stale for")


async def test_readyz_fails_when_a_venue_or_the_broker_goes_down(
        endpoint: tuple[Metrics, Health, HttpServerHandle]) -> None:
    _, health, handle = endpoint
    health.set_venue("deribit", True)
    health.set_broker(True)
    health.set_published("deribit:BTC", time.time())
    assert (await _ready(handle.port))[0] == 200
    health.set_venue("deribit", False)
    status, body = await _ready(handle.port)
    assert (status, body["problems"]) == (503, ["venue deribit not connected"])
    health.set_venue("deribit", True)
    health.set_broker(False)
    status, body = await _ready(handle.port)
    assert (status, body["problems"]) == (503, ["broker not reachable"])


def test_readiness_with_an_injected_clock() -> None:
    health = Health(stale_after_s=30.0, venues={"deribit": True}, broker_ok=True)
    health.set_published("deribit:BTC", 1_000.0)
    assert health.readiness(1_029.0)[0] is True
    assert health.readiness(1_030.0)[0] is True  # at the limit, still fresh
    ready, body = health.readiness(1_031.0)
    assert ready is False
    assert body["problems"] == ["surface deribit:BTC stale for 31.0s"]
    assert body["surface_age_s"] == {"deribit:BTC": 31.0}


async def test_unknown_path_is_404_and_other_methods_405(
        endpoint: tuple[Metrics, Health, HttpServerHandle]) -> None:
    _, _, handle = endpoint
    assert (await request(handle.port, "/nope"))[0] == 404
    assert (await request(handle.port, "/metrics", method="POST"))[0] == 405
    status, _, _ = await request(handle.port, "/metrics?x=1")
    assert status == 200


async def test_a_client_that_sends_garbage_does_not_stop_the_server(
        endpoint: tuple[Metrics, Health, HttpServerHandle]) -> None:
    _, _, handle = endpoint
    reader, writer = await asyncio.open_connection("127.0.0.1", handle.port)
    writer.write(b"\x00\x01 not http\r\n\r\n")
    await writer.drain()
    await reader.read()
    writer.close()
    await writer.wait_closed()
    assert (await request(handle.port, "/healthz"))[0] == 200


def test_a_surface_republished_over_frozen_market_data_ages_and_fails_readiness() -> None:
    # A replay looping without re-timing: surfaces keep coming, their quotes do not move.
    health = Health(stale_after_s=30.0, venues={"deribit": True}, broker_ok=True)
    health.set_published("deribit:BTC", 1_000.0, exchange_ts_ms=5_000, received_s=999.5)
    for second in range(1, 40):
        health.set_published("deribit:BTC", 1_000.0 + second, exchange_ts_ms=5_000,
                             received_s=1_000.0 + second)
    ready, body = health.readiness(1_040.0)
    assert ready is False
    assert body["surface_age_s"] == {"deribit:BTC": 40.5}
    # Market data moving on again: fresh from the newest quote's receive time.
    health.set_published("deribit:BTC", 1_041.0, exchange_ts_ms=5_001, received_s=1_040.8)
    ready, body = health.readiness(1_041.0)
    assert ready is True
    assert body["surface_age_s"] == {"deribit:BTC": 0.2}


def test_process_metrics_are_exported_beside_ours() -> None:
    text = Metrics().render().decode()
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                 "process_open_fds"):
        assert f"\n{name} " in text, name


def test_every_labelled_counter_is_at_zero_from_start_for_its_known_labels() -> None:
    metrics = Metrics()
    metrics.declare(["deribit", "okx"], ["BTC", "ETH", "BTC"])
    samples = _samples(metrics.render().decode())
    zero = [
        ("streamer_ticks_total", (("venue", "okx"),)),
        ("streamer_ws_reconnects_total", (("venue", "deribit"),)),
        ("streamer_ticks_rejected_total", (("reason", "no_bid"), ("venue", "deribit"))),
        ("streamer_ticks_rejected_total", (("reason", "stale"), ("venue", "okx"))),
        ("streamer_ticks_rejected_total", (("reason", "malformed"), ("venue", "okx"))),
        ("streamer_surfaces_published_total", (("underlying", "ETH"),)),
        ("streamer_fallbacks_total", (("reason", "rmse_too_high"), ("underlying", "BTC"))),
        ("streamer_slices_fitted_total", (("status", "stale"), ("underlying", "ETH"))),
        ("streamer_arbitrage_violations_total", (("kind", "calendar"), ("underlying", "BTC"))),
        ("streamer_kafka_errors_total", (("reason", "ack_timeout"),)),
    ]
    for key in zero:
        assert samples[key] == 0.0, key


def test_every_reason_the_code_counts_is_declared_at_zero() -> None:
    """Each reject or fallback reason written as a literal where quotes and fits are
    judged (decoders, sessions, calibrator) is among the labels declared at start."""
    import re
    from pathlib import Path

    import streamer
    from streamer.telemetry.metrics import FALLBACK_REASONS, REJECT_REASONS, SLICE_STATUSES

    root = Path(streamer.__file__).parent
    pattern = re.compile(r'(?:return|append\(|reject\([^,()]*,|reason =|keep\([^)]*,) *"([a-z_]+)"')
    found = {m for folder in ("sources", "pipeline")
             for path in (root / folder).rglob("*.py")
             for m in pattern.findall(path.read_text())}
    assert {"stream_silent", "no_underlying_price", "too_few_quotes"} <= found  # it scans
    # (the calibrator's keep(previous, snap, <status>, <reason>) names a status too)
    assert found - set(REJECT_REASONS) - set(FALLBACK_REASONS) - set(SLICE_STATUSES) == set()
