"""``streamer serve-replay``: every server setting and fault a flag, and the flags work.

Parse level: the parser offers a flag for each ``Faults`` field and each
``ReplayServer`` setting (a fault added without a flag fails here), and each flag
lands in its field. End to end: the command run as a subprocess, a real websocket
client seeing the faults it was given (a rate-limit answer, a refused stream that
stays silent, the server's pings closing a connection that stops answering them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from streamer.devtools.exchange import Faults, ReplayServer, serve_replay
from streamer.devtools.exchange.command import faults_from_args, main, parser
from tests.sources.venue_ticks import binance_file

BTC, XRP = "btcusdt@optionMarkPrice", "xrpusdt@optionMarkPrice"
NOT_SETTINGS = {"self", "path", "faults"}  # the file is positional; faults have their flags

# One non-default value per Faults field, and the flags that ask for it.
EVERY_FAULT: dict[str, tuple[list[str], Any]] = {
    "drop_every_s": (["--drop-every-s", "2.5"], 2.5),
    "stall_after_s": (["--stall-after-s", "3"], 3.0),
    "garbage_rate": (["--garbage-rate", "0.25"], 0.25),
    "reject_subscribe": (["--reject-subscribe"], True),
    "seed": (["--seed", "7"], 7),
    "rate_limit_subscribes": (["--rate-limit-subscribes", "2"], 2),
    "rate_limit_every": (["--rate-limit-every", "3"], 3),
    "refuse_channels": (["--refuse-channel", BTC, "--refuse-channel", XRP],
                        frozenset({BTC, XRP})),
    "stop_heartbeats_after_s": (["--stop-heartbeats-after-s", "0.5"], 0.5),
    "maintenance": (["--maintenance", "1", "4.5"], (1.0, 4.5)),
    "maintenance_index": (["--maintenance-index", "btc_usd"], "btc_usd"),
    "new_listing": (["--new-listing", "BTC-251226-95000-C", "0.3"], ("BTC-251226-95000-C", 0.3)),
    "expiry": (["--expiry", "BTC-251219-89000-P", "0.6"], ("BTC-251219-89000-P", 0.6)),
    "silence_streams": (["--silence-stream", XRP, "1", "2", "--silence-stream", BTC, "3", "1"],
                        ((XRP, 1.0, 2.0), (BTC, 3.0, 1.0))),
}


def _dests() -> set[str]:
    return {action.dest for action in parser()._actions}


def _settings(function: Any) -> set[str]:
    return set(inspect.signature(function).parameters) - NOT_SETTINGS


# -- parse level ---------------------------------------------------------------------------

def test_every_fault_of_the_server_has_a_flag() -> None:
    fields = {field.name for field in dataclasses.fields(Faults)}
    assert fields - _dests() == set()
    assert set(EVERY_FAULT) == fields  # and this file gives each a value below


def test_every_setting_of_the_server_has_a_flag_and_reaches_it() -> None:
    # The tick-file limits come from --config's tickfile section.
    assert _settings(ReplayServer) - _dests() == {"tickfile"}
    assert "config" in _dests()
    assert _settings(serve_replay) == _settings(ReplayServer)


def test_each_fault_flag_lands_in_its_field() -> None:
    argv = ["file.ndjson", *(token for flags, _ in EVERY_FAULT.values() for token in flags)]
    faults = faults_from_args(parser().parse_args(argv))
    assert faults == Faults(**{name: value for name, (_, value) in EVERY_FAULT.items()})
    default = Faults()
    assert [n for n in EVERY_FAULT if getattr(faults, n) == getattr(default, n)] == []


def test_no_fault_flag_means_no_fault_and_the_old_flag_names_still_work() -> None:
    assert faults_from_args(parser().parse_args(["f"])) == Faults()
    old = parser().parse_args(["f", "--drop-every", "2", "--stall-after", "3"])
    assert (faults_from_args(old).drop_every_s, faults_from_args(old).stall_after_s) == (2, 3)
    settings = parser().parse_args(["f", "--ping-interval-s", "0.5", "--pong-timeout-s", "2"])
    assert (settings.ping_interval_s, settings.pong_timeout_s) == (0.5, 2.0)


def test_seconds_that_are_not_a_number_are_a_usage_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["f", "--expiry", "BTC-251219-89000-P", "soon"])
    assert exit_.value.code == 2
    assert "--expiry: soon is not a number of seconds" in capsys.readouterr().err


def test_a_missing_tick_file_is_a_clear_error_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.ndjson.gz"
    assert main([str(missing), "--venue", "okx"]) == 2
    err = capsys.readouterr().err
    assert f"tick file not found: {missing}" in err
    assert "Traceback" not in err


# -- the command, end to end ---------------------------------------------------------------

@contextlib.asynccontextmanager
async def serving(path: Path, *flags: str) -> AsyncIterator[str]:
    """``streamer serve-replay`` as a subprocess; its ``ws://`` URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamer.cli", "serve-replay", str(path), "--venue", "binance",
        "--port", "0", "--loop", *flags, stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
        assert " as binance on ws://127.0.0.1:" in line, line
        yield line.split(" on ", 1)[1].split()[0]
    finally:
        process.terminate()
        await process.wait()


async def _subscribe(ws: ClientConnection, request_id: int) -> dict[str, Any]:
    await ws.send(json.dumps({"method": "SUBSCRIBE", "params": [BTC, XRP], "id": request_id}))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
    return reply


async def _streams_for(ws: ClientConnection, seconds: float) -> set[str]:
    seen: set[str] = set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                seen.add(json.loads(await ws.recv())["stream"])
    return seen


async def _until_closed(ws: ClientConnection, timeout_s: float = 3.0) -> None:
    """Read till the server closes the connection; TimeoutError if it does not."""
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout_s):
            while True:
                await ws.recv()


def _hold_pongs(ws: ClientConnection) -> None:
    """Answer no pings (websockets answers them inside its protocol, so drop the frames)."""
    send_frame = ws.protocol.send_frame

    def send(frame: Frame) -> None:
        if frame.opcode is not Opcode.PONG:
            send_frame(frame)

    ws.protocol.send_frame = send  # type: ignore[method-assign]


@pytest.mark.integration
async def test_the_command_rate_limits_refuses_a_stream_and_pings_as_its_flags_say(
        tmp_path: Path) -> None:
    file = binance_file(tmp_path / "binance.ndjson")
    async with serving(file.path, "--rate-limit-subscribes", "1", "--refuse-channel", XRP,
                       "--ping-interval-s", "0.2", "--pong-timeout-s", "0.5") as url:
        async with connect(f"{url}/market/stream") as first:
            assert await _subscribe(first, 1) == {
                "code": -1003, "msg": "Too many requests", "id": 1}
            await _until_closed(first)
        assert first.close_code == 1008
        async with connect(f"{url}/market/stream") as second:
            assert await _subscribe(second, 2) == {"result": None, "id": 2}  # XRP too
            assert await _streams_for(second, 1.2) == {BTC}  # a second of pings answered
        async with connect(f"{url}/market/stream") as third:
            _hold_pongs(third)
            await _subscribe(third, 3)
            await _until_closed(third)
        assert (third.close_code, third.close_reason) == (1008, "no pong for 0.5s")
