"""``streamer synth``: a synthetic venue recording from known smiles.

No full-chain raw recording is public, so the bundled sample is generated: BTC and
ETH option chains whose quotes come from known SVI smiles (see synth_market) and a
GBM spot path, with a market's flaws: bid/ask spreads, missing bids in the wings,
stale instruments, and updates at random times (synth_updates). ``--venue`` picks
whose messages carry it, in the tick-file format and that venue's units:

* ``deribit`` (default, the bundled sample): ``ticker`` notifications (synth_deribit);
* ``okx``: ``opt-summary``, ``tickers`` and ``index-tickers`` pushes (synth_okx);
* ``bybit``: option ``tickers.{symbol}`` snapshots (synth_bybit);
* ``binance``: one ``<underlying>usdt@optionMarkPrice`` array a second (synth_binance).

One seed is one market on every venue. The truth (parameters and spot path) is
written beside the file.

``--dynamics`` picks how smiles move with spot (synth_market.WORLDS: sticky
moneyness by default, sticky strike, local-vol-like SSR 2) and ``--spot-vol`` how
much spot moves, for testing the smile-dynamics estimates (docs/dynamics.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.devtools import synth_binance, synth_bybit, synth_deribit, synth_okx
from streamer.devtools.synth_market import DEFAULT_WORLD, SPECS, WORLDS
from streamer.devtools.synth_updates import UnderlyingMarket, simulate
from streamer.tickfile import TickFileWriter

START_TS_MS = 1_732_881_600_000  # 2024-11-29T12:00:00Z

Encoder = Callable[[UnderlyingMarket, np.random.Generator], list[tuple[int, bytes]]]
#: Each venue's encoder, and the stream of its own draws (push times, latencies): a
#: stream apart from the market's, so that one seed is one market on every venue.
ENCODERS: dict[str, tuple[Encoder, int]] = {
    "deribit": (synth_deribit.encode, 0),
    "okx": (synth_okx.encode, 1),
    "bybit": (synth_bybit.encode, 2),
    "binance": (synth_binance.encode, 3),
}
DEFAULT_VENUE = "deribit"


@dataclass(frozen=True)
class SynthSummary:
    """What was written."""

    lines: int
    instruments: int
    expiries: int
    bytes: int


def synthesise(out: Path, truth_out: Path, *, seed: int = 7, duration_s: float = 240.0,
               start_ts_ms: int = START_TS_MS, underlyings: Sequence[str] = ("BTC", "ETH"),
               dynamics: str = DEFAULT_WORLD, spot_vol: float | None = None,
               requote_s: float | None = None, venue: str = DEFAULT_VENUE) -> SynthSummary:
    """Write a tick file and its truth JSON; deterministic for a given seed.

    ``dynamics`` names a world of ``WORLDS``; ``spot_vol`` replaces every underlying's
    annual spot vol; ``requote_s`` requotes every instrument together every so many
    seconds (one consistent chain per requote) instead of each at random times;
    ``venue`` names whose messages carry the market (``ENCODERS``). The defaults write
    the bundled sample, byte for byte.
    """
    if dynamics not in WORLDS:
        raise ValueError(f"unknown dynamics {dynamics!r}; one of {sorted(WORLDS)}")
    if venue not in ENCODERS:
        raise ValueError(f"unknown venue {venue!r}; one of {sorted(ENCODERS)}")
    encode, stream = ENCODERS[venue]
    rng = np.random.default_rng(seed)
    venue_rng = np.random.default_rng([seed, stream])
    duration_ms = int(duration_s * 1000)
    lines: list[tuple[int, bytes]] = []
    truth: dict[str, Any] = {"seed": seed, "start_ts_ms": start_ts_ms,
                             "end_ts_ms": start_ts_ms + duration_ms, "underlyings": {}}
    if venue != DEFAULT_VENUE:
        truth["venue"] = venue  # absent from the bundled truth
    requote_ms = None if requote_s is None else max(1, int(requote_s * 1000))
    if dynamics != DEFAULT_WORLD or spot_vol is not None or requote_ms is not None:
        truth["dynamics"] = {"world": dynamics, "ssr": WORLDS[dynamics],
                             "requote_ms": requote_ms}  # absent from the bundled truth
    n_inst = n_exp = 0
    for name in underlyings:
        spec = SPECS[name]
        if spot_vol is not None:
            spec = dataclasses.replace(spec, annual_vol=spot_vol)
        market = simulate(spec, rng, start_ts_ms, duration_ms, WORLDS[dynamics], requote_ms)
        lines += encode(market, venue_rng)
        truth["underlyings"][name] = market.truth
        n_inst += market.chain.strike.size
        n_exp += len(spec.expiry_days)
    lines.sort(key=lambda row: row[0])  # stable: a venue's lines at one time keep their order
    with TickFileWriter(out) as writer:
        for received_ts_ns, raw in lines:
            writer.write(received_ts_ns, raw)
    truth_out.write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return SynthSummary(len(lines), n_inst, n_exp, out.stat().st_size)


DESCRIPTION = """\
Write a synthetic option-chain recording of a venue, from known smiles.

BTC and ETH option chains quoted from known SVI smiles on a random spot path, with
a real market's flaws (bid/ask spreads, missing bids in the wings, stale instruments,
updates at random times), in the tick-file format and the chosen venue's own
messages and units. One seed is one market on every venue. The truth (smile
parameters and spot path) is written beside the file, to check fits against."""


def main(argv: Sequence[str] | None = None) -> int:
    """``streamer synth [--venue V] [--out F] [--truth F] [--seed N] [--duration S]
    [--dynamics W] [--spot-vol V] [--requote S] [--underlying U ...]``."""
    parser = argparse.ArgumentParser(prog="streamer synth", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venue", choices=sorted(ENCODERS), default=DEFAULT_VENUE,
                        help="whose messages and units (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None,
                        help="tick file, gzipped if it ends in .gz (default: "
                             "VENUE_sample.ndjson.gz)")
    parser.add_argument("--truth", type=Path, default=None,
                        help="where the truth JSON goes (default: beside the file)")
    parser.add_argument("--seed", type=int, default=7,
                        help="one seed is one market (default: %(default)s, the sample's)")
    parser.add_argument("--duration", type=float, default=240.0, metavar="SECONDS",
                        help="recorded seconds (default: %(default)s)")
    parser.add_argument("--dynamics", choices=sorted(WORLDS), default=DEFAULT_WORLD,
                        help="how smiles move with spot (default: %(default)s)")
    parser.add_argument("--spot-vol", type=float, default=None, metavar="ANNUAL",
                        help="annual spot vol of every underlying (default: per underlying)")
    parser.add_argument("--requote", type=float, default=None, metavar="SECONDS",
                        help="requote every instrument together this often (default: each "
                             "at random times, about 4 s apart)")
    parser.add_argument("--underlying", action="append", choices=sorted(SPECS),
                        help="repeat for several (default: BTC and ETH)")
    args = parser.parse_args(argv)
    out = args.out or Path(f"{args.venue}_sample.ndjson.gz")
    truth = args.truth or out.with_name(
        out.name.removesuffix(".gz").removesuffix(".ndjson") + ".truth.json")
    summary = synthesise(out, truth, seed=args.seed, duration_s=args.duration,
                         underlyings=tuple(args.underlying or ("BTC", "ETH")),
                         dynamics=args.dynamics, spot_vol=args.spot_vol,
                         requote_s=args.requote, venue=args.venue)
    print(f"wrote {out}: {summary.lines} lines, {summary.instruments} instruments, "
          f"{summary.expiries} expiries, {summary.bytes / 1e6:.1f} MB; truth in {truth}")
    return 0
