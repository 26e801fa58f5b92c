"""Prometheus metrics, health state and the /metrics, /healthz, /readyz HTTP endpoint.

Names follow Prometheus conventions (base units, ``_total`` counters) and label
sets are bounded (venues, underlyings, reasons from fixed vocabularies). Each
``Metrics`` owns its registry, so tests can make as many as they like.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streamer import __version__
from streamer.core.quotes import QuoteReject
from streamer.errors import listen_error

LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                     0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every metric family streamer exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        b = LATENCY_BUCKETS_S
        self.tick_to_publish_seconds = Histogram(
            "streamer_tick_to_publish_seconds", "Newest tick of a batch to producer ack "
            "(stage=receive: from receive time; stage=exchange: from exchange timestamp)",
            ["stage"], buckets=b, registry=r)
        self.calibration_seconds = Histogram(
            "streamer_calibration_seconds", "Calibration time of one batch",
            ["model", "underlying"], buckets=b, registry=r)
        self.kafka_send_seconds = Histogram(
            "streamer_kafka_send_seconds", "Send to acknowledgement of a batch of surfaces",
            buckets=b, registry=r)
        self.event_loop_lag_seconds = Histogram(
            "streamer_event_loop_lag_seconds", "Event-loop scheduling delay", buckets=b,
            registry=r)
        self.ticks_total = Counter("streamer_ticks", "Quotes accepted from venues", ["venue"],
                                   registry=r)
        self.ticks_rejected_total = Counter(
            "streamer_ticks_rejected", "Messages or quotes dropped, by reason",
            ["venue", "reason"], registry=r)
        self.surfaces_published_total = Counter(
            "streamer_surfaces_published", "Surfaces acknowledged by the sink", ["underlying"],
            registry=r)
        self.ws_reconnects_total = Counter("streamer_ws_reconnects", "Websocket reconnects",
                                           ["venue"], registry=r)
        self.kafka_errors_total = Counter("streamer_kafka_errors", "Kafka publish failures",
                                          ["reason"], registry=r)
        self.kafka_conflated_total = Counter(
            "streamer_kafka_conflated", "Pending surfaces replaced by a newer one", registry=r)
        self.pending_surfaces = Gauge("streamer_pending_surfaces",
                                      "Surfaces waiting for the broker", registry=r)
        self.fit_rmse_vol = Gauge("streamer_fit_rmse_vol", "Fit RMSE in vol, over slices",
                                  ["underlying", "stat"], registry=r)
        self.surface_age_seconds = Gauge(
            "streamer_surface_age_seconds", "Age of the market data behind the last published "
            "surface: time since its newest quote's exchange time last moved on",
            ["underlying"], registry=r)
        self.fallbacks_total = Counter(
            "streamer_fallbacks", "Fits refused, by reason: the slices kept their last good "
            "fit, were fitted by the per-slice fallback, or were left out",
            ["underlying", "reason"], registry=r)
        self.arbitrage_violations_total = Counter(
            "streamer_arbitrage_violations", "Published slices failing a no-arbitrage check",
            ["underlying", "kind"], registry=r)
        self.slices_fitted_total = Counter("streamer_slices_fitted", "Slices by fit status",
                                           ["underlying", "status"], registry=r)
        self.venue_connected = Gauge("streamer_venue_connected", "1 while the venue session is up",
                                     ["venue"], registry=r)
        self.build_info = Gauge("streamer_build_info", "Build information", ["version"],
                                registry=r)
        self.build_info.labels(version=__version__).set(1)
        # process_*: resident memory, CPU seconds, open files (Linux /proc).
        ProcessCollector(registry=r)

    def declare(self, venues: Iterable[str], underlyings: Iterable[str]) -> None:
        """Every labelled counter at zero for its known labels, before anything happens.

        ``rate()`` and alerts need the series to exist before the first increment
        (a first reject would otherwise be invisible to ``increase``).
        """
        venues, underlyings = sorted(set(venues)), sorted(set(underlyings))
        for venue in venues:
            self.ticks_total.labels(venue=venue)
            self.ws_reconnects_total.labels(venue=venue)
            for reason in REJECT_REASONS:
                self.ticks_rejected_total.labels(venue=venue, reason=reason)
        for underlying in underlyings:
            self.surfaces_published_total.labels(underlying=underlying)
            for reason in FALLBACK_REASONS:
                self.fallbacks_total.labels(underlying=underlying, reason=reason)
            for status in SLICE_STATUSES:
                self.slices_fitted_total.labels(underlying=underlying, status=status)
            for kind in ARBITRAGE_KINDS:
                self.arbitrage_violations_total.labels(underlying=underlying, kind=kind)
        for reason in KAFKA_ERRORS:
            self.kafka_errors_total.labels(reason=reason)

    def render(self) -> bytes:
        """The text exposition format."""
        result: bytes = generate_latest(self.registry)
        return result


#: The known label values of the counters, declared at zero by ``Metrics.declare``:
#: the quote filters' reasons (core.quotes.QuoteReject), the decoders' and sessions'.
REJECT_REASONS = (*(r.label for r in QuoteReject if r is not QuoteReject.OK),
                  "malformed", "unexpected_message", "unsubscribed_channel", "expired",
                  "subscribe_rejected", "rate_limited", "instrument_cap", "negative_price",
                  "no_underlying_price", "not_option", "combo", "unknown_instrument",
                  "bad_volatility_index", "stream_silent")
FALLBACK_REASONS = ("fit_failed", "rmse_too_high", "atm_off_market", "too_few_quotes")
SLICE_STATUSES = ("warm", "cold", "fallback", "stale")
ARBITRAGE_KINDS = ("butterfly", "calendar")
#: Kafka errors are labelled with aiokafka's error name: the ones a broker outage raises.
KAFKA_ERRORS = ("ack_timeout", "KafkaConnectionError", "KafkaTimeoutError",
                "RequestTimedOutError", "NotLeaderForPartitionError")

#: Every metric family name as exposed (counters with their ``_total`` suffix).
METRIC_NAMES = frozenset({
    "streamer_tick_to_publish_seconds", "streamer_calibration_seconds",
    "streamer_kafka_send_seconds", "streamer_event_loop_lag_seconds", "streamer_ticks_total",
    "streamer_ticks_rejected_total", "streamer_surfaces_published_total",
    "streamer_ws_reconnects_total", "streamer_kafka_errors_total",
    "streamer_kafka_conflated_total", "streamer_pending_surfaces", "streamer_fit_rmse_vol",
    "streamer_surface_age_seconds", "streamer_fallbacks_total",
    "streamer_arbitrage_violations_total", "streamer_slices_fitted_total",
    "streamer_venue_connected", "streamer_build_info",
})


@dataclass
class Health:
    """What readiness depends on; mutated by the app, read by /readyz."""

    stale_after_s: float = 30.0
    publishes_surfaces: bool = True  # False for `streamer ingest`, which publishes quotes
    venues: dict[str, bool] = field(default_factory=dict)
    broker_ok: bool = False
    #: Per key: when its market data last moved on (not when it was last published: a
    #: surface republished over frozen quotes is as old as those quotes).
    last_publish_s: dict[str, float] = field(default_factory=dict)
    _exchange_ts_ms: dict[str, int] = field(default_factory=dict)

    def set_venue(self, venue: str, connected: bool) -> None:
        """Record a venue session going up or down."""
        self.venues[venue] = connected

    def set_broker(self, ok: bool) -> None:
        """Record whether the sink reaches its broker."""
        self.broker_ok = ok

    def set_published(self, key: str, when_s: float, *, exchange_ts_ms: int | None = None,
                      received_s: float | None = None) -> None:
        """Record a delivered surface, delivered at ``when_s``.

        With ``exchange_ts_ms`` (the newest quote's exchange time), the key's market
        data counts as fresh only when that moved forward, from ``received_s`` (when
        that quote was received; ``when_s`` if not given).
        """
        if exchange_ts_ms is not None:
            if exchange_ts_ms <= self._exchange_ts_ms.get(key, -1):
                self.last_publish_s.setdefault(key, when_s)
                return
            self._exchange_ts_ms[key] = exchange_ts_ms
        fresh_s = when_s if received_s is None else min(received_s, when_s)
        self.last_publish_s[key] = fresh_s

    def readiness(self, now_s: float) -> tuple[bool, dict[str, Any]]:
        """Ready, and a JSON-able body saying what is not."""
        problems = [f"venue {v} not connected" for v, up in sorted(self.venues.items()) if not up]
        if not self.venues:
            problems.append("no venue connected yet")
        if not self.broker_ok:
            problems.append("broker not reachable")
        fresh = {k: now_s - t for k, t in self.last_publish_s.items()}
        if not fresh and self.publishes_surfaces:
            problems.append("no surface published yet")
        problems += [f"surface {k} stale for {age:.1f}s" for k, age in sorted(fresh.items())
                     if age > self.stale_after_s]
        body = {"ready": not problems, "problems": problems,
                "surface_age_s": {k: round(v, 3) for k, v in sorted(fresh.items())}}
        return not problems, body


class HttpServerHandle:
    """A running metrics endpoint."""

    def __init__(self, server: asyncio.Server) -> None:
        self._server = server
        self.port: int = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening."""
        self._server.close()
        await self._server.wait_closed()


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def _route(path: str, metrics: Metrics, health: Health) -> bytes:
    if path == "/metrics":
        now = time.time()
        for key, when in health.last_publish_s.items():
            metrics.surface_age_seconds.labels(underlying=key.split(":")[-1]).set(now - when)
        return _response("200 OK", CONTENT_TYPE_LATEST, metrics.render())
    if path == "/healthz":
        return _response("200 OK", "application/json", b'{"status":"ok"}')
    if path == "/readyz":
        ready, body = health.readiness(time.time())
        return _response("200 OK" if ready else "503 Service Unavailable", "application/json",
                         json.dumps(body).encode())
    return _response("404 Not Found", "application/json", b'{"error":"not found"}')


#: Extra routes (the UI): answers ``path`` on the writer and returns True, or returns False.
ExtraRoute = Callable[[str, asyncio.StreamWriter], Awaitable[bool]]


async def serve_http(metrics: Metrics, health: Health, host: str, port: int,
                     extra: ExtraRoute | None = None) -> HttpServerHandle:
    """Serve /metrics, /healthz and /readyz (GET only) on ``host:port`` (0 = any free port),
    and whatever ``extra`` answers (streamer.ui: /ui, /ui/events, /surface/{key})."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            method, path, *_ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method != "GET":
                writer.write(_response("405 Method Not Allowed", "text/plain", b"GET only"))
            elif extra is None or not await extra(path.split("?", 1)[0], writer):
                writer.write(_route(path.split("?", 1)[0], metrics, health))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ValueError, ConnectionError):
            pass
        finally:
            writer.close()

    try:
        server = await asyncio.start_server(handle, host, port)
    except OSError as exc:
        raise listen_error(exc, "the metrics endpoint", host, port,
                           "metrics.port (--metrics-port, STREAMER_METRICS__PORT)") from exc
    return HttpServerHandle(server)
