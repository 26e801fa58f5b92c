"""Wiring: venues → engine → sink, with metrics, health and progress, from one AppConfig.

``Service`` is ``streamer run``: it owns the real parts' lifecycles (embedded
broker, replay servers, metrics endpoint, websocket sessions, producer) and the
two periodic tasks (batch timer, progress line). ``streamer replay`` is
:mod:`streamer.app.file_replay`: the same decoder and engine driven by the file's own
clock. The sources' quote sinks are in ``feeds``. The stand-ins (the embedded broker,
the replay servers of ``url: replay``) live in :mod:`streamer.devtools` and are
imported only when the config asks for one, so a production config never loads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO, TypeVar

import msgspec

from streamer.app.engine_worker import EngineWorker
from streamer.app.feeds import EngineFeed, TicksFeed
from streamer.app.summary import closing_line
from streamer.config import REPLAY, AppConfig, KafkaConfig, VenueConfig
from streamer.errors import BrokerError, ConfigError
from streamer.kafka.admin import ensure_topics
from streamer.kafka.errors import unreachable
from streamer.pipeline.calibrator import is_refusal
from streamer.pipeline.engine import Engine
from streamer.pipeline.greeks import instrument_greeks
from streamer.sinks.base import Sink
from streamer.sinks.kafka import KafkaSink
from streamer.sinks.stdout import StdoutSink
from streamer.sinks.surface_reader import latest_dynamics_states, latest_surfaces
from streamer.sinks.ticks import KafkaRecordSink, dynamics_sink, greeks_sink, ticks_sink
from streamer.sources.registry import make_session, resolve_url
from streamer.sources.ticks_topic import TicksConsumer
from streamer.telemetry.metrics import Health, Metrics, serve_http
from streamer.telemetry.progress import Progress
from streamer.types import DynamicsState, InstrumentGreeks, Quote, SurfaceUpdate
from streamer.ui.health import ServiceHealth
from streamer.ui.hub import SurfaceHub
from streamer.ui.routes import ui_route

if TYPE_CHECKING:  # the stand-ins are imported where the config starts one
    from streamer.devtools.embedded_broker import EmbeddedBroker
    from streamer.devtools.exchanges import ReplayServers


Mode = Literal["run", "ingest", "calibrate"]
SinkT = TypeVar("SinkT", bound="KafkaRecordSink[Any]")


class Source(Protocol):
    """A running producer of quotes (a venue session or the ticks consumer)."""

    async def run(self) -> None: ...


log = logging.getLogger(__name__)

TIMER_PERIOD_S = 0.02
#: An exchange-stage latency beyond this is a recording's old timestamp, not a latency.
MAX_EXCHANGE_LAG_S = 3600.0


class Service:
    """``streamer run``: one process doing ingest, calibration and publishing."""

    def __init__(self, config: AppConfig, *, mode: Mode = "run",
                 duration_s: float | None = None, progress_stream: TextIO | None = None,
                 quiet: bool = False) -> None:
        self.config = config
        self.mode: Mode = mode
        self.duration_s = duration_s
        self.metrics = Metrics()
        self.health = Health(stale_after_s=config.metrics.stale_after_s,
                             publishes_surfaces=mode != "ingest")
        self.progress = Progress()
        self.engines: dict[str, EngineWorker] = {}
        # stderr: stdout carries only the surfaces of `--sink stdout` (pipe it to jq).
        self._progress_stream = progress_stream
        self.quiet = quiet
        self._stop = asyncio.Event()
        self._broker: EmbeddedBroker | None = None
        self._replays: ReplayServers | None = None
        self._replayed = {v.name for v in config.venues if v.url == REPLAY}
        self.metrics.declare([v.name for v in config.venues],
                             [c for v in config.venues for c in v.currencies])
        self.sink: Sink | None = None
        self.ticks_sink: KafkaRecordSink[Quote] | None = None
        self.greeks_sink: KafkaRecordSink[InstrumentGreeks] | None = None
        self.dynamics_sink: KafkaRecordSink[DynamicsState] | None = None
        self.ticks_consumer: TicksConsumer | None = None
        self._conflated_seen = 0
        self.http_port: int | None = None
        self._bootstrap_servers = ""
        self._failure: BrokerError | None = None  # a broker refusing this config
        self._unsent = 0  # left unacknowledged when the sinks stopped
        self._sent_quotes = 0  # ingest: quotes acknowledged by the broker
        self.ui = SurfaceHub(health=ServiceHealth(self.metrics, self.health, self.progress),
                             quotes=self._ui_quotes)

    # -- lifecycle -------------------------------------------------------------
    async def run(self) -> int:
        """Start everything, run until the end of the replay, the duration, or a signal."""
        if self.mode != "run" and self.config.kafka.embedded:
            raise ConfigError(f"`streamer {self.mode}` shares work through Kafka: set "
                              "kafka.bootstrap_servers to the cluster (not `embedded`)")
        self._install_signal_handlers()
        http = None
        try:
            # Metrics first: /healthz must answer while the broker is still being reached.
            if self.config.metrics.enabled:
                http = await serve_http(self.metrics, self.health,
                                        self.config.metrics.host, self.config.metrics.port,
                                        extra=ui_route(self.ui))
                self.http_port = http.port
                log.info("metrics on http://%s:%d/metrics", self.config.metrics.host, http.port)
                log.info("live view on http://%s:%d/ui", self.config.metrics.host, http.port)
            bootstrap = self._bootstrap_servers = await self._bootstrap()
            if self.mode != "run":
                # Before subscribing: a broker may auto-create a missing topic with the
                # wrong partition count on the first metadata request.
                try:
                    await ensure_topics(self.config.kafka, bootstrap)
                except BrokerError as exc:
                    raise unreachable(bootstrap, exc) from exc
            if self.mode == "ingest":
                self.ticks_sink = ticks_sink(
                    self.config.kafka, bootstrap, on_error=self._on_kafka_error,
                    on_sent=self._on_quotes_sent, on_failure=self._on_broker_refused)
                await self.ticks_sink.start()
            else:
                self.sink = await self._start_sink(bootstrap)
                await self._warm_start(bootstrap)
                kafka = self.config.kafka
                self.greeks_sink = await self._start_record_sink(
                    kafka.greeks_topic, greeks_sink, bootstrap)
                self.dynamics_sink = await self._start_record_sink(
                    kafka.dynamics_topic, dynamics_sink, bootstrap)
                if self.config.sink == "kafka":
                    log.info("%s", subscribe_hint(self.config.kafka, bootstrap))
            sources = [asyncio.create_task(source.run(), name=f"source-{name}")
                       for name, source in await self._start_sources(bootstrap)]
            tasks: list[asyncio.Task[None]] = []
            if self.mode != "ingest":
                tasks.append(asyncio.create_task(self._timer_loop(), name="batch-timer"))
            if not self.quiet:
                tasks.append(asyncio.create_task(self._progress_loop(), name="progress"))
            tasks.append(asyncio.create_task(self._loop_lag_monitor(), name="loop-lag"))
            await self._wait_for_end(sources)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.mode != "ingest":
                await self._cut_engines(flush=True)
            if self.mode == "ingest":  # no quote may arrive after the last flush
                await _cancel_all(sources)
            # Deliver before the sources stop: a calibrator leaving its group hands its
            # underlyings over, and the next owner reads back what was published.
            await self._stop_sinks()
            await _cancel_all(sources)
            if self.mode != "ingest" and self.config.sink == "kafka":
                log.info("%s", closing_hint(self.config.kafka, bootstrap, self.progress.published))
        except BrokerError as exc:  # unreachable at start: said in the closing line
            self._failure = exc
        finally:
            await self._shutdown(http)
        problem = self._problem()
        print(self._closing_line(problem), file=sys.stderr, flush=True)
        return 1 if problem else 0

    def _problem(self) -> str | None:
        """Why the job was not done (exit 1), or None."""
        where = f"Kafka at {self._bootstrap_servers}"
        if self._failure is not None:
            return str(self._failure)
        if self._unsent:
            return f"{self._unsent} unsent when stopping ({where} unreachable)"
        if self.mode == "ingest" and not self._sent_quotes:
            return f"no quote sent to {where}" if self.progress.ticks else "no quote received"
        if self.mode == "run" and not self.progress.published:
            return "no surface published" + (f" ({where} unreachable)"
                                             if self.config.sink == "kafka" else "")
        if self.mode == "calibrate" and self.progress.ticks and not self.progress.published:
            # a member given no quotes is a standby; one that read some and fit none failed
            return f"no surface published from {self.progress.ticks} quotes read"
        return None

    def _closing_line(self, problem: str | None) -> str:
        kafka = self.config.kafka
        if self.mode == "calibrate":
            read = f"{self.progress.ticks} quotes from {kafka.ticks_topic}"
        else:
            read = f"{self.progress.ticks} quotes from " + \
                ", ".join(v.name for v in self.config.venues)
        if self.mode == "ingest":
            published = f"{self._sent_quotes} quotes to kafka {self._bootstrap_servers} " \
                        f"topic {kafka.ticks_topic}"
        elif self.config.sink == "stdout":
            published = f"{self.progress.published} surfaces to stdout"
        else:
            published = f"{self.progress.published} surfaces (acknowledged) to kafka " \
                        f"{self._bootstrap_servers} topic {kafka.surface_topic}"
        if self._unsent:
            published += f", {self._unsent} unsent"
        rejected = Counter[str]()
        for metric in self.metrics.ticks_rejected_total.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    rejected[sample.labels["reason"]] += int(sample.value)
        return closing_line(self.mode, read=read, rejected=rejected, published=published,
                            problem=problem)

    def engine_for(self, venue: str) -> EngineWorker:
        """The venue's engine behind its worker (created on first use: calibrate mode
        learns venues from ticks)."""
        worker = self.engines.get(venue)
        if worker is None:
            # Live, the time budget runs on the machine's clock: a slow batch defers the
            # rest of its slices to the next one instead of holding up every surface.
            engine = Engine(venue, self.config.calibration, self.config.batch,
                            self.config.dynamics, self.config.analytics,
                            budget_clock=time.perf_counter)
            worker = self.engines[venue] = EngineWorker(
                engine, self.config.calibration.worker, self.config.calibration.worker_nice)
        return worker

    async def _bootstrap(self) -> str:
        """The brokers to use; starts the embedded one when configured (and needed)."""
        if self.config.sink == "stdout" and self.mode == "run":
            return ""
        if not self.config.kafka.embedded:
            return self.config.kafka.bootstrap_servers
        # The documented address (README: localhost:9092) when it is free, else any port.
        port = self.config.kafka.embedded_port
        from streamer.devtools.embedded_broker import EmbeddedBroker

        self._broker = EmbeddedBroker(port=port if port and _port_free(port) else 0)
        bootstrap = await asyncio.to_thread(self._broker.start)
        log.info("embedded Kafka-compatible broker (Tansu) on %s", bootstrap)
        return bootstrap

    async def _start_sink(self, bootstrap: str) -> Sink:
        if self.config.sink == "stdout":
            sink: Sink = StdoutSink(on_delivered=self._on_delivered)
        else:
            sink = KafkaSink(self.config.kafka, bootstrap_servers=bootstrap,
                             on_delivered=self._on_delivered, on_error=self._on_kafka_error,
                             on_send_seconds=self.metrics.kafka_send_seconds.observe,
                             on_failure=self._on_broker_refused)
        await sink.start()
        self.health.set_broker(True)
        return sink

    async def _start_record_sink(self, topic: str | None, make: Callable[..., SinkT],
                                 bootstrap: str) -> SinkT | None:
        """A record sink (greeks, dynamics) on ``topic``, started; None when no topic is
        configured or surfaces do not go to Kafka."""
        if topic is None or self.config.sink != "kafka":
            return None
        sink = make(self.config.kafka, bootstrap, topic, on_error=self._on_kafka_error)
        await sink.start()
        return sink

    def _publish_greeks(self, update: SurfaceUpdate) -> None:
        assert self.greeks_sink is not None
        options = self.engine_for(update.venue).published_instruments(update.underlying) or []
        for greeks in instrument_greeks(update, options):
            self.greeks_sink.add(greeks)

    async def _warm_start(self, bootstrap: str) -> None:
        """Seed the engines from the latest published surfaces (Kafka sink only)."""
        if self.config.sink != "kafka" or not self.config.calibration.warm_restart:
            return
        try:
            latest = await latest_surfaces(self.config.kafka, bootstrap)
        except BrokerError as exc:
            log.warning("could not read back %s (%s); starting cold",
                        self.config.kafka.surface_topic, exc)
            return
        if isinstance(self.sink, KafkaSink):
            self.sink.resume(latest)
        await self._restore_dynamics(bootstrap)
        # Each seed is a round trip to a worker process that may still be starting (its
        # imports take seconds on a busy machine): awaited off the loop, which serves
        # heartbeats and /healthz meanwhile.
        seeded = [key for key, update in sorted(latest.items())
                  if await asyncio.to_thread(self.engine_for(update.venue).seed, update)]
        if seeded:
            log.info("warm start from the published surfaces of %s", ", ".join(seeded))
        elif latest:
            log.info("read back %d surfaces; every underlying already calibrating here",
                     len(latest))

    async def _restore_dynamics(self, bootstrap: str) -> None:
        """Continue the smile-dynamics estimates from their published memory."""
        try:
            states = await latest_dynamics_states(self.config.kafka, bootstrap)
        except BrokerError as exc:
            log.warning("could not read back %s (%s); smile dynamics start over",
                        self.config.kafka.dynamics_topic, exc)
            return
        restored = [f"{key} ({sum(t.count for t in s.tenors)} observations)"
                    for key, s in sorted(states.items())
                    if await asyncio.to_thread(self.engine_for(s.venue).seed_dynamics, s)]
        if restored:
            log.info("smile dynamics restored for %s", ", ".join(restored))

    async def _start_sources(self, bootstrap: str) -> list[tuple[str, Source]]:
        if self.mode == "calibrate":
            feed = EngineFeed(self.engine_for, self.metrics, self.health, self.progress)
            # After a rebalance, underlyings taken over from another member warm-start
            # from (and continue the seq of) what that member last published.
            self.ticks_consumer = TicksConsumer(self.config.kafka, bootstrap, feed,
                                                group_id=self.config.kafka.group_id,
                                                on_assigned=lambda: self._warm_start(bootstrap))
            return [("ticks", self.ticks_consumer)]
        return [await self._start_venue(v) for v in self.config.venues]

    async def _start_venue(self, venue: VenueConfig) -> tuple[str, Source]:
        if venue.url == REPLAY:
            if self._replays is None:
                from streamer.devtools.exchanges import ReplayServers

                self._replays = ReplayServers(self.config.replay, self.config.tickfile)
            venue = await self._replays.start(venue)  # now pointed at its server
        feed: EngineFeed
        if self.ticks_sink is not None:
            feed = TicksFeed(self.ticks_sink, self.metrics, self.health, self.progress)
        else:
            feed = EngineFeed(self.engine_for, self.metrics, self.health, self.progress)
        return venue.name, make_session(venue, resolve_url(venue), feed)

    async def _wait_for_end(self, sources: list[asyncio.Task[None]]) -> None:
        waits: list[asyncio.Task[Any]] = [asyncio.create_task(self._stop.wait()),
                                          asyncio.create_task(_broker_failure(sources))]
        if self._replays is not None and self._replays.finite:
            grace_s = max(0.5, 2 * self.config.batch.interval_ms / 1000)
            waits.append(asyncio.create_task(self._replays.drained(grace_s)))
        if self.duration_s is not None:
            waits.append(asyncio.create_task(asyncio.sleep(self.duration_s)))
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            if isinstance(failure := task.exception(), BrokerError):
                self._failure = failure  # a source lost its broker: the run ends, said why

    async def _stop_sinks(self) -> None:
        sinks: list[Any] = [self.sink, self.ticks_sink, self.greeks_sink, self.dynamics_sink]
        self.sink = self.ticks_sink = self.greeks_sink = self.dynamics_sink = None
        for sink in sinks:
            if sink is not None:
                with contextlib.suppress(Exception):
                    await sink.stop()
                self._unsent += getattr(sink, "pending", 0)

    async def _shutdown(self, http: object) -> None:
        await self._stop_sinks()
        for worker in self.engines.values():
            await asyncio.to_thread(worker.close)
        if self._replays is not None:
            await self._replays.stop()
        self.ui.close()  # ends the event streams, or closing the server would wait on them
        if http is not None:
            await http.close()  # type: ignore[attr-defined]
        if self._broker is not None:
            await asyncio.to_thread(self._broker.stop)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)

    def stop(self) -> None:
        """Ask the service to shut down gracefully."""
        self._stop.set()

    # -- periodic work ---------------------------------------------------------
    async def _timer_loop(self) -> None:
        while True:
            await asyncio.sleep(self._until_due_s(time.time_ns()))
            await self._cut_engines(flush=False)

    def _until_due_s(self, now_ns: int) -> float:
        """Until the earliest batch of any engine falls due (at most ``TIMER_PERIOD_S``:
        quotes arriving meanwhile may start one), so a batch is cut when it is due, not
        on the next tick of a fixed timer."""
        due = min((d for w in self.engines.values()
                   if (d := w.next_due_ns(now_ns)) is not None), default=None)
        if due is None:
            return TIMER_PERIOD_S
        return min(TIMER_PERIOD_S, max(0.0, (due - now_ns) / 1e9))

    async def _cut_engines(self, *, flush: bool) -> None:
        """Every engine's due batches (all pending ones when ``flush``), cut off the event
        loop (ingest, heartbeats and Kafka go on during the fits), each underlying's
        surface published as soon as its own cut lands: it waits for no other fit."""
        now_ns = time.time_ns()
        # The greeks and the live page read the instruments behind each surface.
        keep = self.greeks_sink is not None or bool(self.ui.clients)
        workers = list(self.engines.values())
        for worker in workers:
            worker.keep_instruments = keep
        # Venues side by side: each engine has its own worker. Every venue runs to its end
        # before an engine error is raised: a venue left running would race the shutdown
        # flush for the same cuts in flight.
        results = await asyncio.gather(*(self._publish_cuts(w, now_ns, flush) for w in workers),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self._publish([])  # the reports and states of a timer that cut nothing

    async def _publish_cuts(self, worker: EngineWorker, now_ns: int, flush: bool) -> None:
        async for updates in worker.cuts(now_ns, flush=flush):
            self._publish(updates)

    def _publish(self, updates: list[SurfaceUpdate]) -> None:
        for engine in self.engines.values():
            # The progress line counts what /metrics counts: the engine's rejects too.
            self.progress.on_reject(apply_report(self.metrics, engine))
        assert self.sink is not None
        for update in updates:
            stamped = msgspec.structs.replace(update, published_ts_ns=time.time_ns())
            self.sink.publish(stamped)
            if self.greeks_sink is not None:
                self._publish_greeks(stamped)
        if self.dynamics_sink is not None:
            for engine in self.engines.values():
                for state in engine.take_dynamics_states():
                    self.dynamics_sink.add(state)
        self._export_sink_backlog()

    def _export_sink_backlog(self) -> None:
        """Pending and conflated surfaces of a sink that buffers (Kafka)."""
        pending = getattr(self.sink, "pending", None)
        conflated = getattr(self.sink, "conflated", None)
        if isinstance(pending, int):
            self.metrics.pending_surfaces.set(pending)
        if isinstance(conflated, int) and conflated > self._conflated_seen:
            self.metrics.kafka_conflated_total.inc(conflated - self._conflated_seen)
            self._conflated_seen = conflated

    async def _progress_loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            print(self.progress.line(now - last), file=self._progress_stream or sys.stderr,
                  flush=True)
            last = now

    async def _loop_lag_monitor(self, period_s: float = 0.1) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(period_s)
            self.metrics.event_loop_lag_seconds.observe(max(0.0, loop.time() - start - period_s))

    # -- callbacks from the sink -----------------------------------------------
    def _on_delivered(self, update: SurfaceUpdate, ack_ts_ns: int) -> None:
        receive_s = (ack_ts_ns - update.received_ts_ns) / 1e9
        self.metrics.tick_to_publish_seconds.labels(stage="receive").observe(receive_s)
        exchange_s = ack_ts_ns / 1e9 - update.exchange_ts_ms / 1e3
        # A recording's exchange times are its own, not now: measured only for live venues
        # (and never a lag past MAX_EXCHANGE_LAG_S, an old file behind a --venue-url).
        if update.venue not in self._replayed and exchange_s < MAX_EXCHANGE_LAG_S:
            self.metrics.tick_to_publish_seconds.labels(stage="exchange").observe(exchange_s)
        self.metrics.surfaces_published_total.labels(underlying=update.underlying).inc()
        self.health.set_published(update.key, ack_ts_ns / 1e9,
                                  exchange_ts_ms=update.exchange_ts_ms,
                                  received_s=update.received_ts_ns / 1e9)
        self.health.set_broker(True)
        self.progress.on_delivered(update, receive_s)
        self.ui.publish(update, receive_s)

    def _ui_quotes(self, update: SurfaceUpdate) -> list[Quote] | None:
        """The chain book's quotes behind a surface, for the page's bid/ask bars (as its
        cut kept them: the page never waits for the next cut)."""
        engine = self.engines.get(update.venue)
        return None if engine is None else engine.published_instruments(update.underlying)

    def _on_quotes_sent(self, n: int) -> None:
        self._sent_quotes += n
        self.health.set_broker(True)

    def _on_broker_refused(self, exc: BrokerError) -> None:
        """A broker that cannot serve this config: stop now, exit 1 (``_problem``)."""
        self._failure = exc
        self._stop.set()

    def _on_kafka_error(self, reason: str) -> None:
        self.metrics.kafka_errors_total.labels(reason=reason).inc()
        self.health.set_broker(False)


async def _broker_failure(sources: list[asyncio.Task[None]]) -> None:
    """Raise the first ``BrokerError`` a source ends with (the ticks topic's consumer that
    cannot reach its broker); wait for ever while none does."""
    running = set(sources)
    while running:
        done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and isinstance(task.exception(), BrokerError):
                task.result()
    await asyncio.Event().wait()


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def subscribe_hint(kafka: KafkaConfig, bootstrap: str) -> str:
    """How to read the surfaces this run publishes: kcat, the Python client, or stdout."""
    topic = kafka.surface_topic
    # Debian's librdkafka cannot negotiate versions with Tansu: the 0.9 subset, offset 0.
    compat = ("-X api.version.request=false -X broker.version.fallback=0.9.0 "
              if kafka.embedded else "")
    offset = "0" if kafka.embedded else "beginning"
    return (f"surfaces go to topic {topic} at {bootstrap}; read them with: kcat {compat}"
            f"-b {bootstrap} -C -t {topic} -o {offset} -f '%k %s\\n'  |  or in Python: "
            f"SurfaceSubscriber({bootstrap!r}, keys=[...]) from streamer.client  |  "
            "or run with --sink stdout for JSON lines")


def closing_hint(kafka: KafkaConfig, bootstrap: str, published: int) -> str:
    """The last word on where the surfaces went."""
    where = f"{published} surfaces published to topic {kafka.surface_topic} at {bootstrap}"
    if kafka.embedded:
        return (f"{where}; the embedded broker stops with this run and its topics with it "
                "(set kafka.bootstrap_servers to a cluster to keep them, or use --sink stdout)")
    return f"{where}; read them with: kcat -b {bootstrap} -C -t {kafka.surface_topic} -o beginning"


#: (underlying, reason) of the refusals in a burst already said in the log
_REFUSALS_SAID: set[tuple[str, str]] = set()


def _say_refusals(fallbacks: Mapping[tuple[str, str], int], calibrated: set[str]) -> None:
    """One warning per underlying and reason at the start of each burst of refused fits;
    the counter streamer_fallbacks_total carries every one. A burst ends with a report in
    which the underlying was calibrated without that refusal."""
    for (underlying, reason), n in fallbacks.items():
        if n and is_refusal(reason) and (underlying, reason) not in _REFUSALS_SAID:
            _REFUSALS_SAID.add((underlying, reason))
            log.warning("%s: a fit was refused (%s): the expiries were fitted by the "
                        "per-slice fallback, kept their last good slice or were left out; "
                        "counted in streamer_fallbacks_total until the refusals stop",
                        underlying, reason)
    for said in [s for s in _REFUSALS_SAID if s[0] in calibrated and not fallbacks.get(s)]:
        _REFUSALS_SAID.discard(said)


def apply_report(metrics: Metrics, engine: Engine | EngineWorker) -> int:
    """Turn the engine's numbers since the last call into metric increments.

    Returns the number of quotes the engine rejected meanwhile.
    """
    report = engine.drain_report()
    for (venue, reason), n in report.rejects.items():
        metrics.ticks_rejected_total.labels(venue=venue, reason=reason).inc(n)
    for (model, underlying), seconds in report.calibration_seconds:
        metrics.calibration_seconds.labels(model=model, underlying=underlying).observe(seconds)
    for (underlying, reason), n in report.fallbacks.items():
        metrics.fallbacks_total.labels(underlying=underlying, reason=reason).inc(n)
    _say_refusals(report.fallbacks, {u for (_, u), _ in report.calibration_seconds})
    for (underlying, status), n in report.slices.items():
        metrics.slices_fitted_total.labels(underlying=underlying, status=status).inc(n)
    for (underlying, kind), n in report.arbitrage.items():
        metrics.arbitrage_violations_total.labels(underlying=underlying, kind=kind).inc(n)
    for underlying, (worst, median) in report.rmse.items():
        metrics.fit_rmse_vol.labels(underlying=underlying, stat="worst").set(worst)
        metrics.fit_rmse_vol.labels(underlying=underlying, stat="median").set(median)
    return sum(report.rejects.values())
