"""``streamer synth``: a synthetic Deribit ticker recording from known smiles.

No full-chain raw recording is public, so the bundled sample is generated: BTC and
ETH option chains whose quotes come from known SVI smiles (see synth_market) and a
GBM spot path, written as Deribit ``ticker`` notifications in the tick-file format,
with Deribit's units (premiums in coin rounded to the tick, IVs in percent,
``underlying_price`` as the forward, 0.0 for a missing side) and a market's flaws:
bid/ask spreads, missing bids in the wings, stale instruments, and updates at
random times. The truth (parameters and spot path) is written beside the file.

``--dynamics`` picks how smiles move with spot (synth_market.WORLDS: sticky
moneyness by default, sticky strike, local-vol-like SSR 2) and ``--spot-vol`` how
much spot moves, for testing the smile-dynamics estimates (docs/dynamics.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.core import black76
from streamer.core.implied_vol import implied_vol
from streamer.devtools.synth_market import (
    DEFAULT_WORLD,
    SPECS,
    WORLDS,
    YEAR_MS,
    UnderlyingSpec,
    expiries,
    iso,
    spot_path,
    strikes,
)
from streamer.tickfile import TickFileWriter

START_TS_MS = 1_732_881_600_000  # 2024-11-29T12:00:00Z
SPOT_STEP_MS = 100
MEAN_UPDATE_S = 4.0
STALE_FRACTION = 0.03


@dataclass(frozen=True)
class SynthSummary:
    """What was written."""

    lines: int
    instruments: int
    expiries: int
    bytes: int


@dataclass
class _Chain:
    """Every instrument of one underlying as flat arrays."""

    names: list[str]
    index: list[str]
    expiry_ts_ms: npt.NDArray[np.int64]
    strike: npt.NDArray[np.float64]
    is_call: npt.NDArray[np.bool_]
    svi: npt.NDArray[np.float64]  # (n, 5): a b rho m sigma


def _chain(spec: UnderlyingSpec, start_ts_ms: int) -> tuple[_Chain, list[dict[str, Any]]]:
    names, index, exp_ts, ks, calls, params, truth = [], [], [], [], [], [], []
    monthly = {e.label for e in expiries(spec, start_ts_ms)[5:]}
    for i, e in enumerate(expiries(spec, start_ts_ms)):
        t = (e.expiry_ts_ms - start_ts_ms) / YEAR_MS
        truth.append({"expiry": iso(e.expiry_ts_ms), "expiry_ts_ms": e.expiry_ts_ms,
                      "label": e.label, "svi": e.svi, "basis": spec.basis})
        for k in strikes(spec, i, t):
            for cp in ("C", "P"):
                names.append(f"{spec.name}-{e.label}-{int(k)}-{cp}")
                index.append(f"{spec.name}-{e.label}" if e.label in monthly
                             else f"SYN.{spec.name}-{e.label}")
                exp_ts.append(e.expiry_ts_ms)
                ks.append(k)
                calls.append(cp == "C")
                params.append([e.svi[p] for p in ("a", "b", "rho", "m", "sigma")])
    chain = _Chain(names, index, np.array(exp_ts, np.int64), np.array(ks, np.float64),
                   np.array(calls, bool), np.array(params, np.float64))
    return chain, truth


def _event_times(rng: np.random.Generator, n: int, duration_ms: int,
                 requote_ms: int | None = None) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(instrument index, exchange ms offset) of every ticker update, unsorted.

    With ``requote_ms`` every instrument is requoted at once, every ``requote_ms``.
    """
    if requote_ms is not None:
        at = np.arange(0, duration_ms, requote_ms, dtype=np.int64)
        return np.tile(np.arange(n, dtype=np.int64), at.size), np.repeat(at, n)
    stale = rng.random(n) < STALE_FRACTION
    inst, times = [], []
    for i in range(n):
        t = rng.uniform(0, 2000)
        while t < duration_ms:
            inst.append(i)
            times.append(int(t))
            if stale[i]:
                break
            t += rng.exponential(MEAN_UPDATE_S * 1000)
    return np.array(inst, np.int64), np.array(times, np.int64)


def _round_coin(price: npt.NDArray[np.float64], up: bool) -> npt.NDArray[np.float64]:
    """Deribit's tick: 0.0001 coin below 0.005, 0.0005 above."""
    tick = np.where(price < 0.005, 0.0001, 0.0005)
    steps = np.ceil(price / tick - 1e-9) if up else np.floor(price / tick + 1e-9)
    return np.round(steps * tick, 4)


def _quotes(chain: _Chain, inst: npt.NDArray[np.int64], ts_ms: npt.NDArray[np.int64],
            spot: npt.NDArray[np.float64], basis: float, rng: np.random.Generator,
            shift: npt.NDArray[np.float64] | None = None) -> dict[str, npt.NDArray[Any]]:
    """Every field that varies per update, vectorised over all events.

    ``shift`` (per event) moves where each smile is read: ``k + shift``.
    """
    t = (chain.expiry_ts_ms[inst] - ts_ms) / YEAR_MS
    fwd = np.round(spot * np.exp(basis * t), 2)
    k_abs, call = chain.strike[inst], chain.is_call[inst]
    a, b, rho, m, sig = chain.svi[inst].T
    x = np.log(k_abs / fwd) - m
    if shift is not None:  # only in the non-default worlds: the default stays bit-identical
        x = x + shift
    vol = np.sqrt((a + b * (rho * x + np.sqrt(x * x + sig * sig))) / t)
    d = np.abs(np.log(k_abs / fwd)) / (vol * np.sqrt(t))
    half = 0.004 + 0.006 * np.minimum(d, 3.0) + 0.01 * (t < 3 / 365) + rng.uniform(0, 0.003, t.size)
    mark = black76.price(fwd, k_abs, t, vol, call) / fwd
    bid = _round_coin(black76.price(fwd, k_abs, t, np.maximum(vol - half, 0.01), call) / fwd, False)
    ask = _round_coin(black76.price(fwd, k_abs, t, vol + half, call) / fwd, True)
    ask = np.maximum(ask, np.maximum(bid, 0.0001) + np.where(bid < 0.005, 0.0001, 0.0005))
    bid = np.where(rng.random(t.size) < 0.02, 0.0, bid)  # occasional pulled bid
    bid_iv = np.nan_to_num(implied_vol(bid * fwd, fwd, k_abs, t, call) * 100, nan=0.0)
    ask_iv = np.nan_to_num(implied_vol(ask * fwd, fwd, k_abs, t, call) * 100, nan=0.0)
    return {"t": t, "fwd": fwd, "vol": vol, "mark": mark, "bid": bid, "ask": ask,
            "bid_iv": np.round(bid_iv, 2), "ask_iv": np.round(ask_iv, 2),
            "delta": black76.delta(fwd, k_abs, t, vol, call),
            "gamma": black76.gamma(fwd, k_abs, t, vol) * fwd,
            "vega": black76.vega(fwd, k_abs, t, vol) / 100.0,
            "bid_amt": np.round(rng.uniform(1, 50, t.size)) / 10,
            "ask_amt": np.round(rng.uniform(1, 50, t.size)) / 10}


def _message(name: str, index_name: str, ts_ms: int, spot: float, q: dict[str, Any], j: int
             ) -> bytes:
    mark = float(q["mark"][j])
    data = {
        "underlying_price": float(q["fwd"][j]), "underlying_index": index_name,
        "timestamp": ts_ms,
        "stats": {"volume": 12.3, "price_change": -1.5, "low": 0.0105, "high": 0.0125},
        "state": "open", "settlement_price": round(mark, 8), "open_interest": 85.2,
        "min_price": 0.0001, "max_price": round(mark * 2 + 0.01, 4),
        "mark_price": round(mark, 8), "mark_iv": round(float(q["vol"][j]) * 100, 2),
        "last_price": None, "interest_rate": 0.0, "instrument_name": name,
        "index_price": round(spot, 2),
        "greeks": {"vega": round(float(q["vega"][j]), 5), "theta": 0.0, "rho": 0.0,
                   "gamma": round(float(q["gamma"][j]), 5),
                   "delta": round(float(q["delta"][j]), 5)},
        "estimated_delivery_price": round(spot, 2),
        "bid_iv": float(q["bid_iv"][j]), "best_bid_price": float(q["bid"][j]),
        "best_bid_amount": float(q["bid_amt"][j]) if q["bid"][j] > 0 else 0.0,
        "best_ask_price": float(q["ask"][j]), "best_ask_amount": float(q["ask_amt"][j]),
        "ask_iv": float(q["ask_iv"][j])}
    msg = {"jsonrpc": "2.0", "method": "subscription",
           "params": {"channel": f"ticker.{name}.100ms", "data": data}}
    return json.dumps(msg, separators=(",", ":")).encode()


def _underlying_lines(spec: UnderlyingSpec, rng: np.random.Generator, start_ts_ms: int,
                      duration_ms: int, ssr: float = 0.0, requote_ms: int | None = None
                      ) -> tuple[list[tuple[int, bytes]], dict[str, Any], int]:
    chain, truth = _chain(spec, start_ts_ms)
    path = spot_path(spec, rng, duration_ms // SPOT_STEP_MS + 1, SPOT_STEP_MS / 1000)
    inst, offset = _event_times(rng, len(chain.names), duration_ms, requote_ms)
    spot = path[offset // SPOT_STEP_MS]
    ts = start_ts_ms + offset
    shift = ssr * np.log(spot / spec.spot) if ssr != 0.0 else None
    q = _quotes(chain, inst, ts, spot, spec.basis, rng, shift)
    latency_ns = rng.integers(1_000_000, 20_000_000, inst.size)
    lines = [(int(ts[j]) * 1_000_000 + int(latency_ns[j]),
              _message(chain.names[inst[j]], chain.index[inst[j]], int(ts[j]), float(spot[j]),
                       q, j)) for j in range(inst.size)]
    every_s = path[:: 1000 // SPOT_STEP_MS]
    spot_truth = [[start_ts_ms + i * 1000, round(float(s), 2)] for i, s in enumerate(every_s)]
    return lines, {"expiries": truth, "spot_path": spot_truth, "spec": spec.__dict__}, len(
        chain.names)


def synthesise(out: Path, truth_out: Path, *, seed: int = 7, duration_s: float = 240.0,
               start_ts_ms: int = START_TS_MS, underlyings: Sequence[str] = ("BTC", "ETH"),
               dynamics: str = DEFAULT_WORLD, spot_vol: float | None = None,
               requote_s: float | None = None) -> SynthSummary:
    """Write a tick file and its truth JSON; deterministic for a given seed.

    ``dynamics`` names a world of ``WORLDS``; ``spot_vol`` replaces every underlying's
    annual spot vol; ``requote_s`` requotes every instrument together every so many
    seconds (one consistent chain per requote) instead of each at random times. The
    defaults write the bundled sample, byte for byte.
    """
    if dynamics not in WORLDS:
        raise ValueError(f"unknown dynamics {dynamics!r}; one of {sorted(WORLDS)}")
    rng = np.random.default_rng(seed)
    duration_ms = int(duration_s * 1000)
    lines: list[tuple[int, bytes]] = []
    truth: dict[str, Any] = {"seed": seed, "start_ts_ms": start_ts_ms,
                             "end_ts_ms": start_ts_ms + duration_ms, "underlyings": {}}
    requote_ms = None if requote_s is None else max(1, int(requote_s * 1000))
    if dynamics != DEFAULT_WORLD or spot_vol is not None or requote_ms is not None:
        truth["dynamics"] = {"world": dynamics, "ssr": WORLDS[dynamics],
                             "requote_ms": requote_ms}  # absent from the bundled truth
    n_inst = n_exp = 0
    for name in underlyings:
        spec = SPECS[name]
        if spot_vol is not None:
            spec = dataclasses.replace(spec, annual_vol=spot_vol)
        rows, truth["underlyings"][name], count = _underlying_lines(
            spec, rng, start_ts_ms, duration_ms, WORLDS[dynamics], requote_ms)
        lines += rows
        n_inst += count
        n_exp += len(spec.expiry_days)
    lines.sort(key=lambda row: row[0])
    with TickFileWriter(out) as writer:
        for received_ts_ns, raw in lines:
            writer.write(received_ts_ns, raw)
    truth_out.write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return SynthSummary(len(lines), n_inst, n_exp, out.stat().st_size)


def main(argv: Sequence[str] | None = None) -> int:
    """``streamer synth [--out F] [--truth F] [--seed N] [--duration S] [--dynamics W]
    [--spot-vol V] [--requote S] [--underlying U ...]``."""
    parser = argparse.ArgumentParser(prog="streamer synth", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("deribit_sample.ndjson.gz"))
    parser.add_argument("--truth", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--duration", type=float, default=240.0, metavar="SECONDS")
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
    truth = args.truth or args.out.with_name(
        args.out.name.removesuffix(".gz").removesuffix(".ndjson") + ".truth.json")
    summary = synthesise(args.out, truth, seed=args.seed, duration_s=args.duration,
                         underlyings=tuple(args.underlying or ("BTC", "ETH")),
                         dynamics=args.dynamics, spot_vol=args.spot_vol,
                         requote_s=args.requote)
    print(f"wrote {args.out}: {summary.lines} lines, {summary.instruments} instruments, "
          f"{summary.expiries} expiries, {summary.bytes / 1e6:.1f} MB; truth in {truth}")
    return 0
