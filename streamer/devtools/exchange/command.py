"""``streamer serve-replay``: the replay server on the command line, every fault a flag.

Each field of :class:`Faults` and each setting of :class:`ReplayServer` has a flag
(``tests/devtools/test_serve_replay_cli.py`` fails for one without). Flags taking
seconds say so in their name (``--ping-interval-s``); those taking several values
name the units in their metavar (``--maintenance START_S LENGTH_S``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from streamer.config import TICKFILE_DEFAULTS, TickFileConfig, load_config
from streamer.devtools.exchange.faults import Faults
from streamer.devtools.exchange.server import NO_FAULTS, VENUES, ReplayServer
from streamer.errors import ConfigError, StreamerError
from streamer.logs import setup_logging

log = logging.getLogger("streamer")

# What argparse collects -> the Faults field's type (lists are what ``append`` builds).
_CONVERT: dict[str, Callable[[Any], Any]] = {
    "refuse_channels": frozenset, "maintenance": tuple, "silence_streams": tuple}


class _Named(argparse.Action):
    """``NAME SECONDS...`` -> ``(NAME, float, ...)``; ``nargs`` says how many seconds."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        name, *seconds = list(values or ())
        try:
            item = (name, *map(float, seconds))
        except ValueError:
            parser.error(f"{option_string}: {' '.join(seconds)} is not a number of seconds")
        setattr(namespace, self.dest, self._stored(namespace, item))

    def _stored(self, namespace: argparse.Namespace, item: tuple[Any, ...]) -> Any:
        return item


class _NamedEach(_Named):
    """``_Named``, repeatable: every use is kept, in order."""

    def _stored(self, namespace: argparse.Namespace, item: tuple[Any, ...]) -> Any:
        return [*(getattr(namespace, self.dest) or []), item]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's settings, then its faults (one flag per ``Faults`` field)."""
    parser.add_argument("file", type=Path, help="tick file (.ndjson or .ndjson.gz)")
    parser.add_argument("--venue", default="deribit", choices=sorted(VENUES),
                        help="the protocol to speak; the file must hold that venue's messages")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0: any free port (printed)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="pace, a multiple of recorded time (default: %(default)s)")
    parser.add_argument("--loop", action="store_true", help="start again at the end")
    parser.add_argument("--config", type=Path,
                        help="config.yaml whose log and tickfile settings apply (bad lines "
                             "skipped up to tickfile.max_bad_share; default: built-in, with "
                             "STREAMER_* overrides)")
    parser.add_argument("--ping-interval-s", type=float, metavar="SECONDS",
                        help="websocket ping to each client this often (default: the venue's "
                             "own: Binance every 300 s, the others none; 0: none)")
    parser.add_argument("--pong-timeout-s", type=float, metavar="SECONDS",
                        help="close a connection whose pong is this late (default: the "
                             "venue's own: Binance 900 s)")
    _add_faults(parser.add_argument_group(
        "faults", "what to get wrong, each in the venue's own wire format; times count from "
                  "the first subscribe unless said otherwise"))


def _add_faults(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add("--drop-every-s", "--drop-every", dest="drop_every_s", type=float, metavar="SECONDS",
        help="close every connection (1012) this often, counted from the server's start")
    add("--stall-after-s", "--stall-after", dest="stall_after_s", type=float, metavar="SECONDS",
        help="this long after a connection opens, go silent on it: no data, pongs, "
             "heartbeats or replies")
    add("--garbage-rate", type=float, default=0.0, metavar="P",
        help="share of data frames sent truncated (not JSON), 0 to 1")
    add("--seed", type=int, default=0, help="seed of the --garbage-rate draws")
    add("--reject-subscribe", action="store_true", help="refuse every subscribe request")
    add("--rate-limit-subscribes", type=int, default=0, metavar="N",
        help="answer the first N subscribes with the venue's rate-limit error, then close")
    add("--rate-limit-every", type=int, default=0, metavar="N",
        help="also answer every Nth subscribe so (0: none)")
    add("--refuse-channel", dest="refuse_channels", action="append", metavar="KEY",
        help="never confirm this subscription key, e.g. xrpusdt@optionMarkPrice "
             "(repeatable; Binance acknowledges it all the same)")
    add("--stop-heartbeats-after-s", type=float, metavar="SECONDS",
        help="this long after a connection opens, stop its heartbeats and pongs; data goes on")
    add("--maintenance", type=float, nargs=2, metavar=("START_S", "LENGTH_S"),
        help="lock the platform for LENGTH_S from START_S: no data (Deribit also says so "
             "in platform_state)")
    add("--maintenance-index", metavar="INDEX",
        help="with --maintenance, lock this price index (Deribit, e.g. btc_usd), not the "
             "platform")
    add("--new-listing", action=_Named, nargs=2, metavar=("INSTRUMENT", "AT_S"),
        help="list INSTRUMENT only from AT_S on")
    add("--expiry", action=_Named, nargs=2, metavar=("INSTRUMENT", "AT_S"),
        help="delist INSTRUMENT at AT_S: silent from then")
    add("--silence-stream", dest="silence_streams", action=_NamedEach, nargs=3,
        metavar=("KEY", "START_S", "LENGTH_S"),
        help="send nothing on KEY for LENGTH_S from START_S, still subscribed, the other "
             "keys flowing (repeatable)")


def faults_from_args(args: argparse.Namespace) -> Faults:
    """The ``Faults`` the flags ask for (a flag left out: the field's default)."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Faults):
        value = getattr(args, field.name)
        if value is not None:
            values[field.name] = _CONVERT.get(field.name, lambda v: v)(value)
    return Faults(**values)


async def serve_replay(path: str | Path, *, venue: str = "deribit", host: str = "127.0.0.1",
                       port: int = 8765, speed: float = 1.0, loop: bool = False,
                       faults: Faults = NO_FAULTS, ping_interval_s: float | None = None,
                       pong_timeout_s: float | None = None,
                       tickfile: TickFileConfig = TICKFILE_DEFAULTS) -> None:
    """Serve until cancelled (or the end of the file, without ``loop``)."""
    server = ReplayServer(path, venue=venue, host=host, port=port, speed=speed, loop=loop,
                          faults=faults, ping_interval_s=ping_interval_s,
                          pong_timeout_s=pong_timeout_s, tickfile=tickfile)
    await server.start()
    rest = f", REST on {server.http_url}" if venue == "bybit" else ""
    print(f"serving {path} as {venue} on {server.url}{rest} (speed ×{speed:g})", flush=True)
    try:
        await (asyncio.Future() if loop else server.finished.wait())
    finally:
        await server.stop()


def parser() -> argparse.ArgumentParser:
    """The ``streamer serve-replay`` command line."""
    parsed = argparse.ArgumentParser(prog="streamer serve-replay",
                                     description="Serve a tick file over websocket on "
                                                 "loopback, in a venue's own protocol.")
    add_arguments(parsed)
    return parsed


def main(argv: Sequence[str]) -> int:
    """``streamer serve-replay FILE [options]``; exit 0 done, 1 failed, 2 bad config."""
    args = parser().parse_args(argv)
    try:
        config = load_config(args.config)  # the log and tickfile settings
    except ConfigError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log.level, config.log.format)
    if not args.file.is_file():
        print(f"streamer: tick file not found: {args.file}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve_replay(
            args.file, venue=args.venue, host=args.host, port=args.port, speed=args.speed,
            loop=args.loop, faults=faults_from_args(args), ping_interval_s=args.ping_interval_s,
            pong_timeout_s=args.pong_timeout_s, tickfile=config.tickfile))
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 2
    except StreamerError as exc:
        log.error("%s", exc)
        return 1
    return 0
