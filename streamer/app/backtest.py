"""``streamer backtest FILE``: which delta hedges a recording best (core.hedging).

The file is replayed exactly as ``streamer replay`` does; between every two
consecutive surfaces of an underlying, options at a grid of standardised moneyness
on every expiry fitted fresh in both are hedged with each delta rule:

* ``black76``: the Black-76 delta at the strike's own implied vol, which is the
  sticky-strike delta (the strike's vol does not move with the forward);
* ``sticky_moneyness``: the vol of each ``k = ln(K/F)`` stays;
* ``measured_ssr``: the strike's vol moves by ``(SSR - 1) * dsigma/dk`` per unit of
  ``ln F``, with the SSR the surface itself publishes (``dynamics``), where it does.

It reports the variance of the hedging errors per tenor and moneyness bucket and
overall, and which rule leaves the least. Exit 0 with a report, 1 when the file
gave nothing to hedge (fewer than two fitted surfaces of an underlying), 2 for a
missing file or a bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

import msgspec
import numpy as np

from streamer.client import Surface
from streamer.config import AppConfig, load_config
from streamer.core import black76
from streamer.core.hedging import (
    MONEYNESS_EDGES,
    FloatArray,
    hedging_errors,
    overall,
    variance_table,
)
from streamer.errors import ConfigError
from streamer.types import SurfaceUpdate

RULES = ("black76", "sticky_moneyness", "measured_ssr")
_DYNAMICS = {"black76": "sticky_strike", "sticky_moneyness": "sticky_moneyness",
             "measured_ssr": "measured"}
#: Standardised log-moneyness of the hedged options, ATM total-vol widths.
Z_GRID = np.linspace(-1.5, 1.5, 13)
#: A forward move larger than this between two surfaces is a gap, not a step.
MAX_LOG_MOVE = 0.1
DAY_MS = 86_400_000
FRESH = ("warm", "cold")


class BucketReport(msgspec.Struct, frozen=True, kw_only=True):
    """One tenor x moneyness bucket: error variance per rule (bp of F, squared)."""

    tenor: str
    moneyness: str
    n: int
    variance_bp2: dict[str, float]
    best: str | None


class BacktestReport(msgspec.Struct, frozen=True, kw_only=True):
    """What ``streamer backtest`` found in a recording."""

    file: str
    model: str
    surfaces: int
    steps: int
    observations: int
    rules: list[str]
    variance_bp2: dict[str, float]
    best: str | None
    buckets: list[BucketReport]
    skipped: dict[str, int]


class _Observations:
    """Hedging errors of every option over every step, with its tenor and moneyness."""

    def __init__(self) -> None:
        self.tenor_days: list[FloatArray] = []
        self.z: list[FloatArray] = []
        self.errors: dict[str, list[FloatArray]] = {r: [] for r in RULES}
        self.steps = 0
        self.skipped: Counter[str] = Counter()

    def add_step(self, before: Surface, after: Surface) -> None:
        """Every expiry fitted fresh in both surfaces, over the moneyness grid."""
        if after.exchange_ts_ms <= before.exchange_ts_ms:
            self.skipped["not_later"] += 1
            return
        self.steps += 1
        fresh_after = {s.expiry_ts_ms for s in after.slices if s.update.status in FRESH}
        for s in before.slices:
            if s.update.status not in FRESH or s.expiry_ts_ms not in fresh_after:
                self.skipped["expiry_not_fresh_in_both"] += 1
            elif not s.usable or not np.isfinite(s.update.atm_vol):
                self.skipped["unusable_slice"] += 1
            else:
                self._add_expiry(before, after, s.expiry_ts_ms, s.update.atm_vol)

    def _add_expiry(self, before: Surface, after: Surface, expiry: int, atm_vol: float
                    ) -> None:
        t0 = float(before.years(expiry))
        t1 = float(after.years(expiry))
        f0, f1 = float(before.forward(expiry)), float(after.forward(expiry))
        if abs(np.log(f1 / f0)) > MAX_LOG_MOVE:
            self.skipped["forward_gap"] += 1
            return
        strike = f0 * np.exp(Z_GRID * atm_vol * np.sqrt(t0))
        is_call = strike >= f0
        vol0, vol1 = before.vol(strike, expiry), after.vol(strike, expiry)
        carried = black76.price(f0, strike, t1, vol0, is_call)
        v1 = black76.price(f1, strike, t1, vol1, is_call)
        deltas = {rule: _delta(before, strike, expiry, is_call, rule) for rule in RULES}
        errors = hedging_errors(v1, carried, np.full(strike.size, f0), np.full(strike.size, f1),
                                deltas)
        ok = np.isfinite(v1) & np.isfinite(carried)
        self.skipped["no_vol"] += int((~ok).sum())
        self.tenor_days.append(np.full(int(ok.sum()), (expiry - before.exchange_ts_ms) / DAY_MS))
        self.z.append(Z_GRID[ok])
        for rule in RULES:
            self.errors[rule].append(errors[rule][ok])

    def report(self, path: Path, model: str, surfaces: int) -> BacktestReport:
        tenor = np.concatenate(self.tenor_days) if self.tenor_days else np.zeros(0)
        z = np.concatenate(self.z) if self.z else np.zeros(0)
        errors = {r: np.concatenate(e) if e else np.zeros(0) for r, e in self.errors.items()}
        variance, best = overall(errors)
        buckets = [BucketReport(tenor=b.tenor, moneyness=b.moneyness, n=b.n,
                                variance_bp2=b.variance, best=b.best)
                   for b in variance_table(tenor, z, errors)]
        return BacktestReport(file=str(path), model=model, surfaces=surfaces,
                              steps=self.steps, observations=int(tenor.size),
                              rules=list(RULES), variance_bp2=variance, best=best,
                              buckets=buckets, skipped=dict(sorted(self.skipped.items())))


def _delta(surface: Surface, strike: FloatArray, expiry: int, is_call: FloatArray,
           rule: str) -> FloatArray:
    try:
        return surface.delta(strike, expiry, is_call, _DYNAMICS[rule])  # type: ignore[arg-type]
    except ValueError:  # no measured SSR on this surface yet
        return np.full(strike.size, np.nan)


def backtest(updates: list[SurfaceUpdate], path: Path, model: str) -> BacktestReport:
    """The report of a replay's surfaces, consecutive per key."""
    by_key: dict[str, list[SurfaceUpdate]] = defaultdict(list)
    for u in updates:
        by_key[f"{u.venue}:{u.underlying}"].append(u)
    observations = _Observations()
    for series in by_key.values():
        surfaces = [Surface(u) for u in series]
        for before, after in pairwise(surfaces):
            observations.add_step(before, after)
    return observations.report(path, model, len(updates))


async def _replay(path: Path, config: AppConfig) -> list[SurfaceUpdate]:
    from streamer.app.file_replay import replay_file
    from streamer.sinks.base import MemorySink

    sink = MemorySink()
    await replay_file(path, config, sink)
    return sink.updates


def render_text(report: BacktestReport) -> str:
    """The report as a table: variance per rule, the least marked with *."""
    lines = [f"{report.file}: {report.surfaces} surfaces ({report.model}), {report.steps} "
             f"steps, {report.observations} hedged options; variance of hedging errors, "
             "bp of the forward squared (black76 = sticky strike)",
             f"{'tenor':<8}{'moneyness':<14}{'n':>7}" + "".join(f"{r:>18}" for r in RULES)]
    rows = [(b.tenor, b.moneyness, b.n, b.variance_bp2, b.best) for b in report.buckets]
    rows.append(("all", "", report.observations, report.variance_bp2, report.best))
    for tenor, moneyness, n, variance, best in rows:
        cells = "".join(f"{variance[r]:>17.4g}{'*' if r == best else ' '}" for r in RULES)
        lines.append(f"{tenor:<8}{moneyness:<14}{n:>7}{cells}")
    lines.append(f"least hedging-error variance overall: {report.best}")
    return "\n".join(lines)


def plot(report: BacktestReport, out: Path) -> Path:
    """Bars of each rule's error variance relative to black76, per bucket (needs [plot])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    labels = [f"{b.tenor}\n{b.moneyness}" for b in report.buckets] + ["all"]
    variances = [b.variance_bp2 for b in report.buckets] + [report.variance_bp2]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.6 * len(labels)), 4.5))
    width = 0.8 / len(RULES)
    for i, rule in enumerate(RULES):
        ratio = [v[rule] / v["black76"] if v["black76"] > 0 else np.nan for v in variances]
        ax.bar(np.arange(len(labels)) + i * width, ratio, width, label=rule)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(np.arange(len(labels)) + width, labels, fontsize=7)
    ax.set_ylabel("hedging-error variance / black76's")
    ax.set_title(f"{Path(report.file).name}: delta rules by tenor and moneyness "
                 f"(edges {MONEYNESS_EDGES} sd)")
    ax.legend()
    fig.tight_layout()
    target = out / "backtest.png"
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


USAGE = """Which delta hedges a recording best.

The file is replayed exactly as `streamer replay` does. Between every two consecutive
surfaces of an underlying, options at a grid of standardised moneyness on every expiry
fitted in both are hedged with each delta rule:

  black76           the Black-76 delta at the strike's own implied vol: the
                    sticky-strike delta (the strike's vol does not move with the forward)
  sticky_moneyness  the vol at each log-moneyness ln(K/F) stays
  measured_ssr      the strike's vol moves by (SSR - 1) x the smile's slope per unit
                    of ln F, with the SSR the surface itself publishes, where it does

It reports the variance of the hedging errors per tenor and moneyness bucket and
overall, and which rule leaves the least. Exit 0 with a report, 1 when the file gave
nothing to hedge (fewer than two fitted surfaces of an underlying), 2 for a missing
file or a bad configuration.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamer backtest", description=USAGE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="tick file (as streamer replay reads)")
    parser.add_argument("--config", type=Path, help="config.yaml (default: built-in defaults)")
    parser.add_argument("--model", choices=["svi", "ssvi", "sabr", "heston"])
    parser.add_argument("--json", action="store_true", help="the report as one JSON object")
    parser.add_argument("--plot", type=Path, metavar="DIR", help="also draw DIR/backtest.png")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``streamer backtest``."""
    args = _parser().parse_args(argv)
    if not args.file.is_file():
        print(f"streamer backtest: no such tick file: {args.file}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"streamer backtest: {exc}", file=sys.stderr)
        return 2
    if args.model:
        config = msgspec.structs.replace(
            config, calibration=msgspec.structs.replace(config.calibration, model=args.model))
    updates = asyncio.run(_replay(args.file, config))
    report = backtest(updates, args.file, config.calibration.model)
    print(msgspec.json.encode(report).decode() if args.json else render_text(report))
    if args.plot is not None and report.observations:
        print(f"wrote {plot(report, args.plot)}", file=sys.stderr)
    if not report.observations:
        print(f"streamer backtest: nothing to hedge in {args.file} ({report.surfaces} "
              f"surfaces, {report.steps} steps)", file=sys.stderr)
        return 1
    return 0
