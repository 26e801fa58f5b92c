"""A stand-in exchange behind schedule sends its due ticks in bursts that hand the loop back.

Every tick here is due at once (one receive time), so the timeline is as far behind as
it can be; the send never suspends, as a websocket send into an empty buffer does not.
"""

from __future__ import annotations

import asyncio
import itertools

from streamer.devtools.exchange.faults import Faults
from streamer.devtools.exchange.timeline import SENDS_PER_STEP, Tick, Timeline


async def test_a_catch_up_burst_is_sent_over_many_loop_steps() -> None:
    ticks = [Tick(1_000, b"{}", "k")] * (5 * SENDS_PER_STEP)
    timeline = Timeline(speed=1.0, loop=False, faults=Faults())
    sent: list[Tick] = []
    progress: list[int] = []  # ticks sent each time another task got the loop

    async def send(tick: Tick) -> None:
        sent.append(tick)

    timeline.start()
    player = asyncio.create_task(timeline.play(ticks, send))
    while not player.done():
        progress.append(len(sent))
        await asyncio.sleep(0)
    progress.append(len(sent))
    assert len(sent) == len(ticks)
    assert max(b - a for a, b in itertools.pairwise(progress)) <= SENDS_PER_STEP
