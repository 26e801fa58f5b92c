"""One underlying's synthetic chain and every requote of it, the same on every venue.

The chain lists the instruments of synth_market's expiries and strikes with their true
smiles. The updates say when each instrument is requoted (at random times about
``MEAN_UPDATE_S`` apart, a few going stale after their first quote; or all together
every ``requote_ms``), the spot, forward and true vol then, the half bid/ask spread in
vol, whether the bid was pulled, the sizes and the network latency. The venue encoders
(``synth_deribit``, ``synth_okx``, ...) only put these in each venue's units and
messages. Every random draw of the market happens here, in the order the first
(Deribit-only) synthesiser drew them: the bundled sample keeps its bytes, and one seed
gives the same market on every venue.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.devtools.synth_market import (
    YEAR_MS,
    UnderlyingSpec,
    expiries,
    spot_path,
    strikes,
)
from streamer.types import expiry_iso

SPOT_STEP_MS = 100
MEAN_UPDATE_S = 4.0
STALE_FRACTION = 0.03
FUTURE_FROM_EXPIRY = 5  # expiries from the sixth on have a listed future (Deribit's index)

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Chain:
    """Every instrument of one underlying as flat arrays (per expiry: strikes, call then put)."""

    underlying: str
    label: list[str]  # Deribit's date code of the expiry, e.g. ``6DEC24``
    has_future: Bools
    expiry_ts_ms: Ints
    strike: Floats
    is_call: Bools
    svi: Floats  # (n, 5): a b rho m sigma


@dataclass(frozen=True)
class Updates:
    """Every requote of a chain, as arrays over the updates (in no particular order)."""

    inst: Ints
    ts_ms: Ints
    spot: Floats
    t: Floats  # years to expiry
    fwd: Floats  # USD, to the cent
    vol: Floats  # true implied vol, decimal
    half: Floats  # half the bid/ask spread, in vol
    pulled: Bools  # bid pulled
    bid_amt: Floats  # coin
    ask_amt: Floats  # coin
    latency_ns: Ints  # exchange stamp to our receive time


@dataclass(frozen=True)
class UnderlyingMarket:
    """One underlying's chain, spot path (every ``SPOT_STEP_MS``), updates and truth."""

    spec: UnderlyingSpec
    chain: Chain
    start_ts_ms: int
    duration_ms: int
    path: Floats
    ssr: float
    updates: Updates
    truth: dict[str, Any]

    def spot_at(self, ts_ms: int) -> float:
        """The spot at an exchange time of the run."""
        return float(self.path[(ts_ms - self.start_ts_ms) // SPOT_STEP_MS])

    def marks(self, inst: Ints, ts_ms: int) -> tuple[Floats, Floats, Floats]:
        """(t, forward, true vol) of instruments at one time, as the updates price them."""
        spot = self.spot_at(ts_ms)
        t = (self.chain.expiry_ts_ms[inst] - ts_ms) / YEAR_MS
        fwd = np.round(spot * np.exp(self.spec.basis * t), 2)
        moved = self.ssr * np.log(spot / self.spec.spot)
        shift = None if self.ssr == 0.0 else np.full(t.size, moved)
        return t, fwd, true_vol(self.chain, inst, fwd, t, shift)


def true_vol(chain: Chain, inst: Ints, fwd: Floats, t: Floats, shift: Floats | None) -> Floats:
    """The truth smile's vol, read at ``k + shift`` (``k = ln(K/F)``)."""
    a, b, rho, m, sig = chain.svi[inst].T
    x = np.log(chain.strike[inst] / fwd) - m
    if shift is not None:  # only in the non-default worlds: the default stays bit-identical
        x = x + shift
    vol: Floats = np.sqrt((a + b * (rho * x + np.sqrt(x * x + sig * sig))) / t)
    return vol


def build_chain(spec: UnderlyingSpec, start_ts_ms: int) -> tuple[Chain, list[dict[str, Any]]]:
    """The listed instruments, and the truth of each expiry."""
    labels, future, exp_ts, ks, calls, params, truth = [], [], [], [], [], [], []
    for i, e in enumerate(expiries(spec, start_ts_ms)):
        t = (e.expiry_ts_ms - start_ts_ms) / YEAR_MS
        truth.append({"expiry": expiry_iso(e.expiry_ts_ms), "expiry_ts_ms": e.expiry_ts_ms,
                      "label": e.label, "svi": e.svi, "basis": spec.basis})
        for k in strikes(spec, i, t):
            for call in (True, False):
                labels.append(e.label)
                future.append(i >= FUTURE_FROM_EXPIRY)
                exp_ts.append(e.expiry_ts_ms)
                ks.append(k)
                calls.append(call)
                params.append([e.svi[p] for p in ("a", "b", "rho", "m", "sigma")])
    chain = Chain(spec.name, labels, np.array(future, bool), np.array(exp_ts, np.int64),
                  np.array(ks, np.float64), np.array(calls, bool), np.array(params, np.float64))
    return chain, truth


def _event_times(rng: np.random.Generator, n: int, duration_ms: int,
                 requote_ms: int | None) -> tuple[Ints, Ints]:
    """(instrument index, ms offset) of every update, unsorted."""
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


def simulate(spec: UnderlyingSpec, rng: np.random.Generator, start_ts_ms: int,
             duration_ms: int, ssr: float = 0.0, requote_ms: int | None = None
             ) -> UnderlyingMarket:
    """Draw one underlying's spot path and updates (``ssr`` as synth_market.WORLDS)."""
    chain, truth = build_chain(spec, start_ts_ms)
    path = spot_path(spec, rng, duration_ms // SPOT_STEP_MS + 1, SPOT_STEP_MS / 1000)
    inst, offset = _event_times(rng, chain.strike.size, duration_ms, requote_ms)
    spot = path[offset // SPOT_STEP_MS]
    ts = start_ts_ms + offset
    t = (chain.expiry_ts_ms[inst] - ts) / YEAR_MS
    fwd = np.round(spot * np.exp(spec.basis * t), 2)
    shift = ssr * np.log(spot / spec.spot) if ssr != 0.0 else None
    vol = true_vol(chain, inst, fwd, t, shift)
    d = np.abs(np.log(chain.strike[inst] / fwd)) / (vol * np.sqrt(t))
    half = 0.004 + 0.006 * np.minimum(d, 3.0) + 0.01 * (t < 3 / 365) + rng.uniform(0, 0.003, t.size)
    pulled = rng.random(t.size) < 0.02  # an occasional pulled bid
    bid_amt = np.round(rng.uniform(1, 50, t.size)) / 10
    ask_amt = np.round(rng.uniform(1, 50, t.size)) / 10
    latency_ns = rng.integers(1_000_000, 20_000_000, inst.size)
    updates = Updates(inst, ts, spot, t, fwd, vol, half, pulled, bid_amt, ask_amt, latency_ns)
    every_s = path[:: 1000 // SPOT_STEP_MS]
    spot_truth = [[start_ts_ms + i * 1000, round(float(s), 2)] for i, s in enumerate(every_s)]
    return UnderlyingMarket(spec, chain, start_ts_ms, duration_ms, path, ssr, updates,
                            {"expiries": truth, "spot_path": spot_truth, "spec": spec.__dict__})


def latest_at(updates: Updates, n_inst: int, push_ts_ms: list[int]
              ) -> Iterator[tuple[int, Ints, Bools]]:
    """For venues that push a chain at set times: per push, each instrument's latest update.

    Yields ``(push time, index of the latest update at or before it (-1: none yet),
    whether it changed since the previous push)``.
    """
    order = np.argsort(updates.ts_ms, kind="stable")
    latest = np.full(n_inst, -1, np.int64)
    j = 0
    for ts in push_ts_ms:
        changed = np.zeros(n_inst, bool)
        while j < order.size and updates.ts_ms[order[j]] <= ts:
            latest[updates.inst[order[j]]] = order[j]
            changed[updates.inst[order[j]]] = True
            j += 1
        yield ts, latest.copy(), changed
