"""The replay's one clock: a tick file played on a shared timeline, and staged market events.

Like a live exchange, every connection sees the same moment of the market: the
clock starts at the first subscription and message i is due
``(recv_i - recv_0) / speed`` later; a client connecting later joins at the current
position. Looping, each pass is re-timed: its exchange timestamps are moved on by the
recording's span (plus one mean gap between messages) per pass, so quotes stay fresh
instead of going back in time (``retime``). Listings, expiries, maintenance windows
and silenced streams are placed on the same clock.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

from streamer.config import TICKFILE_DEFAULTS, TickFileConfig
from streamer.devtools.exchange.faults import Faults
from streamer.tickfile import read_tickfile


class Tick(NamedTuple):
    """One recorded message and the subscription key it is sent on."""

    received_ns: int
    raw: bytes
    key: str


def load_ticks(path: Path, key_of: Callable[[bytes], str],
               limits: TickFileConfig = TICKFILE_DEFAULTS) -> list[Tick]:
    """Every good line of a tick file with its key, bad ones skipped within ``limits``
    (blocking: run it in a thread)."""
    return [Tick(line.received_ts_ns, line.raw, key_of(line.raw))
            for line in read_tickfile(path, max_bad_share=limits.max_bad_share,
                                      max_line_bytes=limits.max_line_bytes)]


#: The exchange-time fields of the venues' data messages (ms since the epoch, 13 digits,
#: a number or a string): Deribit ``timestamp``, OKX and Bybit ``ts``, Binance ``E``.
_EXCHANGE_TS = re.compile(rb'"(timestamp|ts|E)":("?)(\d{13})\b')


def retime(raw: bytes, shift_ms: int) -> bytes:
    """``raw`` with every exchange timestamp moved on by ``shift_ms``."""
    if not shift_ms:
        return raw
    return _EXCHANGE_TS.sub(
        lambda m: b'"%s":%s%d' % (m[1], m[2], int(m[3]) + shift_ms), raw)


def pass_shift_ms(ticks: list[Tick]) -> int:
    """How far one pass of a loop moves exchange time on: the recording's span (of
    receive or of exchange times, the longer) plus one mean gap between messages."""
    if len(ticks) < 2:
        return 1000
    received_ms = (ticks[-1].received_ns - ticks[0].received_ns) / 1e6
    stamps = [int(m[3]) for tick in ticks for m in _EXCHANGE_TS.finditer(tick.raw)]
    exchange_ms = max(stamps) - min(stamps) if stamps else 0
    return max(1, round(max(received_ms, exchange_ms) + received_ms / (len(ticks) - 1)))


#: Behind schedule (the loop was busy, or the speed is high), the due ticks go out
#: back to back; after this many without a pause the loop is handed back, so a catch-up
#: burst never becomes one long step of the loop it shares with the service.
SENDS_PER_STEP = 32


class Timeline:
    """When each tick is due, and which staged market events hold at the moment."""

    def __init__(self, speed: float, loop: bool, faults: Faults) -> None:
        self.speed, self.loop, self.faults = speed, loop, faults
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        self.started_at: float | None = None

    def start(self) -> None:
        """Start the clock (idempotent): the first subscription does."""
        if self.started_at is None:
            self.started_at = time.monotonic()
            self.started.set()

    def elapsed(self) -> float:
        """Seconds since playback started (0 before)."""
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at

    def listed(self, instrument: str) -> bool:
        """False before a staged listing and from a staged expiry on."""
        new, gone = self.faults.new_listing, self.faults.expiry
        if new is not None and new[0] == instrument and self.elapsed() < new[1]:
            return False
        return not (gone is not None and gone[0] == instrument and self.elapsed() >= gone[1])

    def in_maintenance(self) -> bool:
        """Whether the maintenance window is open now."""
        window = self.faults.maintenance
        return (window is not None and self.started_at is not None
                and window[0] <= self.elapsed() < window[0] + window[1])

    def silenced(self, key: str) -> bool:
        """Whether a ``silence_streams`` window holds ``key`` silent now."""
        elapsed = self.elapsed()
        return self.started_at is not None and any(
            k == key and start <= elapsed < start + length
            for k, start, length in self.faults.silence_streams)

    async def play(self, ticks: list[Tick], send: Callable[[Tick], Awaitable[None]]) -> None:
        """Hand each tick to ``send`` when due, once or forever (``loop``, re-timed)."""
        await self.started.wait()
        step_ms, passes = (pass_shift_ms(ticks) if self.loop else 0), 0
        while True:
            origin_wall, origin_file = time.monotonic(), ticks[0].received_ns if ticks else 0
            shift_ms = passes * step_ms
            unpaused = 0
            for tick in ticks:
                delay = origin_wall + (tick.received_ns - origin_file) / 1e9 / self.speed - (
                    time.monotonic())
                if delay > 0 or unpaused >= SENDS_PER_STEP:
                    await asyncio.sleep(max(delay, 0.0))
                    unpaused = 0
                unpaused += 1
                await send(tick._replace(raw=retime(tick.raw, shift_ms)) if shift_ms else tick)
            if not self.loop or not ticks:
                self.finished.set()
                return
            passes += 1
            # The gap between passes is one mean gap, as the shift counts it.
            await asyncio.sleep(step_ms / 1e3 / self.speed - (
                (ticks[-1].received_ns - origin_file) / 1e9 / self.speed))

    async def maintenance(self, notify: Callable[[bool], Awaitable[None]]) -> None:
        """Lock notices at the start and every 0.5 s of the window (Deribit repeats
        states), then one unlock notice."""
        if self.faults.maintenance is None:
            return
        start_s, length_s = self.faults.maintenance
        await self.started.wait()
        await asyncio.sleep(start_s)
        while self.in_maintenance():
            await notify(True)
            await asyncio.sleep(min(0.5, max(start_s + length_s - self.elapsed(), 0.001)))
        await notify(False)
