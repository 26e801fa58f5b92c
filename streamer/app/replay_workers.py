"""``streamer replay`` on several cores: each underlying calibrated in one process.

An underlying's surfaces depend only on its own quotes and on its own batch clock (one
``Batcher`` per underlying, cut on the file's clock by ``FileClock``), so the underlyings
of a file can be calibrated apart and their surfaces merged back into the order one
process publishes them: by the file time that cut them, the final flush after the cuts
of its instant, then by underlying (``Engine.on_timer``'s order). That changes no byte.

This process reads and decodes the file (the decoder's rejects, the progress and a
foreign file stay its business) and calibrates the first underlying it meets itself;
each further one, up to ``workers - 1`` of them, gets a spawned child process, and
beyond that the underlyings are dealt round-robin. A child receives its underlyings'
quotes in chunks, each ending with the file time the file has reached, replays them on
that clock and answers with its surfaces, its engine's report and that time: it will
publish nothing at or before it again, so what every engine has passed is published.
A reader thread per child takes its answers, so a child blocked on a full pipe never
waits for this process, which may be blocked feeding another.
"""

from __future__ import annotations

import heapq
import itertools
import multiprocessing
import queue
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from streamer.app.file_replay import FileClock, Stamped, new_engine
from streamer.config import AppConfig
from streamer.errors import StreamerError
from streamer.pipeline.engine import EngineReport
from streamer.types import Quote, SurfaceUpdate, VenueVolIndex

#: Lines read between chunks sent to the children (and merges of their answers).
CHUNK_LINES = 256
#: One line's share of a child: its file time, its quotes and vol indices there.
Entry = tuple[int, list[Quote], list[VenueVolIndex]]
_ENCODE = msgspec.msgpack.Encoder()
_ENTRIES = msgspec.msgpack.Decoder(list[tuple[int, list[Quote], list[VenueVolIndex]]])
_END = 1 << 62  # a child's time mark once it has flushed: past every file time
#: The order one process publishes in: file time, the final flush after a time's cuts,
#: underlying; then the order cut (one engine's).
_Key = tuple[int, int, str, int]


class WorkerError(StreamerError):
    """A replay's worker process failed; its error, not a traceback of ours."""


@dataclass
class _Answer:
    surfaces: list[tuple[int, int, SurfaceUpdate]]  # (file time, phase, surface)
    report: EngineReport
    mark_ns: int


@dataclass
class _Child:
    conn: Connection
    process: multiprocessing.process.BaseProcess
    answers: queue.Queue[_Answer | str] = field(default_factory=queue.Queue)
    entries: list[Entry] = field(default_factory=list)
    mark_ns: int = -1

    def send(self, message: tuple[Any, ...]) -> None:
        """A message to the child; its death is a :class:`WorkerError`."""
        try:
            self.conn.send(message)
        except OSError as exc:  # BrokenPipeError: the child is gone
            self.process.join(5.0)
            raise WorkerError(f"replay worker {self.process.name}: the worker process "
                              f"exited (code {self.process.exitcode})") from exc

    def read(self) -> None:
        """The reader thread: every answer into ``answers``; a str says why it ended."""
        try:
            while True:
                answer = self.conn.recv()
                self.answers.put(answer)
                if isinstance(answer, str) or answer.mark_ns == _END:
                    return
        except (EOFError, OSError):
            self.answers.put(f"the worker process exited (code {self.process.exitcode})")


class Engines:
    """The engines of a replay spread over ``workers`` processes (this one included)."""

    def __init__(self, config: AppConfig, venue: str, workers: int) -> None:
        self._config, self._venue, self._workers = config, venue, workers
        self._local = FileClock(new_engine(config, venue))
        self._owner: dict[str, int] = {}  # underlying -> 0 (here) or child number + 1
        self._children: list[_Child] = []
        self._local_entries: list[Entry] = []
        self._pending: list[tuple[_Key, SurfaceUpdate]] = []  # a heap
        self._order = itertools.count()
        self._report = EngineReport()
        self._lines = 0

    def line(self, now_ns: int, quotes: Sequence[Quote],
             indices: Sequence[VenueVolIndex]) -> None:
        """One line of the file: its quotes to their underlyings' engines."""
        mine: dict[int, Entry] = {}
        for quote in quotes:
            self._entry(mine, now_ns, quote.underlying)[1].append(quote)
        for index in indices:
            self._entry(mine, now_ns, index.underlying)[2].append(index)
        for owner, entry in mine.items():
            (self._local_entries if owner == 0 else self._children[owner - 1].entries
             ).append(entry)
        self._lines += 1
        if self._lines % CHUNK_LINES == 0:
            self._send(now_ns)

    def end(self, now_ns: int) -> None:
        """The end of the file: every engine flushes at its last instant."""
        self._send(now_ns)
        for child in self._children:
            child.send(("end", now_ns))
        self._take(self._local.end(now_ns), 1)
        while any(c.mark_ns != _END for c in self._children):
            self._collect(block=True)

    def ready(self) -> list[Stamped]:
        """The surfaces every engine has passed, in the order one process publishes."""
        self._collect(block=False)
        low = min((c.mark_ns for c in self._children), default=_END)
        out: list[Stamped] = []
        while self._pending and (self._pending[0][0][0] <= low or low == _END):
            key, update = heapq.heappop(self._pending)
            out.append((key[0], update))
        return out

    def report(self) -> EngineReport:
        """Every engine's report since the last call."""
        report, self._report = self._report, EngineReport()
        report.add(self._local.engine.drain_report())
        return report

    def close(self) -> None:
        """Stop the children (at the end, or on an error half way)."""
        for child in self._children:
            if child.process.is_alive():
                child.process.terminate()
            child.process.join(5.0)
            child.conn.close()

    def _entry(self, mine: dict[int, Entry], now_ns: int, underlying: str) -> Entry:
        owner = self._owner_of(underlying)
        entry = mine.get(owner)
        if entry is None:
            entry = mine[owner] = (now_ns, [], [])
        return entry

    def _owner_of(self, underlying: str) -> int:
        owner = self._owner.get(underlying)
        if owner is None:
            owner = len(self._owner) % self._workers
            if owner > len(self._children):
                self._children.append(self._spawn())
            self._owner[underlying] = owner
        return owner

    def _spawn(self) -> _Child:
        context = multiprocessing.get_context("spawn")  # this process may have threads
        conn, theirs = context.Pipe()
        process = context.Process(target=_child_main, args=(theirs, self._config, self._venue),
                                  name=f"replay-worker-{len(self._children) + 1}",
                                  daemon=True)
        process.start()
        theirs.close()
        child = _Child(conn, process)
        threading.Thread(target=child.read, name=process.name, daemon=True).start()
        return child

    def _send(self, now_ns: int) -> None:
        """Each child its entries, to ``now_ns``; this process's own, run here."""
        for child in self._children:
            child.send(("chunk", _ENCODE.encode(child.entries), now_ns))
            child.entries = []
        for at_ns, quotes, indices in self._local_entries:
            self._take(self._local.line(at_ns, quotes, indices), 0)
        self._local_entries = []
        self._take(self._local.line(now_ns), 0)

    def _take(self, stamped: list[Stamped], phase: int) -> None:
        for at_ns, update in stamped:
            self._push(at_ns, phase, update)

    def _push(self, at_ns: int, phase: int, update: SurfaceUpdate) -> None:
        heapq.heappush(self._pending, ((at_ns, phase, update.underlying, next(self._order)),
                                       update))

    def _collect(self, *, block: bool) -> None:
        """The children's answers so far (with ``block``, at least one)."""
        for child in self._children:
            while True:
                try:
                    answer = child.answers.get(block=block and child.mark_ns != _END)
                except queue.Empty:
                    break
                if isinstance(answer, str):
                    raise WorkerError(f"replay worker {child.process.name}: {answer}")
                for at_ns, phase, update in answer.surfaces:
                    self._push(at_ns, phase, update)
                self._report.add(answer.report)
                child.mark_ns = answer.mark_ns
                if block or child.mark_ns == _END:
                    break


def _child_main(conn: Connection, config: AppConfig, venue: str) -> None:
    """A worker process's entry."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    serve(conn, config, venue)


def serve(conn: Connection, config: AppConfig, venue: str) -> None:
    """A worker: chunks of its underlyings' lines in, surfaces out, until the end."""
    try:
        clock = FileClock(new_engine(config, venue))
        while True:
            message: Any = conn.recv()
            if message[0] == "end":
                stamped, phase, mark = clock.end(message[1]), 1, _END
            else:
                stamped = [s for at_ns, quotes, indices in _ENTRIES.decode(message[1])
                           for s in clock.line(at_ns, quotes, indices)]
                stamped += clock.line(message[2])
                phase, mark = 0, message[2]
            conn.send(_Answer([(at_ns, phase, u) for at_ns, u in stamped],
                              clock.engine.drain_report(), mark))
            if mark == _END:
                return
    except (EOFError, OSError, KeyboardInterrupt):  # the parent went away
        return
    except Exception as exc:  # said to the parent, which raises it
        conn.send(f"{type(exc).__name__}: {exc}")
