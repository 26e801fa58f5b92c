"""Command line: ``streamer run | ingest | calibrate | replay | serve-replay | record | synth
| plot | backtest | view | schema``.

Exit codes: 0 done, 1 runtime failure, 2 bad configuration or arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from streamer import __version__
from streamer.config import AppConfig, VenueConfig, load_config, venue_config
from streamer.errors import ConfigError, StreamerError
from streamer.logs import setup_logging

log = logging.getLogger("streamer")


DESCRIPTION = """\
Implied-volatility surfaces of crypto options, streamed: option quotes from Deribit, OKX,
Bybit or Binance (live, or a recording replayed on loopback), a surface fitted every batch,
published to Kafka or printed as JSON lines.

exit codes: 0 done, 1 runtime failure, 2 bad configuration or arguments."""


def _command(sub: Any, name: str, help: str, description: str | None = None
             ) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` starts by saying what it does (its one-line help
    as a sentence, unless it has a longer description)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=description or f"{help[0].upper()}{help[1:]}.")
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamer", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"streamer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = _command(sub, "run", help="ingest, calibrate and publish (one process)")
    _add_service_options(run, venues=True, calibrates=True)
    ingest = _command(
        sub, "ingest", help="split mode, first half: venues' quotes to the Kafka ticks topic",
        description="Split mode, first half: read the configured venues and send every "
                    "quote to the Kafka ticks topic (kafka.ticks_topic), keyed by "
                    "venue:underlying, for `streamer calibrate` to fit.")
    _add_service_options(ingest, venues=True, calibrates=False)
    calibrate = _command(
        sub, "calibrate", help="split mode, second half: quotes from the ticks topic to surfaces "
                          "(run as many as you like: they share the work)",
        description="Split mode, second half: a member of the consumer group "
                    "kafka.group_id over the ticks topic; calibrates the underlyings it is "
                    "assigned and publishes their surfaces. Run as many as you like: "
                    "Kafka shares the underlyings among them and moves them when one stops.")
    _add_service_options(calibrate, venues=False, calibrates=True)

    replay = _command(sub, "replay", help="replay a tick file as fast as possible")
    replay.add_argument("file", type=Path, help="tick file (.ndjson or .ndjson.gz), or "
                                                "`bundled` for the shipped sample")
    _add_config(replay)
    replay.add_argument("--sink", choices=["kafka", "stdout"], default="stdout",
                        help="where the surfaces go (default: stdout, one JSON line each)")
    replay.add_argument("--model", choices=["svi", "ssvi", "sabr", "heston"],
                        help="the model of every underlying (default: calibration.model)")
    replay.add_argument("--venue", choices=["deribit", "okx", "bybit", "binance"],
                        help="whose recording it is (default: the config's first venue, "
                             "deribit)")
    replay.add_argument("--workers", type=_workers, metavar="N",
                        help="processes calibrating the file's underlyings, or auto (one "
                             "per core; default: replay.workers): the same bytes either way")
    _add_quiet(replay)

    _command(sub, "serve-replay", help="serve a tick file over websocket, with faults "
                                        "(see serve-replay --help)")

    record = _command(sub, "record", help="record a venue's raw messages to a tick file")
    _add_config(record)
    record.add_argument("--venue", default="deribit",
                        choices=["deribit", "okx", "bybit", "binance"],
                        help="whose messages (default: deribit)")
    record.add_argument("--underlying", action="append", required=True,
                        help="e.g. BTC (repeatable)")
    record.add_argument("--url", help="default: the venue's public endpoint")
    record.add_argument("--out", type=Path, required=True,
                        help="tick file, gzipped if it ends in .gz")
    record.add_argument("--duration", type=_positive_seconds, metavar="SECONDS",
                        help="stop after this long (default: until Ctrl-C)")
    record.add_argument("--rotate-mb", type=float, metavar="MB",
                        help="start a new file past this size (default 512)")
    record.add_argument("--rotate-s", type=float, metavar="SECONDS",
                        help="start a new file this often (default 3600)")

    _command(sub, "synth", help="generate a synthetic Deribit, OKX, Bybit or Binance "
                                 "recording (see synth --help)")
    _command(sub, "plot", help="smiles, term structure, tenor views, variance index and "
                   "dynamics as PNGs (see plot --help)")
    _command(sub, "backtest", help="which delta rule hedges a recording best, by tenor and "
                                    "moneyness (see backtest --help)")

    view = _command(sub, "view", help="the live web page of a deployment, from its surface "
                                       "topic alone",
                          description="Serve the live page (/ui, /ui/events, /surface/KEY) "
                                      "of any running deployment, from its surface topic "
                                      "alone: the latest surface of every key first, then "
                                      "each new one.")
    _add_config(view)
    view.add_argument("--bootstrap", required=True, metavar="HOST:PORT",
                      help="the Kafka brokers holding the surface topic")
    view.add_argument("--keys", action="append", metavar="VENUE:UNDERLYING",
                      help="keys to show, e.g. deribit:BTC (repeat or comma-separate; "
                           "default: every key)")
    view.add_argument("--host", help="override metrics.host (where the page listens)")
    view.add_argument("--port", type=int, help="override metrics.port (0 = any free)")
    view.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")

    schema = _command(sub, "schema", help="print the JSON Schema of a published message "
                                           "or of config.yaml")
    schema.add_argument("what", choices=["surface", "config"],
                        help="surface: a vol.surface.v1 message; config: config.yaml")
    return parser


def _add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress on stderr (logs still go there)")


def _add_service_options(parser: argparse.ArgumentParser, *, venues: bool,
                         calibrates: bool) -> None:
    _add_config(parser)
    parser.add_argument("--duration", type=_positive_seconds, metavar="SECONDS",
                        help="stop after this long")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="port of /metrics, /healthz, /readyz (metrics.port; 0 = any free)")
    _add_quiet(parser)
    if calibrates:
        parser.add_argument("--sink", choices=["kafka", "stdout"],
                            help="where the surfaces go (default: the config's `sink`, kafka)")
        parser.add_argument("--model", choices=["svi", "ssvi", "sabr", "heston"],
                            help="the model of every underlying (default: calibration.model)")
    if venues:
        parser.add_argument("--loop", action="store_true",
                            help="replayed venues: start the recording again at its end")
        parser.add_argument("--speed", type=_positive_speed,
                            help="replayed venues: pace, a multiple of recorded time (default 5)")
        parser.add_argument("--venue-url", action="append", default=[], metavar="VENUE=URL",
                            help="point a venue at a URL, e.g. deribit=ws://127.0.0.1:8765")


def _positive_seconds(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 or auto, got {text!r}")
    return int(text)


def _positive_speed(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (1 = recorded pace), got {text!r}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="config.yaml (default: built-in defaults)")


def _with_overrides(config: AppConfig, args: argparse.Namespace) -> AppConfig:
    """Apply command-line overrides on top of file and environment."""
    replace = msgspec.structs.replace
    if getattr(args, "sink", None):
        config = replace(config, sink=args.sink)
    if getattr(args, "model", None):
        config = replace(config, calibration=replace(config.calibration, model=args.model))
    if getattr(args, "loop", False):
        config = replace(config, replay=replace(config.replay, loop=True))
    if getattr(args, "speed", None) is not None:
        config = replace(config, replay=replace(config.replay, speed=args.speed))
    if getattr(args, "metrics_port", None) is not None:
        config = replace(config, metrics=replace(config.metrics, port=args.metrics_port))
    if getattr(args, "workers", None) is not None:
        config = replace(config, replay=replace(config.replay, workers=args.workers))
    if getattr(args, "venue", None) and args.command == "replay":
        venue = next((v for v in config.venues if v.name == args.venue), None)
        config = replace(config, venues=(venue or venue_config(args.venue),))
    urls = dict(_split_venue_url(v) for v in getattr(args, "venue_url", []))
    if urls:
        venues: list[VenueConfig] = [replace(v, url=urls.pop(v.name, v.url))
                                     for v in config.venues]
        if urls:
            raise ConfigError(f"--venue-url names venues not in the config: {sorted(urls)}")
        config = replace(config, venues=tuple(venues))
    return config


def _split_venue_url(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not url:
        raise ConfigError(f"--venue-url wants VENUE=URL, got {text!r}")
    return name, url


async def _cmd_service(config: AppConfig, args: argparse.Namespace) -> int:
    from streamer.app.service import Service

    return await Service(config, mode=args.command, duration_s=args.duration,
                         quiet=args.quiet).run()


async def _cmd_view(config: AppConfig, args: argparse.Namespace) -> int:
    from streamer.ui.view import view

    replace = msgspec.structs.replace
    metrics = config.metrics
    if args.host:
        metrics = replace(metrics, host=args.host)
    if args.port is not None:
        metrics = replace(metrics, port=args.port)
    keys = [k for text in args.keys or [] for k in text.split(",") if k]
    bad = [k for k in keys if ":" not in k]
    if bad:
        raise ConfigError(f"--keys wants VENUE:UNDERLYING, got {bad}")
    return await view(replace(config, metrics=metrics), args.bootstrap, keys or None,
                      args.duration)


async def _cmd_replay(config: AppConfig, args: argparse.Namespace) -> int:
    from collections import Counter

    from streamer.app.file_replay import ReplayStats, replay_file
    from streamer.app.summary import closing_line, reasons_text
    from streamer.devtools.embedded_broker import EmbeddedBroker
    from streamer.devtools.exchanges import resolve_tickfile
    from streamer.errors import BrokerError
    from streamer.sinks.kafka import KafkaSink
    from streamer.sinks.stdout import StdoutSink
    from streamer.telemetry.progress import ProgressBar

    path = resolve_tickfile(str(args.file))
    progress = None if args.quiet else ProgressBar(f"replay {path.name}")
    stats, rejected = ReplayStats(), Counter[str]()
    problem: str | None = None

    def count_reject(reason: str) -> None:
        rejected[reason] += 1

    if config.sink == "stdout":
        computed = await replay_file(path, config, StdoutSink(), on_reject=count_reject,
                                     progress=progress, stats=stats)
        published, where = f"{computed} surfaces to stdout", "stdout"
        delivered = computed
    else:
        broker = EmbeddedBroker() if config.kafka.embedded else None
        bootstrap = await asyncio.to_thread(broker.start) if broker else \
            config.kafka.bootstrap_servers
        sink = KafkaSink(config.kafka, bootstrap_servers=bootstrap, ordered=True)
        computed = -1
        try:
            computed = await replay_file(path, config, sink, on_reject=count_reject,
                                         progress=progress, stats=stats)
        except BrokerError as exc:
            problem = str(exc)
        finally:
            if broker:
                await asyncio.to_thread(broker.stop)
        delivered, where = sink.delivered, f"kafka {bootstrap} topic {config.kafka.surface_topic}"
        published = f"{delivered} surfaces (acknowledged) to {where}"
        if sink.pending or sink.lost:
            published += f", {sink.pending + sink.lost} unsent"
        if problem is None and sink.failure is not None:
            problem = str(sink.failure)
        if problem is None and delivered < computed:
            problem = f"{computed - delivered} of {computed} surfaces not acknowledged"
    rejected.update(stats.rejected)
    refused = reasons_text(stats.fits_refused)
    read = f"{stats.lines} lines of {path} ({stats.quotes} quotes"
    read += f"; fits refused: {refused})" if refused else ")"
    if problem is None and delivered == 0:
        problem = (f"no surface to publish: every fit was refused ({refused}; "
                   f"calibration.max_rmse_vol is {config.calibration.max_rmse_vol})" if refused
                   else f"no surface to publish (is {path} a {config.venues[0].name} recording?)")
    print(closing_line("replay", read=read,
                       rejected=rejected, published=published, problem=problem),
          file=sys.stderr, flush=True)
    return 1 if problem else 0


async def _cmd_record(config: AppConfig, args: argparse.Namespace) -> int:
    from streamer.app.record import record
    from streamer.sinks.recorder import DEFAULT_MAX_AGE_S, DEFAULT_MAX_BYTES

    max_bytes = DEFAULT_MAX_BYTES if args.rotate_mb is None else int(args.rotate_mb * 2**20)
    max_age_s = DEFAULT_MAX_AGE_S if args.rotate_s is None else args.rotate_s
    return await record(args.url, args.underlying, args.out, venue=args.venue,
                        duration_s=args.duration, max_bytes=max_bytes, max_age_s=max_age_s)


def _cmd_schema(args: argparse.Namespace) -> int:
    if args.what == "surface":
        from streamer.sinks.codec import surface_json_schema

        schema = surface_json_schema()
    else:
        schema = msgspec.json.schema(AppConfig)
    # Strict JSON (no NaN/Infinity): what jq and every other JSON parser accept.
    print(json.dumps(schema, indent=2, sort_keys=True, allow_nan=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamer`` command."""
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        # The reader went away (`streamer replay F | head`): not an error of ours.
        sys.stderr.close()
        return 0


def _main(argv: list[str]) -> int:
    if argv[:1] == ["plot"]:
        from streamer.devtools.plot import main as plot_main

        return plot_main(argv[1:])
    if argv[:1] == ["backtest"]:
        from streamer.app.backtest import main as backtest_main

        return backtest_main(argv[1:])
    if argv[:1] == ["synth"]:
        from streamer.devtools.synth import main as synth_main

        return synth_main(argv[1:])
    if argv[:1] == ["serve-replay"]:
        from streamer.devtools.exchange.command import main as serve_replay_main

        return serve_replay_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "schema":
        return _cmd_schema(args)
    try:
        config = _with_overrides(load_config(getattr(args, "config", None)), args)
    except ConfigError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log.level, config.log.format)
    try:
        if args.command in ("run", "ingest", "calibrate"):
            return asyncio.run(_cmd_service(config, args))
        if args.command == "replay":
            return asyncio.run(_cmd_replay(config, args))
        if args.command == "view":
            return asyncio.run(_cmd_view(config, args))
        return asyncio.run(_cmd_record(config, args))
    except ConfigError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except StreamerError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
