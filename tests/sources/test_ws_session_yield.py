"""The websocket reader hands the event loop back during a burst of queued frames.

``recv`` returns a frame the socket already queued without suspending, so without a
pause a burst decodes in one loop step. The fake connection here never suspends and
the step clock is injected (each read advances it 1 ms): no wall clock is involved.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from streamer.sources.decoded import Decoded
from streamer.sources.ws_session import YIELD_AFTER_S, WebsocketSession
from streamer.types import Quote, VenueVolIndex


class _Sink:
    def on_quote(self, quote: Quote) -> None: ...

    def on_reject(self, venue: str, reason: str) -> None: ...

    def on_vol_index(self, index: VenueVolIndex) -> None: ...

    def on_reconnect(self, venue: str) -> None: ...

    def on_connected(self, venue: str, connected: bool) -> None: ...


class _Decoder:
    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.decoded = 0

    def decode(self, raw: bytes, received_ns: int) -> Decoded:
        self.clock[0] += 0.001  # each frame costs 1 ms of the step clock
        self.decoded += 1
        return Decoded()


class _Burst:
    """A connection with ``n`` frames queued: ``recv`` never suspends until they are out."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.done = asyncio.Event()

    async def recv(self) -> bytes:
        if self.left == 0:
            self.done.set()
            await asyncio.Event().wait()
        self.left -= 1
        return b"{}"


class _Session(WebsocketSession):
    def reset(self) -> None: ...

    async def subscribe(self, ws: Any) -> None: ...

    async def maintain(self, ws: Any) -> None: ...


def _session(decoder: _Decoder, clock: list[float]) -> _Session:
    return _Session("test", "ws://unused", _Sink(), decoder, silence_s=60.0,
                    subscribe_batch=10, requests_per_s=10.0, logger=logging.getLogger("t"),
                    on_raw=None, clock_ns=lambda: 0, rng=None,
                    step_clock=lambda: clock[0])


async def test_a_burst_of_queued_frames_is_decoded_over_many_loop_steps() -> None:
    clock = [0.0]
    decoder = _Decoder(clock)
    session = _session(decoder, clock)
    ws = _Burst(40)
    progress: list[int] = []  # frames decoded each time another task got the loop

    async def other_task() -> None:
        while not ws.done.is_set():
            progress.append(decoder.decoded)
            await asyncio.sleep(0)

    loop = asyncio.get_running_loop()
    reader = asyncio.create_task(session._read_frames(ws, loop))  # type: ignore[arg-type]
    await other_task()
    progress.append(decoder.decoded)
    reader.cancel()
    assert decoder.decoded == 40
    per_step = max(b - a for a, b in itertools.pairwise(progress))
    # 1 ms a frame: the reader pauses once YIELD_AFTER_S of decoding has passed
    assert per_step <= round(YIELD_AFTER_S / 0.001) + 1, progress


async def test_a_backed_up_socket_is_parsed_a_bounded_read_at_a_time() -> None:
    # A server sends 200 KiB of frames while the client reads nothing; asyncio's own
    # read size (256 KiB) would hand all of it to websockets' parser in one callback.
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import ServerConnection, serve

    from streamer.sources.ws_session import READ_CHUNK_BYTES, limit_reads

    frame = "x" * 1000
    go, sent = asyncio.Event(), asyncio.Event()

    async def burst(conn: ServerConnection) -> None:
        await go.wait()  # the client counts its reads first
        for _ in range(200):
            await conn.send(frame)
        sent.set()
        await conn.wait_closed()

    async with serve(burst, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", max_queue=None, compression=None) as ws:
            limit_reads(ws, READ_CHUNK_BYTES)
            reads: list[int] = []
            receive = ws.protocol.receive_data

            def counted(data: bytes) -> None:
                reads.append(len(data))
                receive(data)

            ws.protocol.receive_data = counted  # type: ignore[method-assign]
            go.set()
            await sent.wait()
            for _ in range(200):
                assert await ws.recv() == frame
    assert sum(reads) >= 200 * 1000
    assert max(reads) <= READ_CHUNK_BYTES
