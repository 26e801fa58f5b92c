"""The engine worker: cuts off the event loop, same results as inline, errors raised,
a clean shutdown. The engine is the real one, fed the head of the bundled recording."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest
from msgspec.json import encode

from streamer.app.engine_worker import EngineWorker
from streamer.config import load_config
from streamer.devtools.exchanges import bundled_sample
from streamer.pipeline.engine import Engine
from streamer.sinks.codec import encode_surface
from streamer.sources.deribit.protocol import DeribitDecoder
from streamer.tickfile import read_tickfile
from streamer.types import Quote, SurfaceUpdate


async def _all_cuts(worker: EngineWorker, now_ns: int, *, flush: bool = False
                    ) -> list[SurfaceUpdate]:
    """Every update of the cuts due at ``now_ns`` (all pending ones when ``flush``)."""
    return [u async for cut in worker.cuts(now_ns, flush=flush) for u in cut]

def _engine() -> Engine:
    config = load_config(None, env={})
    return Engine("deribit", config.calibration, config.batch, config.dynamics,
                  config.analytics)


async def _run(worker: EngineWorker, n_lines: int = 1500) -> list[bytes]:
    decoder = DeribitDecoder()
    out: list[SurfaceUpdate] = []
    now_ns = 0
    for line in itertools.islice(read_tickfile(bundled_sample()), n_lines):
        now_ns = line.received_ts_ns
        decoded = decoder.decode(line.raw, now_ns)
        for quote in decoded.quotes:
            worker.on_quote(quote)
        for index in decoded.vol_indices:
            worker.on_vol_index(index)
        out += await _all_cuts(worker, now_ns)
    out += await _all_cuts(worker, now_ns, flush=True)
    return [encode_surface(u) for u in out]


@pytest.mark.parametrize("mode", ["thread", "process"])
async def test_a_worker_publishes_the_same_bytes_as_inline(mode: str) -> None:
    worker, inline = EngineWorker(_engine(), mode), EngineWorker(_engine(), "inline")  # type: ignore[arg-type]
    try:
        got, want = await _run(worker), await _run(inline)
    finally:
        worker.close()
    assert want
    assert got == want


class _RecordingEngine(Engine):
    def __init__(self) -> None:
        config = load_config(None, env={})
        super().__init__("deribit", config.calibration, config.batch)
        self.cut_threads: set[int] = set()

    def on_timer(self, now_ns: int) -> list[SurfaceUpdate]:
        self.cut_threads.add(threading.get_ident())
        return super().on_timer(now_ns)


async def test_cuts_run_on_the_worker_thread_not_the_event_loop() -> None:
    engine = _RecordingEngine()
    worker = EngineWorker(engine, "thread")
    try:
        await _run(worker, 300)
    finally:
        worker.close()
    assert engine.cut_threads
    assert threading.get_ident() not in engine.cut_threads


async def test_a_quote_waits_in_the_inbox_until_the_next_cut() -> None:
    engine = _engine()
    worker = EngineWorker(engine, "thread")
    decoder = DeribitDecoder()
    line = next(iter(read_tickfile(bundled_sample())))
    quotes = decoder.decode(line.raw, line.received_ts_ns).quotes
    assert quotes
    try:
        for quote in quotes:
            worker.on_quote(quote)
        assert engine.instruments(quotes[0].underlying) == []
        await _all_cuts(worker, line.received_ts_ns + engine.batch.interval_ms * 1_000_000)
        assert worker.instruments(quotes[0].underlying) == quotes
    finally:
        worker.close()


async def test_the_worker_knows_when_the_next_batch_is_due_and_cuts_only_then() -> None:
    """The loop counts quotes with the engine's batch rule: the service's timer wakes at
    the due instant, and a timer before it costs no call to the worker."""
    engine = _RecordingEngine()
    worker = EngineWorker(engine, "thread")
    decoder = DeribitDecoder()
    line = next(iter(read_tickfile(bundled_sample())))
    interval_ns = engine.batch.interval_ms * 1_000_000
    try:
        assert worker.next_due_ns(line.received_ts_ns) is None  # nothing pending
        for quote in decoder.decode(line.raw, line.received_ts_ns).quotes:
            worker.on_quote(quote)
        due = line.received_ts_ns + interval_ns
        assert worker.next_due_ns(line.received_ts_ns) == due
        assert await _all_cuts(worker, due - 1) == []
        assert engine.cut_threads == set()  # not asked
        assert worker.next_due_ns(due) == due
        await _all_cuts(worker, due)
        assert engine.cut_threads
        assert worker.next_due_ns(due) is None
    finally:
        worker.close()


class _FailingEngine(Engine):
    def __init__(self) -> None:
        config = load_config(None, env={})
        super().__init__("deribit", config.calibration, config.batch)

    def on_timer(self, now_ns: int) -> list[SurfaceUpdate]:
        raise RuntimeError("calibration exploded")


@pytest.mark.parametrize("mode", ["thread", "inline", "process"])
async def test_an_engine_error_is_raised_in_the_awaiting_task(mode: str) -> None:
    worker = EngineWorker(_FailingEngine(), mode)  # type: ignore[arg-type]
    line = next(iter(read_tickfile(bundled_sample())))
    for quote in DeribitDecoder().decode(line.raw, line.received_ts_ns).quotes:
        worker.on_quote(quote)
    try:
        with pytest.raises(RuntimeError, match="calibration exploded"):
            await _all_cuts(worker, line.received_ts_ns + 10**12)
        # raised once: the next call (this engine's flush works) is not answered with it
        assert await _all_cuts(worker, line.received_ts_ns + 10**12, flush=True) == []
    finally:
        worker.close()


async def test_close_stops_the_worker_thread() -> None:
    worker = EngineWorker(_engine(), "thread")
    await _run(worker, 200)
    assert any(t.name.startswith("engine-deribit") for t in threading.enumerate())
    worker.close()
    assert not any(t.name.startswith("engine-deribit") for t in threading.enumerate())


async def test_a_process_worker_cuts_in_its_own_process_and_answers_between_cuts() -> None:
    """The child's engine is the live one: its instruments and report come back from it,
    the parent's copy never saw a quote; close ends the child."""
    import os

    engine = _engine()
    worker = EngineWorker(engine, "process")
    try:
        surfaces = await _run(worker, 600)
        pid = worker._executor.submit(os.getpid).result()  # type: ignore[union-attr]
        assert pid != os.getpid()
        assert surfaces
        assert worker.instruments("BTC")
        assert engine.instruments("BTC") == []
        assert sum(worker.drain_report().slices.values()) > 0
        assert worker.drain_report().slices == {}  # drained in the child
    finally:
        worker.close()
    assert worker._executor._processes in (None, {})  # type: ignore[union-attr]


async def test_a_ctrl_c_while_the_worker_process_starts_does_not_kill_it() -> None:
    """A terminal's Ctrl-C reaches the whole process group, also a child still importing
    (before it can ignore SIGINT): it used to die there with a KeyboardInterrupt
    traceback, and the parent's flush through it broke. The parent handles Ctrl-C."""
    import os
    import signal

    worker = EngineWorker(_engine(), "process")
    try:
        (child,) = worker._executor._processes  # type: ignore[union-attr]
        os.kill(child, signal.SIGINT)  # at once: the child is still importing
        assert await _run(worker, 600)
    finally:
        worker.close()


@pytest.mark.parametrize("mode", ["thread", "process"])
async def test_a_cut_whose_wait_was_cancelled_publishes_with_the_next(mode: str) -> None:
    """The service cancels its timer task at shutdown, maybe while a cut runs: that cut's
    surfaces and rejects used to be lost (in a process, its report came back only to the
    cancelled wait). They come out with the flush, as if nothing was cancelled."""
    decoder = DeribitDecoder()
    lines = list(itertools.islice(read_tickfile(bundled_sample()), 400))
    runs = []
    for cancel in (False, True):
        worker = EngineWorker(_engine(), mode)  # type: ignore[arg-type]
        try:
            for line in lines:
                for quote in decoder.decode(line.raw, line.received_ts_ns).quotes:
                    worker.on_quote(quote)
            now_ns = lines[-1].received_ts_ns
            timer = asyncio.ensure_future(_all_cuts(worker, now_ns))
            if cancel:
                await asyncio.sleep(0)  # the cut has started
                timer.cancel()
            out = [] if cancel else await timer
            out += await _all_cuts(worker, now_ns + 1, flush=True)
            runs.append(([encode_surface(u) for u in out],
                         sum(worker.drain_report().slices.values())))
        finally:
            worker.close()
    assert runs[0][0]
    assert runs[0][1] > 0
    assert runs[1] == runs[0]


def test_a_process_worker_runs_at_its_configured_lower_priority() -> None:
    """Fits are throughput work: the child takes ``nice`` on top of the parent's niceness,
    so the event loop's process wins the CPU when they compete."""
    import os

    worker = EngineWorker(_engine(), "process", nice=7)
    try:
        child = worker._executor.submit(os.nice, 0).result()  # type: ignore[union-attr]
    finally:
        worker.close()
    assert child == min(19, os.nice(0) + 7)


async def test_a_process_worker_reports_what_a_thread_worker_reports() -> None:
    """The report comes back with the cuts (no call to the child for it) and the dynamics
    states are asked for after a cut that published: the same counts and the same
    states as the thread worker's own calls."""
    import msgspec

    reports, states = [], []
    for mode in ("thread", "process"):
        worker = EngineWorker(_engine(), mode)  # type: ignore[arg-type]
        try:
            await _run(worker, 900)
            report = worker.drain_report()
            reports.append((report.slices, report.rejects, report.fallbacks,
                            len(report.calibration_seconds)))
            states.append([msgspec.json.encode(s) for s in worker.take_dynamics_states()])
        finally:
            worker.close()
    assert reports[0] == reports[1]
    assert reports[0][3] > 0
    assert states[0] == states[1]


def test_reports_add_up() -> None:
    from collections import Counter

    from streamer.pipeline.engine import EngineReport

    first = EngineReport(slices=Counter({("BTC", "warm"): 2}), deferred_slices=1,
                         calibration_seconds=[(("svi", "BTC"), 0.01)], rmse={"BTC": (1.0, 0.5)})
    first.add(EngineReport(slices=Counter({("BTC", "warm"): 3, ("ETH", "cold"): 1}),
                           deferred_slices=2, calibration_seconds=[(("svi", "ETH"), 0.02)],
                           rmse={"BTC": (2.0, 1.0)}))
    assert first.slices == Counter({("BTC", "warm"): 5, ("ETH", "cold"): 1})
    assert first.deferred_slices == 3
    assert len(first.calibration_seconds) == 2
    assert first.rmse == {"BTC": (2.0, 1.0)}  # the later one


class _BlockingEngine(Engine):
    """Its timer cuts wait for ``release``: a long fit in progress."""

    def __init__(self) -> None:
        config = load_config(None, env={})
        super().__init__("deribit", config.calibration, config.batch)
        self.release = threading.Event()
        self.cutting = threading.Event()

    def on_timer(self, now_ns: int) -> list[SurfaceUpdate]:
        self.cutting.set()
        assert self.release.wait(30)
        return super().on_timer(now_ns)


@pytest.mark.parametrize("mode", ["thread", "process"])
async def test_the_instruments_behind_a_surface_are_kept_with_its_cut(mode: str) -> None:
    """What the live page and the greeks read: the book behind each surface as its own cut
    left it, only while asked for, and the same in a child process."""
    worker = EngineWorker(_engine(), mode)  # type: ignore[arg-type]
    try:
        assert not await _run(worker, 300) or worker.published_instruments("BTC") is None
        worker.keep_instruments = True
        assert await _run(worker, 600)
        kept = worker.published_instruments("BTC")
        assert kept
        assert all(q.underlying == "BTC" for q in kept)
        now = worker.instruments("BTC")  # no quote since that cut: the same book
        assert [encode(q) for q in kept] == [encode(q) for q in now]
    finally:
        worker.close()


async def test_the_kept_instruments_are_read_while_a_cut_runs() -> None:
    """The event loop never waits for a fit to draw the page (``instruments`` takes the
    cut's lock, and would wait for the whole fit)."""
    engine = _BlockingEngine()
    worker = EngineWorker(engine, "thread")
    worker.keep_instruments = True
    decoder = DeribitDecoder()
    lines = list(itertools.islice(read_tickfile(bundled_sample()), 600))
    try:
        for line in lines:
            for quote in decoder.decode(line.raw, line.received_ts_ns).quotes:
                worker.on_quote(quote)
        await _all_cuts(worker, lines[-1].received_ts_ns, flush=True)
        for quote in decoder.decode(lines[-1].raw, lines[-1].received_ts_ns).quotes:
            worker.on_quote(quote)  # a batch pending again, due in a second
        cut = asyncio.ensure_future(_all_cuts(worker, lines[-1].received_ts_ns + 10**9))
        assert await asyncio.to_thread(engine.cutting.wait, 30)
        assert worker.published_instruments("BTC")  # answered while the cut holds its lock
        engine.release.set()
        await cut
    finally:
        engine.release.set()
        worker.close()


class _SlowToSeed:
    """A worker whose seed answers only once the event loop has run something else:
    a process child still importing, as far as the loop can tell."""

    def __init__(self, loop_ran: threading.Event) -> None:
        self.loop_ran = loop_ran
        self.venue = "deribit"

    def seed(self, update: SurfaceUpdate) -> bool:
        return self.loop_ran.wait(30)  # False: the loop never got to run

    def seed_dynamics(self, state: object) -> bool:
        return False


async def test_the_warm_start_waits_for_its_seeds_off_the_event_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A seed is a round trip to the worker process, which may still be importing: the
    loop served nothing for seconds (the process worker's event-loop lag p99 was 3 s with
    SABR). While a seed waits now, other tasks on the loop run."""
    import msgspec

    from streamer.app import service as service_module

    engine, decoder, published = _engine(), DeribitDecoder(), []
    for line in itertools.islice(read_tickfile(bundled_sample()), 600):
        for quote in decoder.decode(line.raw, line.received_ts_ns).quotes:
            engine.on_quote(quote)
        published += engine.on_timer(line.received_ts_ns)
    update = published[-1]
    loop_ran = threading.Event()

    async def read_back(*_: object) -> dict[str, SurfaceUpdate]:
        return {update.key: update}

    async def no_dynamics(*_: object) -> dict[str, object]:
        return {}

    monkeypatch.setattr(service_module, "latest_surfaces", read_back)
    monkeypatch.setattr(service_module, "latest_dynamics_states", no_dynamics)
    config = load_config(None, env={})
    service = service_module.Service(msgspec.structs.replace(config, sink="kafka"))
    service.engines["deribit"] = _SlowToSeed(loop_ran)  # type: ignore[assignment]
    other = asyncio.get_running_loop().call_soon(loop_ran.set)
    try:
        await service._warm_start("unused:9092")
    finally:
        other.cancel()
    assert loop_ran.is_set()


class _HeldEngine(Engine):
    """Its cut of ``held`` waits for ``release``: that underlying's long fit."""

    def __init__(self, held: str) -> None:
        config = load_config(None, env={})
        super().__init__("deribit", config.calibration, config.batch)
        self.held, self.applied = held, ""
        self.release = threading.Event()

    def on_quote(self, quote: Quote) -> None:
        self.applied = quote.underlying
        super().on_quote(quote)

    def on_timer(self, now_ns: int) -> list[SurfaceUpdate]:
        if self.applied == self.held:
            assert self.release.wait(30)
        return super().on_timer(now_ns)


def _feed(worker: EngineWorker, n_lines: int) -> int:
    decoder, now_ns = DeribitDecoder(), 0
    for line in itertools.islice(read_tickfile(bundled_sample()), n_lines):
        now_ns = line.received_ts_ns
        for quote in decoder.decode(line.raw, now_ns).quotes:
            worker.on_quote(quote)
    return now_ns


async def test_an_underlyings_surface_is_handed_on_while_the_next_one_still_fits() -> None:
    """BTC's and ETH's batches fall due together: BTC's surface used to wait for ETH's
    fit too (one cut for both), and its tick-to-publish with it."""
    engine = _HeldEngine("ETH")
    worker = EngineWorker(engine, "thread")
    try:
        cuts = worker.cuts(_feed(worker, 600) + 10**12)
        first = await anext(cuts)  # while ETH's fit is held
        assert [u.underlying for u in first] == ["BTC"]
        engine.release.set()
        assert [u.underlying async for cut in cuts for u in cut] == ["ETH"]
    finally:
        engine.release.set()
        worker.close()


async def test_the_report_and_states_after_a_cut_never_wait_for_the_next_fit() -> None:
    """The service drains the report and the dynamics states after each landed cut; on a
    thread they were engine calls under the lock the next underlying's fit holds, so
    the event loop waited for ETH's fit before it could publish BTC's surface."""
    engine = _HeldEngine("ETH")
    worker = EngineWorker(engine, "thread")
    # a safety release, so that the old code blocks for a while instead of for ever
    safety = threading.Timer(5.0, engine.release.set)
    safety.start()
    try:
        cuts = worker.cuts(_feed(worker, 600) + 10**12)
        assert [u.underlying for u in await anext(cuts)] == ["BTC"]
        report, states = worker.drain_report(), worker.take_dynamics_states()
        assert not engine.release.is_set()  # answered while ETH's fit is still held
        assert report.slices
        assert [s.underlying for s in states] == ["BTC"]
        engine.release.set()
        assert [u.underlying async for cut in cuts for u in cut] == ["ETH"]
        assert [s.underlying for s in worker.take_dynamics_states()] == ["ETH"]
    finally:
        safety.cancel()
        engine.release.set()
        worker.close()


@pytest.mark.parametrize("mode", ["inline", "process"])
async def test_each_cut_is_one_underlyings(mode: str) -> None:
    worker = EngineWorker(_engine(), mode)  # type: ignore[arg-type]
    try:
        cuts = [[u.underlying for u in cut]
                async for cut in worker.cuts(_feed(worker, 600) + 10**12)]
    finally:
        worker.close()
    assert cuts == [["BTC"], ["ETH"]]


class _TwoCuts:
    """A worker whose second cut lands only once ``release`` is set."""

    venue = "deribit"
    keep_instruments = False

    def __init__(self, first: SurfaceUpdate, second: SurfaceUpdate) -> None:
        self.updates = (first, second)
        self.release = asyncio.Event()

    async def cuts(self, now_ns: int, *, flush: bool = False):  # type: ignore[no-untyped-def]
        yield [self.updates[0]]
        await self.release.wait()
        yield [self.updates[1]]

    def drain_report(self) -> object:
        from streamer.pipeline.engine import EngineReport

        return EngineReport()


async def test_the_service_publishes_each_cut_as_it_lands() -> None:
    from streamer.app.service import Service

    engine, decoder, now_ns = _engine(), DeribitDecoder(), 0
    for line in itertools.islice(read_tickfile(bundled_sample()), 600):
        now_ns = line.received_ts_ns
        for quote in decoder.decode(line.raw, now_ns).quotes:
            engine.on_quote(quote)
    published = engine.flush(now_ns)
    assert [u.underlying for u in published] == ["BTC", "ETH"]

    class _Sink:
        def __init__(self) -> None:
            self.got: list[str] = []

        def publish(self, update: SurfaceUpdate) -> None:
            self.got.append(update.underlying)

    service = Service(load_config(None, env={}))
    worker = _TwoCuts(*published)
    service.engines["deribit"] = worker  # type: ignore[assignment]
    service.sink = sink = _Sink()  # type: ignore[assignment]
    timer = asyncio.ensure_future(service._cut_engines(flush=False))
    for _ in range(5):
        await asyncio.sleep(0)
    assert sink.got == ["BTC"]  # before ETH's cut has landed
    worker.release.set()
    await timer
    assert sink.got == ["BTC", "ETH"]
