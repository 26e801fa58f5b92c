"""``streamer replay`` on several cores: each underlying calibrated in one process.

An underlying's surfaces depend only on its own quotes and on its own batch clock (one
``Batcher`` per underlying, cut on the file's clock by ``FileClock``), so the underlyings
of a file can be calibrated apart and their surfaces merged back into the order one
process publishes them: by the line whose reading cut them, the batches that fell due
before it (by the instant they fell due) ahead of those it filled, then by underlying
(``Engine.on_timer``'s order), the final flush last. Every engine sees every line's time,
so each cuts at the same line as one process would, ties and clocks going backwards
included. That changes no byte.

This process reads and decodes the file (the decoder's rejects, the progress and a
foreign file stay its business) and calibrates the first underlying it meets itself;
each further one, up to ``workers - 1`` of them, gets a spawned child process, and
beyond that the underlyings are dealt round-robin. A child receives every line's time
with its underlyings' quotes there, in chunks, replays them on that clock and answers
with its surfaces, its engine's report and the last line it read: it will publish
nothing from that line or before again, so what every engine has passed is published.
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
#: One line's share of one engine: its number in the file, its file time, and its quotes
#: and vol indices of that engine's underlyings.
Entry = tuple[int, int, list[Quote], list[VenueVolIndex]]
#: What a child gets for a run of lines: the first one's number, every line's file time,
#: and the entries of the lines with its underlyings' quotes.
Chunk = tuple[int, list[int], list[Entry]]
_ENCODE = msgspec.msgpack.Encoder()
_CHUNK = msgspec.msgpack.Decoder(
    tuple[int, list[int], list[tuple[int, int, list[Quote], list[VenueVolIndex]]]])
_END = 1 << 62  # a child's mark once it has flushed: past every line
#: Where a surface falls in one process's order: the line that cut it; 0 for a batch that
#: fell due before it, 1 for one cut at its time, 2 for the final flush; the instant it
#: was cut; its underlying; then the order its engine cut it.
_Key = tuple[int, int, int, str, int]
#: A surface and its key's first four parts, as a child sends it.
_Placed = tuple[int, int, int, SurfaceUpdate]


class WorkerError(StreamerError):
    """A replay's worker process failed; its error, not a traceback of ours."""


@dataclass
class _Answer:
    surfaces: list[_Placed]
    report: EngineReport
    mark: int  # the last line read (_END: flushed, the last answer)


def _placed(line_no: int, now_ns: int, stamped: list[Stamped], flush: bool = False
            ) -> list[_Placed]:
    """Cuts of one engine at one line, with where they fall in one process's order."""
    return [(line_no, 2 if flush else int(at_ns >= now_ns), at_ns, update)
            for at_ns, update in stamped]


def _replay(clock: FileClock, chunk: Chunk) -> list[_Placed]:
    """One engine through a run of lines: each line with its quotes, and each line
    without where a batch of its falls due (by then: the cut one process makes there)."""
    first, times, entries = chunk
    own = iter(entries)
    entry = next(own, None)
    due_ns = clock.engine.next_due_ns()
    out: list[_Placed] = []
    for line_no, now_ns in enumerate(times, start=first):
        quotes: list[Quote] = []
        indices: list[VenueVolIndex] = []
        if entry is not None and entry[0] == line_no:
            quotes, indices = entry[2], entry[3]
            entry = next(own, None)
        elif due_ns is None or due_ns > now_ns:
            continue  # nothing of this engine's here, nothing due: no cut
        out += _placed(line_no, now_ns, clock.line(now_ns, quotes, indices))
        due_ns = clock.engine.next_due_ns()
    return out


@dataclass
class _Child:
    conn: Connection
    process: multiprocessing.process.BaseProcess
    answers: queue.Queue[_Answer | str] = field(default_factory=queue.Queue)
    entries: list[Entry] = field(default_factory=list)
    mark: int = -1
    reader: threading.Thread | None = None

    def send(self, message: tuple[Any, ...]) -> None:
        """A message to the child; its death is a :class:`WorkerError` saying why."""
        try:
            self.conn.send(message)
        except OSError as exc:  # BrokenPipeError: the child is gone
            raise WorkerError(f"replay worker {self.process.name}: {self.why_gone()}") from exc

    def why_gone(self) -> str:
        """The child's own error where it sent one before it went, else its exit code."""
        self.process.join(5.0)
        if self.reader is not None:
            self.reader.join(5.0)
        while True:
            try:
                answer = self.answers.get_nowait()
            except queue.Empty:
                return f"the worker process exited (code {self.process.exitcode})"
            if isinstance(answer, str):
                return answer

    def read(self) -> None:
        """The reader thread: every answer into ``answers``; a str says why it ended."""
        try:
            while True:
                answer = self.conn.recv()
                self.answers.put(answer)
                if isinstance(answer, str) or answer.mark == _END:
                    return
        except (EOFError, OSError):
            self.process.join(5.0)
            self.answers.put(f"the worker process exited (code {self.process.exitcode})")


class Engines:
    """The engines of a replay spread over ``workers`` processes (this one included)."""

    def __init__(self, config: AppConfig, venue: str, workers: int) -> None:
        self._config, self._venue, self._workers = config, venue, workers
        self._local = FileClock(new_engine(config, venue))
        self._owner: dict[str, int] = {}  # underlying -> 0 (here) or child number + 1
        self._children: list[_Child] = []
        self._local_entries: list[Entry] = []
        self._first, self._times = 1, list[int]()  # the lines since the last chunk
        self._pending: list[tuple[_Key, SurfaceUpdate]] = []  # a heap
        self._order = itertools.count()
        self._report = EngineReport()
        self._lines = 0
        self._last: tuple[int, int] = (0, 0)  # the last line read: number, time

    def line(self, now_ns: int, quotes: Sequence[Quote],
             indices: Sequence[VenueVolIndex]) -> None:
        """One line of the file: its time to every engine, its quotes to their own."""
        self._lines += 1
        self._times.append(now_ns)
        mine: dict[int, Entry] = {}
        for quote in quotes:
            self._entry(mine, now_ns, quote.underlying)[2].append(quote)
        for index in indices:
            self._entry(mine, now_ns, index.underlying)[3].append(index)
        for owner, entry in mine.items():
            (self._local_entries if owner == 0 else self._children[owner - 1].entries
             ).append(entry)
        self._last = (self._lines, now_ns)
        if self._lines % CHUNK_LINES == 0:
            self._send()

    def end(self, now_ns: int) -> None:
        """The end of the file: every engine flushes at its last instant."""
        self._send()
        line_no = self._last[0]
        for child in self._children:
            child.send(("end", line_no, now_ns))
        self._take(_placed(line_no, now_ns, self._local.end(now_ns), flush=True))
        while any(c.mark != _END for c in self._children):
            self._collect(block=True)

    def ready(self) -> list[Stamped]:
        """The surfaces every engine has passed, in the order one process publishes."""
        self._collect(block=False)
        low = min((c.mark for c in self._children), default=_END)
        out: list[Stamped] = []
        while self._pending and self._pending[0][0][0] <= low:
            key, update = heapq.heappop(self._pending)
            out.append((key[2], update))
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
            entry = mine[owner] = (self._lines, now_ns, [], [])
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
        child.reader = threading.Thread(target=child.read, name=process.name, daemon=True)
        child.reader.start()
        return child

    def _send(self) -> None:
        """Each child its entries; this process's own, run here."""
        for child in self._children:
            child.send(("chunk", _ENCODE.encode((self._first, self._times, child.entries))))
            child.entries = []
        self._take(_replay(self._local, (self._first, self._times, self._local_entries)))
        self._first, self._times, self._local_entries = self._lines + 1, [], []

    def _take(self, placed: list[_Placed]) -> None:
        for line_no, stage, at_ns, update in placed:
            heapq.heappush(self._pending, ((line_no, stage, at_ns, update.underlying,
                                            next(self._order)), update))

    def _collect(self, *, block: bool) -> None:
        """The children's answers so far (with ``block``, at least one)."""
        for child in self._children:
            while True:
                try:
                    answer = child.answers.get(block=block and child.mark != _END)
                except queue.Empty:
                    break
                if isinstance(answer, str):
                    raise WorkerError(f"replay worker {child.process.name}: {answer}")
                self._take(answer.surfaces)
                self._report.add(answer.report)
                child.mark = answer.mark
                if block or child.mark == _END:
                    break


def _child_main(conn: Connection, config: AppConfig, venue: str) -> None:
    """A worker process's entry."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    serve(conn, config, venue)


def serve(conn: Connection, config: AppConfig, venue: str) -> None:
    """A worker: chunks of lines in, surfaces out, until the end."""
    try:
        clock = FileClock(new_engine(config, venue))
        mark = -1
        while True:
            message: Any = conn.recv()
            if message[0] == "end":
                _, line_no, now_ns = message
                placed, mark = _placed(line_no, now_ns, clock.end(now_ns), flush=True), _END
            else:
                chunk = _CHUNK.decode(message[1])
                placed = _replay(clock, chunk)
                mark = chunk[0] + len(chunk[1]) - 1 if chunk[1] else mark
            conn.send(_Answer(placed, clock.engine.drain_report(), mark))
            if mark == _END:
                return
    except (EOFError, OSError, KeyboardInterrupt):  # the parent went away
        return
    except Exception as exc:  # said to the parent, which raises it
        conn.send(f"{type(exc).__name__}: {exc}")
