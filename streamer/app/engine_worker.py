"""An Engine's batches on a worker thread or process, so the event loop never waits for a fit.

The event loop only appends quotes (and venue vol indices) to an inbox per underlying: a
deque, whose ``append`` and ``popleft`` are atomic, so no lock on that hot path. A cut is
one underlying's: it runs on the worker's one thread, first applies that underlying's
inbox to the engine, then cuts its batch and returns its update. The underlyings due at
one timer are cut one after another, and each one's update is handed on as soon as it
lands (``cuts``), so the first surface of a timer does not wait for the others' fits;
an underlying not due keeps its quotes in its inbox, so the engine sees no pending
batch of it and cuts only the one asked for. The loop awaits each cut
(``run_in_executor``) while websockets, heartbeats and Kafka carry on: numpy releases
the GIL in its heavy parts, and the interpreter switches threads every few
milliseconds in between. The loop also counts the quotes with the engine's own batch
rule (``pipeline.batcher``), so it knows which cuts are due, and when the next one is,
without asking the worker.

Each cut comes back with the engine's report and the dynamics states it took, in
every mode (taken under the cut's own lock), so the service's metrics and dynamics
after a cut never wait for the next underlying's fit. The rarer engine calls (seeds,
instruments) take the lock the cut holds; the service makes them between cuts. What is
read while the next cut may be running (the live page's bid/ask bars, the greeks)
comes from ``published_instruments``: the instruments each cut kept beside its
surfaces while ``keep_instruments`` is set, read without the lock, so the event loop
never waits for a fit to draw a page. ``inline`` runs the same cut on
the event loop (the behaviour before the worker). An exception in a cut is raised
again in the awaiting task: an engine failure is never silent.

``process`` moves the engine into a child process of its own (spawned, not forked:
the service has threads), off the event loop's GIL as well: a thread still shares it,
and the Python between numpy's calls in a fit held the loop up to hundreds of
milliseconds. The inbox then travels to the child with each cut (its quotes as one
msgpack string), and the updates come back with the report and states as above, so
the service's metrics and dynamics after each cut cost no round trip; the rarer calls
(seeds, instruments) are round trips, in order after the cuts
(the service makes them off the loop). The child runs at a lower scheduling priority
(``nice``): a fit is throughput work, the loop's ingest and sends are latency work, and
on a small machine the child, the loop and a broker share its cores.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Literal

import msgspec

from streamer.pipeline.batcher import Batcher, earliest_due_ns
from streamer.pipeline.engine import Engine, EngineReport
from streamer.types import DynamicsState, Quote, SurfaceUpdate, VenueVolIndex

WorkerMode = Literal["thread", "inline", "process"]
#: A process cut's quotes go to the child as one msgpack string, encoded on the loop:
#: pickling the Structs (in the executor's feeder thread, holding the GIL the loop
#: needs) cost ~3.5x as long: 5.9 ms against 1.6 ms for 900 quotes. The vol indices,
#: a few, are pickled; the engine reads them only when it builds a surface, so they may
#: follow the quotes.
_QUOTES = msgspec.msgpack.Encoder()
_QUOTE_LIST = msgspec.msgpack.Decoder(list[Quote])
Cut = list[SurfaceUpdate]
Kept = dict[str, list[Quote]]  # by underlying: the instruments behind its surface of a cut
#: A finished cut: its updates, kept instruments, the engine's report since the previous
#: cut and the dynamics states it took.
_Landed = tuple[Cut, Kept, EngineReport, list[DynamicsState]]


class EngineWorker:
    """One venue's Engine behind an inbox, cut on a worker thread (or process, or inline)."""

    def __init__(self, engine: Engine, mode: WorkerMode = "thread", nice: int = 0) -> None:
        self.engine = engine  # in ``process`` mode, the child's copy is the live one
        self.mode: WorkerMode = mode
        self._venue = engine.venue
        self._inboxes: dict[str, deque[Quote | VenueVolIndex]] = {}  # by underlying
        self._lock = threading.Lock()
        self._report = EngineReport()  # what came back with the cuts
        self._states: dict[tuple[str, str], DynamicsState] = {}  # the same, latest per key
        #: Keep, with each cut, the instruments behind each surface it computes.
        self.keep_instruments = False
        self._kept: dict[str, list[Quote]] = {}
        self._in_flight: deque[asyncio.Future[_Landed]] = deque()  # in the order started
        # The engine's batch rule, mirrored on the loop from the same quotes: which cuts
        # are due (and when the next is) without a round trip to the worker.
        self._batchers: dict[str, Batcher] = {}
        self._executor: Executor | None = None
        if mode == "thread":
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"engine-{engine.venue}")
        elif mode == "process":
            self._executor = _spawn(engine, nice)

    @property
    def venue(self) -> str:
        """The engine's venue."""
        return self._venue

    def on_quote(self, quote: Quote) -> None:
        """Queue a quote for its underlying's next cut (cheap: the loop's hot path)."""
        self._inbox(quote.underlying).append(quote)
        batcher = self._batchers.get(quote.underlying)
        if batcher is None:
            batch = self.engine.batch
            batcher = self._batchers[quote.underlying] = Batcher(batch.interval_ms,
                                                                 batch.max_quotes)
        batcher.add(quote.received_ts_ns)

    def next_due_ns(self, now_ns: int) -> int | None:
        """When the earliest pending batch falls due (``now_ns`` if one is due already;
        None: nothing pending), so the service's timer wakes at that instant."""
        return earliest_due_ns(self._batchers.values(), now_ns)

    def on_vol_index(self, index: VenueVolIndex) -> None:
        """Queue a venue vol index for its underlying's next cut."""
        self._inbox(index.underlying).append(index)

    def _inbox(self, underlying: str) -> deque[Quote | VenueVolIndex]:
        inbox = self._inboxes.get(underlying)
        if inbox is None:
            inbox = self._inboxes[underlying] = deque()
        return inbox

    async def cuts(self, now_ns: int, *, flush: bool = False) -> AsyncIterator[Cut]:
        """The updates of each underlying due at ``now_ns`` (every one pending when
        ``flush``), one underlying at a time, as each cut lands.

        A cut whose wait was cancelled (the timer's, at shutdown) still ran: its
        surfaces and report come out first in the next call, never dropped.
        """
        while self._in_flight:
            yield await self._landed()
        if flush:
            due = sorted(self._inboxes.keys() | self._batchers.keys())
        else:
            due = sorted(u for u, b in self._batchers.items() if b.due(now_ns))
        for underlying in due:
            if underlying in self._batchers:
                self._batchers[underlying].cut()
            self._in_flight.append(self._start(underlying, now_ns, flush))
        while self._in_flight:
            yield await self._landed()

    def seed(self, update: SurfaceUpdate) -> bool:
        """``Engine.seed`` between cuts."""
        result: bool = self._call("seed", update)
        return result

    def instruments(self, underlying: str) -> list[Quote]:
        """``Engine.instruments`` between cuts."""
        result: list[Quote] = self._call("instruments", underlying)
        return result

    def published_instruments(self, underlying: str) -> list[Quote] | None:
        """The instruments behind the underlying's latest surface, as its cut kept them
        (None when no cut kept any); never waits for a cut in progress."""
        return self._kept.get(underlying)

    def drain_report(self) -> EngineReport:
        """The engine's report of the cuts landed since the last call."""
        report, self._report = self._report, EngineReport()
        return report

    def seed_dynamics(self, state: DynamicsState) -> bool:
        """``Engine.seed_dynamics`` between cuts."""
        result: bool = self._call("seed_dynamics", state)
        return result

    def take_dynamics_states(self) -> list[DynamicsState]:
        """The dynamics states that came back with the cuts since the last call
        (``Engine.take_dynamics_states`` at each cut), the latest per key."""
        states, self._states = list(self._states.values()), {}
        return states

    def close(self) -> None:
        """Stop the worker thread or process (waits for a cut in progress)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _call(self, name: str, *args: Any) -> Any:
        if isinstance(self._executor, ProcessPoolExecutor):
            return self._executor.submit(_call, name, *args).result()
        with self._lock:
            return getattr(self.engine, name)(*args)

    def _start(self, underlying: str, now_ns: int, flush: bool) -> asyncio.Future[_Landed]:
        keep = self.keep_instruments
        inbox = self._inbox(underlying)
        if isinstance(self._executor, ProcessPoolExecutor):
            items = list(inbox)
            inbox.clear()  # appended only on this loop: nothing arrives in between
            quotes = _QUOTES.encode([i for i in items if isinstance(i, Quote)])
            others: list[Quote | VenueVolIndex] = [i for i in items
                                                   if not isinstance(i, Quote)]
            return asyncio.wrap_future(
                self._executor.submit(_cut, quotes, others, now_ns, flush, keep))
        loop = asyncio.get_running_loop()
        if self._executor is None:
            done: asyncio.Future[_Landed] = loop.create_future()
            try:
                done.set_result(self._cut(inbox, now_ns, flush, keep))
            except Exception as exc:  # raised where it is awaited, as from a worker
                done.set_exception(exc)
            return done
        return loop.run_in_executor(self._executor, self._cut, inbox, now_ns, flush, keep)

    async def _landed(self) -> Cut:
        """The updates of the oldest cut in flight, its report kept."""
        cut = self._in_flight[0]
        try:  # shielded: a cancelled wait leaves the cut running and its result to collect
            updates, kept, report, states = await asyncio.shield(cut)
        finally:
            if cut.done():  # an engine error is raised once, here
                self._in_flight.popleft()
        self._report.add(report)
        self._states.update({(d.venue, d.underlying): d for d in states})
        self._kept.update(kept)
        return updates

    # -- on the worker thread ------------------------------------------------------------
    def _cut(self, inbox: deque[Quote | VenueVolIndex], now_ns: int, flush: bool,
             keep: bool) -> _Landed:
        with self._lock:
            items = []
            while inbox:
                items.append(inbox.popleft())
            return _apply_and_cut(self.engine, items, now_ns, flush, keep)


def _apply_and_cut(engine: Engine, items: list[Quote | VenueVolIndex], now_ns: int,
                   flush: bool, keep: bool) -> _Landed:
    for item in items:
        if isinstance(item, Quote):
            engine.on_quote(item)
        else:
            engine.on_vol_index(item)
    updates = engine.flush(now_ns) if flush else engine.on_timer(now_ns)
    kept = {u.underlying: engine.instruments(u.underlying) for u in updates} if keep else {}
    states = engine.take_dynamics_states() if updates else []  # none new without a surface
    return updates, kept, engine.drain_report(), states


def _spawn(engine: Engine, nice: int) -> ProcessPoolExecutor:
    """The worker process, started now with SIGINT blocked.

    A terminal's Ctrl-C reaches the whole process group: the parent shuts down (and
    flushes through this child), so the child must not die of it first, not even while
    it is still importing, before it can ignore it (a traceback, and no flush). The
    blocked mask is inherited across the spawn; the child ignores SIGINT, then unblocks.
    """
    executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_adopt, initargs=(engine, nice))
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        executor.submit(int)  # launches the child, here and now
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return executor


# -- in the worker process -----------------------------------------------------------------
_ENGINE: Engine | None = None


def _adopt(engine: Engine, nice: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's to handle (_spawn)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if nice > 0:  # raising one's own niceness needs no privilege
        os.nice(nice)
    global _ENGINE
    _ENGINE = engine


def _engine() -> Engine:
    assert _ENGINE is not None, "the worker process has no engine"
    return _ENGINE


def _cut(quotes: bytes, others: list[Quote | VenueVolIndex], now_ns: int, flush: bool,
         keep: bool) -> _Landed:
    engine = _engine()
    items: list[Quote | VenueVolIndex] = [*_QUOTE_LIST.decode(quotes), *others]
    return _apply_and_cut(engine, items, now_ns, flush, keep)


def _call(name: str, *args: Any) -> Any:
    return getattr(_engine(), name)(*args)
