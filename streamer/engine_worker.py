"""An Engine's batches on a worker thread, so the event loop never waits for a fit.

The event loop only appends quotes (and venue vol indices) to an inbox: a deque, whose
``append`` and ``popleft`` are atomic, so no lock on that hot path. Each cut runs on
the worker's one thread: it first applies the inbox to the engine, then cuts the
batches that are due and returns their updates. The loop awaits it
(``run_in_executor``) while websockets, heartbeats and Kafka carry on: numpy releases
the GIL in its heavy parts, and the interpreter switches threads every few
milliseconds in between.

The other engine calls of the service (seeds, instruments, the report, dynamics
states) take the lock the cut holds; the service makes them between cuts (a UI request
for instruments during a cut waits for it). ``inline`` runs the same cut on
the event loop (the behaviour before the worker). An exception in a cut is raised
again in the awaiting task: an engine failure is never silent.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from streamer.pipeline.engine import Engine, EngineReport
from streamer.types import DynamicsState, Quote, SurfaceUpdate, VenueVolIndex

WorkerMode = Literal["thread", "inline"]
Cut = list[SurfaceUpdate]


class EngineWorker:
    """One venue's Engine behind an inbox, cut on a worker thread (or inline)."""

    def __init__(self, engine: Engine, mode: WorkerMode = "thread") -> None:
        self.engine = engine
        self.mode: WorkerMode = mode
        self._inbox: deque[Quote | VenueVolIndex] = deque()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = (
            ThreadPoolExecutor(1, thread_name_prefix=f"engine-{engine.venue}")
            if mode == "thread" else None)

    @property
    def venue(self) -> str:
        """The engine's venue."""
        return self.engine.venue

    def on_quote(self, quote: Quote) -> None:
        """Queue a quote for the next cut (cheap: the loop's hot path)."""
        self._inbox.append(quote)

    def on_vol_index(self, index: VenueVolIndex) -> None:
        """Queue a venue vol index for the next cut."""
        self._inbox.append(index)

    async def on_timer(self, now_ns: int) -> Cut:
        """Cut every batch due at ``now_ns``."""
        return await self._run(self._cut, now_ns)

    async def flush(self, now_ns: int) -> Cut:
        """Calibrate everything pending (the end of a run)."""
        return await self._run(self._flush, now_ns)

    def seed(self, update: SurfaceUpdate) -> bool:
        """``Engine.seed`` between cuts."""
        with self._lock:
            return self.engine.seed(update)

    def instruments(self, underlying: str) -> list[Quote]:
        """``Engine.instruments`` between cuts."""
        with self._lock:
            return self.engine.instruments(underlying)

    def drain_report(self) -> EngineReport:
        """``Engine.drain_report`` between cuts."""
        with self._lock:
            return self.engine.drain_report()

    def seed_dynamics(self, state: DynamicsState) -> bool:
        """``Engine.seed_dynamics`` between cuts."""
        with self._lock:
            return self.engine.seed_dynamics(state)

    def take_dynamics_states(self) -> list[DynamicsState]:
        """``Engine.take_dynamics_states`` between cuts."""
        with self._lock:
            return self.engine.take_dynamics_states()

    def close(self) -> None:
        """Stop the worker thread (waits for a cut in progress)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # -- on the worker thread ------------------------------------------------------------
    async def _run(self, job: Callable[[int], Cut], now_ns: int) -> Cut:
        if self._executor is None:
            return job(now_ns)
        return await asyncio.get_running_loop().run_in_executor(self._executor, job, now_ns)

    def _apply_inbox(self) -> None:
        engine, inbox = self.engine, self._inbox
        while inbox:
            item = inbox.popleft()
            if isinstance(item, Quote):
                engine.on_quote(item)
            else:
                engine.on_vol_index(item)

    def _cut(self, now_ns: int) -> Cut:
        with self._lock:
            self._apply_inbox()
            return self.engine.on_timer(now_ns)

    def _flush(self, now_ns: int) -> Cut:
        with self._lock:
            self._apply_inbox()
            return self.engine.flush(now_ns)
