"""Real Deribit chains (``/work/shared/data/real/deribit``) as tick files plus reference marks.

``python -m streamer.devtools.real_chains --out DIR [--all-hours] [--source S]`` writes,
per chain, ``<name>.ndjson.gz`` (Deribit ``ticker`` notifications, the format
``streamer replay`` reads) and ``<name>.ref.csv.gz`` (one row per instrument and snapshot:
Deribit's mark/bid/ask IVs as decimals and the forward), which
:mod:`streamer.devtools.scorecard` scores published surfaces against.

Sources (see the data's PROVENANCE.md):

- ``snapshot``: the 2026-02-07 8-expiry BTC chain. It has coin prices and forwards but no
  bid/ask IVs: those are inverted from the prices by Black-76 at the forward.
- ``hourly``: the 2026-01-23/24 hourly BTC chains. They have Deribit's IVs (percent) and
  greeks but no prices, no forward and no capture time. The capture time of a snapshot
  is the one at which the per-strike forwards read off Deribit's deltas agree
  (a wrong ``t`` makes ``F = K exp(N⁻¹(Δ) σ√t − σ²t/2)`` drift with the strike); each
  expiry's forward is the median of those per-strike forwards. Prices are then
  Black-76 in coin as Deribit quotes them (price / F, r = 0, ACT/365 to the 08:00 UTC
  expiry) on Deribit's tick. Snapshots that repeat the previous one are dropped.
- ``testnet``: the 2021-02-11 testnet order books (schema and robustness only: testnet
  IVs are not market truth).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

from streamer.core import black76
from streamer.core.implied_vol import implied_vol
from streamer.sources.deribit.protocol import parse_instrument_name
from streamer.tickfile import TickFileWriter

FloatArray = npt.NDArray[np.float64]
YEAR_MS = 365.0 * 86_400_000.0
REAL_DIR = Path("/work/shared/data/real/deribit")
SNAPSHOT_FILE = "djienne_chain_snapshot_8exp_2026-02-07T1839Z.json.gz"
HOURLY_FILE = "r1quant_chain_iv_greeks_hourly_2026-01-23_to_24.csv.gz"
TESTNET_FILE = "bottama_TESTNET_get_order_book_btc_2021-02-11.csv.gz"
#: Deribit BTC option ticks: 0.0001 BTC below 0.005 BTC, 0.0005 from there (the
#: instruments' ``tick_size_steps``; every price >= 0.005 in the 2026 snapshot is on 0.0005).
SMALL_TICK, LARGE_TICK, TICK_STEP_AT, MIN_PRICE = 0.0001, 0.0005, 0.005, 0.0001
#: Hourly snapshots bundled for the tests (indices into the 34 distinct ones): both days,
#: the hour before an 08:00 expiry and the hour after it, quiet and busy hours.
BUNDLED_HOURS = (0, 6, 7, 15, 24, 33)
#: Lines of one snapshot arrive this far apart (µs): a chain's subscription burst.
LINE_SPACING_US = 500
REF_COLUMNS = ("snapshot_ts_ms", "instrument", "expiry_ts_ms", "strike", "is_call",
               "forward", "mark_iv", "bid_iv", "ask_iv", "bid_price", "ask_price")


@dataclass
class Snapshot:
    """One chain at one time: arrays over its instruments (NaN where missing)."""

    ts_ms: int
    names: list[str]
    expiry_ts_ms: npt.NDArray[np.int64]
    strike: FloatArray
    is_call: npt.NDArray[np.bool_]
    forward: FloatArray
    mark_iv: FloatArray
    bid_iv: FloatArray
    ask_iv: FloatArray
    bid: FloatArray  # coin; NaN: no bid
    ask: FloatArray
    mark: FloatArray
    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray
    index_price: float
    checks: dict[str, float] = field(default_factory=dict)

    @property
    def t(self) -> FloatArray:
        """Years to expiry (ACT/365, ms-exact)."""
        return np.asarray((self.expiry_ts_ms - self.ts_ms) / YEAR_MS, np.float64)


def tick_round(price_coin: npt.ArrayLike) -> FloatArray:
    """Nearest Deribit tick (0.0001 below 0.005 BTC, else 0.0005), at least 0.0001."""
    p = np.asarray(price_coin, np.float64)
    tick = np.where(p < TICK_STEP_AT, SMALL_TICK, LARGE_TICK)
    out: FloatArray = np.maximum(np.round(np.round(p / tick) * tick, 4), MIN_PRICE)
    return out


def _iso_ms(text: str) -> int:
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1000)


def _parse_names(names: Sequence[str]) -> tuple[npt.NDArray[np.int64], FloatArray,
                                                   npt.NDArray[np.bool_]]:
    infos = [parse_instrument_name(n) for n in names]
    if any(i is None for i in infos):
        bad = [n for n, i in zip(names, infos, strict=True) if i is None]
        raise ValueError(f"unparsable instrument names: {bad[:5]}")
    return (np.array([i.expiry_ts_ms for i in infos if i], np.int64),
            np.array([i.strike for i in infos if i], np.float64),
            np.array([i.is_call for i in infos if i], bool))


# --- the 2026-02-07 snapshot -------------------------------------------------------------

def snapshot_chain(path: Path) -> Snapshot:
    """The 8-expiry snapshot with bid/ask IVs inverted from its coin prices."""
    with gzip.open(path, "rt") as handle:
        raw = json.load(handle)
    ts_ms = _iso_ms(raw["captured_at_utc"])
    rows = [(o, float(e["forward_price"]), float(e["spot_price"]))
            for e in raw["expiries"].values() for o in e["options"]]
    names = [o["instrument_name"] for o, _, _ in rows]
    expiry, strike, call = _parse_names(names)
    fwd = np.array([f for _, f, _ in rows])

    def num(key: str) -> FloatArray:
        return np.array([np.nan if o[key] in (None, 0) else float(o[key]) for o, _, _ in rows])

    t = (expiry - ts_ms) / YEAR_MS
    bid, ask, mark = num("bid_price"), num("ask_price"), num("mark_price")
    snap = Snapshot(ts_ms, names, expiry, strike, call, fwd, num("mark_iv"),
                    implied_vol(bid * fwd, fwd, strike, t, call),
                    implied_vol(ask * fwd, fwd, strike, t, call), bid, ask, mark,
                    black76.delta(fwd, strike, t, num("mark_iv"), call),
                    black76.gamma(fwd, strike, t, num("mark_iv")),
                    black76.vega(fwd, strike, t, num("mark_iv")) / 100.0,
                    float(rows[0][2]))
    model_mark = black76.price(fwd, strike, t, snap.mark_iv, call) / fwd
    ok = np.isfinite(mark) & (mark > 1e-4)
    snap.checks["mark_price_rel_err_median"] = float(np.median(
        np.abs(model_mark[ok] / mark[ok] - 1.0)))
    return snap


# --- the 2026-01-23/24 hourly chains -----------------------------------------------------

def _read_hourly(path: Path) -> list[tuple[str, list[dict[str, str]]]]:
    """Rows grouped by snapshot label, in file order; repeats of the previous one dropped."""
    groups: dict[str, list[dict[str, str]]] = {}
    with gzip.open(path, "rt", newline="") as handle:
        for row in csv.DictReader(handle):
            groups.setdefault(row["date"], []).append(row)
    out: list[tuple[str, list[dict[str, str]]]] = []
    previous: list[tuple[str, ...]] | None = None
    for label, rows in groups.items():
        body = [tuple(v for k, v in r.items() if k != "date") for r in rows]
        if body != previous:
            out.append((label, rows))
        previous = body
    return out


def _call_delta(delta: FloatArray, call: npt.NDArray[np.bool_]) -> FloatArray:
    """N(d1) from a call's delta N(d1) or a put's N(d1) - 1."""
    return np.where(call, delta, delta + 1.0)


def _strike_forwards(strike: FloatArray, t: FloatArray, vol: FloatArray, nd1: FloatArray
                     ) -> FloatArray:
    """Per-instrument forward solving N(d1) = nd1: F = K exp(N⁻¹(nd1) σ√t − σ²t/2)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        s = vol * np.sqrt(t)
        result: FloatArray = strike * np.exp(ndtri(nd1) * s - 0.5 * s * s)
    return result


def _expiry_medians(expiry: npt.NDArray[np.int64], values: FloatArray, use: npt.NDArray[np.bool_]
                    ) -> dict[int, float]:
    return {int(e): float(np.median(values[use & (expiry == e)]))
            for e in np.unique(expiry[use])}


def recover_capture_and_forwards(label_ms: int, expiry: npt.NDArray[np.int64],
                                 strike: FloatArray, call: npt.NDArray[np.bool_],
                                 vol: FloatArray, delta: FloatArray
                                 ) -> tuple[int, dict[int, float], float]:
    """(capture time ms, forward per expiry, relative dispersion) from Deribit's deltas.

    Grid search of the capture time over [-30, 90] minutes around the label (15 s steps),
    then the per-expiry median of the per-strike forwards. Only deltas with
    0.05 <= N(d1) <= 0.95 are used (5 rounded decimals carry little information beyond).
    """
    nd1 = _call_delta(delta, call)
    use = (nd1 >= 0.05) & (nd1 <= 0.95) & (vol > 0) & (expiry > label_ms + 90 * 60_000)
    offsets_ms = np.arange(-30 * 60_000, 90 * 60_000 + 1, 15_000)
    ex, k, v, n = expiry[use], strike[use], vol[use], nd1[use]
    groups = [ex == e for e in np.unique(ex)]
    best: tuple[float, int] = (math.inf, 0)
    for off in offsets_ms:
        logf = np.log(_strike_forwards(k, (ex - (label_ms + off)) / YEAR_MS, v, n))
        spread = sum(float(np.sum(np.abs(logf[m] - np.median(logf[m])))) for m in groups)
        best = min(best, (spread, int(off)))
    capture_ms = label_ms + best[1]
    t = (expiry - capture_ms) / YEAR_MS
    per_strike = _strike_forwards(strike, t, vol, nd1)
    forwards = _expiry_medians(expiry, per_strike, use)
    fwd = np.array([forwards.get(int(e), np.nan) for e in expiry])
    dispersion = float(np.nanmedian(np.abs(per_strike[use] / fwd[use] - 1.0)))
    # Expiries with no usable delta (e.g. due within 90 minutes): the nearest expiry's F.
    listed = sorted(forwards)
    for e in np.unique(expiry):
        if int(e) not in forwards and listed:
            forwards[int(e)] = forwards[min(listed, key=lambda x: abs(x - int(e)))]
    return capture_ms, forwards, dispersion


def _put_call_gap(names: Sequence[str], delta: FloatArray) -> float:
    """Largest |Δcall − Δput − 1| over strikes quoted both ways (Deribit: 0 to rounding)."""
    by_name = dict(zip(names, delta, strict=True))
    gaps = [abs(d - by_name[n[:-1] + "P"] - 1.0) for n, d in by_name.items()
            if n.endswith("C") and n[:-1] + "P" in by_name]
    return float(max(gaps)) if gaps else math.nan


def hourly_chain(label: str, rows: list[dict[str, str]]) -> Snapshot:
    """One hourly snapshot with its forwards, capture time and Black-76 coin prices."""
    names = [r["instrument_name"] for r in rows]
    expiry, strike, call = _parse_names(names)

    def col(key: str) -> FloatArray:
        return np.array([float(r[key]) for r in rows])

    mark_iv, bid_iv, ask_iv = col("mark_iv") / 100, col("bid_iv") / 100, col("ask_iv") / 100
    delta = col("delta")
    capture_ms, forwards, dispersion = recover_capture_and_forwards(
        _iso_ms(label), expiry, strike, call, mark_iv, delta)
    live = expiry > capture_ms
    keep = np.flatnonzero(live)
    fwd = np.array([forwards[int(e)] for e in expiry[keep]])
    k, c, ex = strike[keep], call[keep], expiry[keep]
    t = (ex - capture_ms) / YEAR_MS
    b_iv = np.where(bid_iv[keep] > 0, bid_iv[keep], np.nan)
    a_iv = np.where(ask_iv[keep] > 0, ask_iv[keep], np.nan)
    m_iv = np.where(mark_iv[keep] > 0, mark_iv[keep], np.nan)

    def coin(vol: FloatArray) -> FloatArray:
        return np.asarray(black76.price(fwd, k, t, vol, c) / fwd, np.float64)

    bid = np.where(np.isfinite(b_iv), tick_round(coin(np.nan_to_num(b_iv))), np.nan)
    ask = np.where(np.isfinite(a_iv), tick_round(coin(np.nan_to_num(a_iv))), np.nan)
    front = forwards[min(forwards)]
    snap = Snapshot(capture_ms, [names[i] for i in keep], ex, k, c, fwd, m_iv, b_iv, a_iv,
                    bid, ask, coin(np.nan_to_num(m_iv)), delta[keep], col("gamma")[keep],
                    col("vega")[keep], front)
    snap.checks.update(capture_offset_min=(capture_ms - _iso_ms(label)) / 60_000,
                       forward_dispersion=dispersion,
                       put_call_delta_gap=_put_call_gap(names, delta),
                       dropped_expired=float(np.sum(~live)))
    return snap


def hourly_chains(path: Path) -> list[Snapshot]:
    """Every distinct hourly snapshot (34 of the 37 labels)."""
    return [hourly_chain(label, rows) for label, rows in _read_hourly(path)]


# --- the 2021 testnet books --------------------------------------------------------------

def testnet_chains(path: Path) -> list[Snapshot]:
    """The testnet order books, one snapshot per pass (schema/robustness only)."""
    with gzip.open(path, "rt", newline="") as handle:
        rows = [r for r in csv.DictReader(handle)
                if r.get("instrument_name") and parse_instrument_name(r["instrument_name"])]
    passes: list[list[dict[str, str]]] = []
    seen: set[str] = set()
    for r in rows:  # a pass ends when an instrument comes round again
        if not passes or r["instrument_name"] in seen:
            passes.append([])
            seen = set()
        passes[-1].append(r)
        seen.add(r["instrument_name"])
    return [_testnet_pass(p) for p in passes]


def _testnet_pass(rows: list[dict[str, str]]) -> Snapshot:
    names = [r["instrument_name"] for r in rows]
    expiry, strike, call = _parse_names(names)

    def col(key: str) -> FloatArray:
        return np.array([float(r[key]) if r.get(key) not in (None, "", "None") else np.nan
                         for r in rows])

    def positive(x: FloatArray) -> FloatArray:
        return np.where(x > 0, x, np.nan)

    ts_ms = int(np.nanmin(col("timestamp")))
    return Snapshot(ts_ms, names, expiry, strike, call, col("underlying_price"),
                    positive(col("mark_iv")) / 100, positive(col("bid_iv")) / 100,
                    positive(col("ask_iv")) / 100, positive(col("best_bid_price")),
                    positive(col("best_ask_price")), col("mark_price"), col("greeks.delta"),
                    col("greeks.gamma"), col("greeks.vega"),
                    float(np.nanmedian(col("index_price"))))


# --- writing -----------------------------------------------------------------------------

def _r(x: float, digits: int) -> float:
    return round(float(x), digits) if math.isfinite(x) else 0.0


def ticker_message(snap: Snapshot, i: int, ts_ms: int) -> bytes:
    """Instrument ``i`` of ``snap`` as a Deribit ``ticker.<name>.100ms`` notification."""
    name, expiry_label = snap.names[i], snap.names[i].split("-")[1]
    bid, ask = float(snap.bid[i]), float(snap.ask[i])
    data: dict[str, Any] = {
        "underlying_price": _r(snap.forward[i], 4),
        # Which expiries have a listed future is not recorded: the synthetic index throughout.
        "underlying_index": f"SYN.BTC-{expiry_label}", "timestamp": ts_ms,
        "state": "open", "settlement_price": _r(snap.mark[i], 8), "open_interest": 0.0,
        "min_price": MIN_PRICE, "max_price": 1.0, "mark_price": _r(snap.mark[i], 8),
        "mark_iv": _r(snap.mark_iv[i] * 100, 2), "last_price": None, "interest_rate": 0.0,
        "instrument_name": name, "index_price": _r(snap.index_price, 2),
        "greeks": {"vega": _r(snap.vega[i], 5), "theta": 0.0, "rho": 0.0,
                   "gamma": _r(snap.gamma[i], 5), "delta": _r(snap.delta[i], 5)},
        "estimated_delivery_price": _r(snap.index_price, 2),
        "bid_iv": _r(snap.bid_iv[i] * 100, 2), "best_bid_price": _r(bid, 4),
        "best_bid_amount": 1.0 if math.isfinite(bid) else 0.0,
        "ask_iv": _r(snap.ask_iv[i] * 100, 2), "best_ask_price": _r(ask, 4),
        "best_ask_amount": 1.0 if math.isfinite(ask) else 0.0}
    msg = {"jsonrpc": "2.0", "method": "subscription",
           "params": {"channel": f"ticker.{name}.100ms", "data": data}}
    return json.dumps(msg, separators=(",", ":")).encode()


def write_chain(snaps: Iterable[Snapshot], stem: Path) -> tuple[Path, Path]:
    """``<stem>.ndjson.gz`` and ``<stem>.ref.csv.gz``: snapshot after snapshot, by expiry/strike.

    Within a snapshot the lines are ``LINE_SPACING_US`` apart from its capture time on,
    exchange time = receive time, so a snapshot replays as one subscription burst.
    """
    tick_path, ref_path = Path(f"{stem}.ndjson.gz"), Path(f"{stem}.ref.csv.gz")
    ref_path.parent.mkdir(parents=True, exist_ok=True)
    with TickFileWriter(tick_path) as writer, gzip.open(ref_path, "wt", newline="") as ref:
        out = csv.writer(ref)
        out.writerow(REF_COLUMNS)
        for snap in snaps:
            order = np.lexsort((~snap.is_call, snap.strike, snap.expiry_ts_ms))
            for j, i in enumerate(order):
                recv_ns = snap.ts_ms * 1_000_000 + j * LINE_SPACING_US * 1_000
                writer.write(recv_ns, ticker_message(snap, int(i), recv_ns // 1_000_000))
                out.writerow([snap.ts_ms, snap.names[i], int(snap.expiry_ts_ms[i]),
                              f"{snap.strike[i]:g}", int(snap.is_call[i]),
                              f"{snap.forward[i]:.4f}", *(_ref_num(x) for x in (
                                  snap.mark_iv[i], snap.bid_iv[i], snap.ask_iv[i],
                                  snap.bid[i], snap.ask[i]))])
    return tick_path, ref_path


def _ref_num(x: float) -> str:
    return f"{x:.6f}" if math.isfinite(x) else ""


def build(out: Path, *, all_hours: bool = False, sources: Sequence[str] = ("snapshot", "hourly"),
          real_dir: Path = REAL_DIR) -> list[Path]:
    """Write the chains of ``sources`` under ``out``; the tick files written."""
    written: list[Path] = []
    if "snapshot" in sources:
        written.append(write_chain([snapshot_chain(real_dir / SNAPSHOT_FILE)],
                                   out / "deribit_btc_2026-02-07T1839Z")[0])
    if "hourly" in sources:
        hours = hourly_chains(real_dir / HOURLY_FILE)
        chosen = hours if all_hours else [hours[i] for i in BUNDLED_HOURS]
        name = "deribit_btc_hourly_2026-01-23_all" if all_hours else "deribit_btc_hourly_2026-01-23"
        written.append(write_chain(chosen, out / name)[0])
    if "testnet" in sources:
        written.append(write_chain(testnet_chains(real_dir / TESTNET_FILE),
                                   out / "deribit_btc_testnet_2021-02-11")[0])
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m streamer.devtools.real_chains",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("tests/data/real"))
    parser.add_argument("--all-hours", action="store_true",
                        help="every distinct hourly snapshot (34), not the bundled 6")
    parser.add_argument("--source", action="append", choices=["snapshot", "hourly", "testnet"],
                        help="chains to build (repeatable; default snapshot and hourly)")
    parser.add_argument("--real-dir", type=Path, default=REAL_DIR)
    parser.add_argument("--checks", action="store_true",
                        help="print each hourly snapshot's capture offset and forward checks")
    args = parser.parse_args(argv)
    if args.checks:
        for snap in hourly_chains(args.real_dir / HOURLY_FILE):
            print(snap.ts_ms, {k: round(v, 6) for k, v in snap.checks.items()})
        return 0
    for path in build(args.out, all_hours=args.all_hours,
                      sources=args.source or ("snapshot", "hourly"), real_dir=args.real_dir):
        print(f"{path} ({path.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
