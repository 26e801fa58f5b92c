"""``streamer plot FILE --out DIR``: pictures of a replayed tick file (needs ``[plot]``).

The file is replayed exactly as ``streamer replay`` does (``app.file_replay.replay_file`` into a
``MemorySink``). With ``--from-kafka BOOTSTRAP`` instead of a file, the surfaces are
those the surface topic holds, read to its end (``client.read_history``; ``--key``
picks ``<venue>:<underlying>`` keys). Smile dynamics are the surfaces' ``dynamics``
field: the replay's engine estimates them from the quotes (``--min-move`` reaches it),
the surface topic carries the publisher's. Per underlying (``<venue>_<U>`` when several
venues publish it):

- ``smiles_<U>.png``: every expiry of the last surface, the market's bid-ask IV of
  each quote used in the fit as a bar (mid as a dot) and the fitted smile; from
  Kafka, where the quotes are not published, a band of +- the slice's median
  half-spread (``half_spread_vol``) around the smile instead;
- ``term_<U>.png``: ATM vol and skew against days to expiry, first and last surface;
- ``dynamics_<U>.png``: SSR with its 95% interval, spot-vol and fixed-strike beta at
  the reference tenor, and the spot, against time;
- ``tenors_<U>.png``: the constant-maturity views (``tenors``): ATM vol by tenor, first
  and last surface, RR/BF 25 and 10 by tenor, and the vol by delta and tenor as a heat
  map (when the surfaces carry tenor views);
- ``index_<U>.png``: the variance index from the quotes, on the fitted smiles and the
  venue's own (DVOL), against the same tenor's ATM vol, over time (when published).

The smiles carry each fitted slice's ATM vol with its 95% error bar (``atm_vol_se``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from streamer.client import read_history
from streamer.config import AppConfig, DynamicsConfig, TickFileConfig, load_config
from streamer.core.models.registry import model_for
from streamer.core.tenors import DELTA_KEYS
from streamer.errors import BrokerError
from streamer.kafka.options import consumer_options
from streamer.pipeline.chain_book import ChainBook
from streamer.pipeline.snapshot import build_slice
from streamer.sources.deribit.protocol import DeribitDecoder
from streamer.tickfile import read_tickfile
from streamer.types import Dynamics, SurfaceUpdate

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

REGIME_LINES = ((0.0, "sticky moneyness"), (1.0, "sticky strike"), (2.0, "local vol"))
#: Half-width of a two-sided 95% interval in standard errors.
Z95 = 1.96
MIN_DRAWN_OBS = 10


DESCRIPTION = """\
Pictures of a tick file's surfaces (replayed exactly as `streamer replay` does), or of
those on the Kafka surface topic (--from-kafka), as PNGs per underlying:

  smiles_<U>.png    every expiry of the last surface: the market's bid-ask IVs and the
                    fitted smile (from Kafka: a band of the slice's half-spread)
  term_<U>.png      ATM vol and skew against days to expiry, first and last surface
  dynamics_<U>.png  SSR with its 95% interval, spot-vol and fixed-strike beta at the
                    reference tenor, and the spot, against time
  tenors_<U>.png    constant-maturity ATM vol, RR/BF by tenor, vol by delta and tenor
  index_<U>.png     the 30-day variance index (quotes, fitted smiles, DVOL) against
                    the 30-day ATM vol, over time

<U> is <venue>_<underlying> when several venues publish the underlying. Needs the
[plot] extra (matplotlib)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamer plot", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", help="tick file, or `bundled` for the shipped sample")
    parser.add_argument("--from-kafka", metavar="BOOTSTRAP",
                        help="instead of a file: the surfaces on the surface topic (host:port)")
    parser.add_argument("--key", action="append",
                        help="only these <venue>:<underlying> keys, e.g. deribit:BTC (repeatable)")
    parser.add_argument("--topic", help="with --from-kafka: the surface topic "
                                        "(default: kafka.surface_topic of the config)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="with --from-kafka: seconds allowed for the read (%(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the PNGs")
    parser.add_argument("--config", type=Path, help="config.yaml (default: built-in defaults)")
    parser.add_argument("--model", choices=["svi", "ssvi", "sabr", "heston"])
    parser.add_argument("--underlying", action="append", help="only these (repeatable)")
    parser.add_argument("--min-move", type=float,
                        help="dynamics: how far (log) an instrument's forward must move "
                             "between two of its quotes to make an observation (default: "
                             f"dynamics.min_move, {DynamicsConfig().min_move:g}: every "
                             "requote); a tick file only")
    return parser


async def _replay(path: Path, config: AppConfig) -> list[SurfaceUpdate]:
    from streamer.app.file_replay import replay_file
    from streamer.sinks.base import MemorySink
    from streamer.telemetry.progress import ProgressBar

    sink = MemorySink()
    await replay_file(path, config, sink, progress=ProgressBar(f"replay {path.name}"))
    return sink.updates


async def _from_kafka(bootstrap: str, config: AppConfig, keys: list[str] | None,
                      topic: str | None, timeout_s: float) -> list[SurfaceUpdate]:
    options = consumer_options(config.kafka, bootstrap)
    del options["bootstrap_servers"]
    return await read_history(bootstrap, keys, topic or config.kafka.surface_topic,
                              value_format=config.kafka.value_format, timeout_s=timeout_s,
                              **options)


def _final_books(path: Path, venue: str, limits: TickFileConfig) -> dict[str, ChainBook]:
    """Every underlying's latest quotes at the end of the file (the last surface's inputs)."""
    decoder, books = DeribitDecoder(), dict[str, ChainBook]()
    for line in read_tickfile(path, max_bad_share=limits.max_bad_share,
                              max_line_bytes=limits.max_line_bytes):
        for quote in decoder.decode(line.raw, line.received_ts_ns).quotes:
            books.setdefault(quote.underlying, ChainBook(venue, quote.underlying)).update(quote)
    return books


def _smiles(fig: Figure, last: SurfaceUpdate, book: ChainBook | None, config: AppConfig) -> None:
    cols = 4
    rows = -(-len(last.slices) // cols)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, s in zip(axes, last.slices, strict=False):
        snap = None
        if book is not None:
            snap, _, _ = build_slice(book.quotes(s.expiry_ts_ms), s.expiry_ts_ms,
                                     last.exchange_ts_ms,
                                     stale_after_ms=config.calibration.stale_after_ms,
                                     max_rel_spread=config.calibration.max_rel_spread)
        if snap is not None and snap.k.size == 0:
            snap = None
        lo, hi = (_k_range(s.atm_vol, s.t) if snap is None
                  else (float(snap.k.min()), float(snap.k.max())))
        pad = 0.1 * (hi - lo)
        k = np.linspace(lo - pad, hi + pad, 200)
        model = model_for(s.model_of(last.model))  # a fallback slice names its own
        smile = 100 * model.vol(k, s.t, model.from_dict(s.params))
        if snap is not None:
            bid = np.where(np.isfinite(snap.bid_iv), snap.bid_iv, snap.iv)
            ax.vlines(snap.k, 100 * bid, 100 * snap.ask_iv, color="tab:gray", lw=2,
                      label="bid-ask")
            ax.plot(snap.k, 100 * snap.iv, ".", color="black", ms=3, label="mid")
        elif np.isfinite(s.half_spread_vol):
            half = 100 * s.half_spread_vol
            ax.fill_between(k, smile - half, smile + half, color="tab:gray", alpha=0.3,
                            label="± median half-spread")
        ax.plot(k, smile, color="tab:blue", label=f"{s.model_of(last.model)} ({s.status})")
        if np.isfinite(s.atm_vol_se) and np.isfinite(s.atm_vol):  # the fit's own error bar
            ax.errorbar([0.0], [100 * s.atm_vol], yerr=[100 * Z95 * s.atm_vol_se], fmt="o",
                        color="tab:red", ms=3, capsize=3, label="ATM ± 95%")
        inside = ("" if not np.isfinite(s.within_spread_fraction)
                  else f"  {100 * s.within_spread_fraction:.0f}% in spread")
        ax.set_title(f"{s.expiry[:10]}  {365 * s.t:.1f}d  rmse {100 * s.rmse_vol:.2f}{inside}",
                     fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(last.slices):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.supxlabel("k = ln(K/F)")
    fig.supylabel("implied vol, %")
    fig.suptitle(f"{last.key} smiles at {_clock(last.exchange_ts_ms)}")


def _k_range(atm_vol: float, t: float) -> tuple[float, float]:
    """Log-moneyness to draw without quotes: two ATM total-vol widths each side."""
    width = 2.0 * atm_vol * np.sqrt(t)
    half = max(0.05, float(width)) if np.isfinite(width) else 0.3
    return -half, half


def _term(fig: Figure, first: SurfaceUpdate, last: SurfaceUpdate, tenor_days: float) -> None:
    vol_ax, skew_ax = fig.subplots(2, 1, sharex=True)
    for update, style in ((first, "o--"), (last, "o-")):
        days = [365 * s.t for s in update.slices]
        label = _clock(update.exchange_ts_ms)
        vol_ax.plot(days, [100 * s.atm_vol for s in update.slices], style, label=label)
        skew_ax.plot(days, [s.atm_skew for s in update.slices], style, label=label)
    for ax in (vol_ax, skew_ax):
        ax.axvline(tenor_days, color="tab:gray", lw=0.8, ls=":")
        ax.set_xscale("log")
    vol_ax.set_ylabel("ATM vol, %")
    skew_ax.set_ylabel("ATM skew dσ/dk")
    skew_ax.set_xlabel("days to expiry (dotted: the dynamics' reference tenor)")
    vol_ax.legend(fontsize=8)
    fig.suptitle(f"{last.key} ATM term structure")


def _dynamics(fig: Figure, updates: list[SurfaceUpdate], dyn: list[Dynamics | None]) -> None:
    t0 = updates[0].exchange_ts_ms
    pairs = [(u, d) for u, d in zip(updates, dyn, strict=True) if d is not None]
    x = np.array([(u.exchange_ts_ms - t0) / 1000 for u, _ in pairs])
    col = {name: np.array([getattr(d, name) for _, d in pairs], np.float64)
           for name in ("ssr", "ssr_low", "ssr_high", "spot_vol_beta", "fixed_strike_beta",
                        "atm_skew")}
    # A regression of a handful of points says nothing: leave those estimates out.
    few = np.array([d.n_obs < MIN_DRAWN_OBS for _, d in pairs], bool)
    few_ssr = np.array([d.ssr_n_obs < MIN_DRAWN_OBS for _, d in pairs], bool)
    for name in ("ssr", "ssr_low", "ssr_high"):
        col[name][few_ssr] = np.nan
    for name in ("spot_vol_beta", "fixed_strike_beta"):
        col[name][few] = np.nan
    ssr_ax, beta_ax, spot_ax = fig.subplots(3, 1, sharex=True)
    if np.isfinite(col["ssr"]).any():
        ssr_ax.fill_between(x, col["ssr_low"], col["ssr_high"], color="tab:blue", alpha=0.2,
                            label="95% interval")
        ssr_ax.plot(x, col["ssr"], color="tab:blue", label="SSR")
        ssr_ax.legend(fontsize=7, loc="upper right")
    else:  # say why the panel is empty, rather than a legend of lines never drawn
        most = max((d.ssr_n_obs for _, d in pairs), default=0)
        ssr_ax.text(0.5, 0.5, f"no SSR estimate: at most {most} observations, {MIN_DRAWN_OBS} "
                    "needed\n(requotes near the money of instruments whose forward moved)",
                    transform=ssr_ax.transAxes, ha="center", va="center", fontsize=9)
    for level, name in REGIME_LINES:
        ssr_ax.axhline(level, color="tab:gray", lw=0.7, ls=":")
        ssr_ax.annotate(name, (0.0, level), xycoords=("axes fraction", "data"), fontsize=7,
                        color="tab:gray")
    _limits(ssr_ax, col["ssr"])
    ssr_ax.set_ylabel("SSR")
    for name, style, label in (("spot_vol_beta", "-", "spot-vol beta dσ_ATM/dlnS"),
                               ("fixed_strike_beta", "-", "fixed-strike beta"),
                               ("atm_skew", "--", "ATM skew dσ/dk")):
        if np.isfinite(col[name]).any():  # the legend names only what is drawn
            beta_ax.plot(x, col[name], ls=style, label=label)
    if beta_ax.get_lines():
        beta_ax.legend(fontsize=7)
    spot_ax.plot((np.array([u.exchange_ts_ms for u in updates]) - t0) / 1000,
                 [u.spot for u in updates], color="black")
    spot_ax.set_ylabel("spot")
    spot_ax.set_xlabel("seconds since the first surface")
    last = next((d for d in reversed(dyn) if d is not None), None)
    tenor = last.tenor_days if last is not None else float("nan")
    n_obs = last.n_obs if last is not None else 0
    fig.suptitle(f"{updates[-1].key} smile dynamics at {tenor:g} days ({n_obs} observations; "
                 f"estimates drawn from {MIN_DRAWN_OBS} on)")


def _tenors(fig: Figure, first: SurfaceUpdate, last: SurfaceUpdate) -> None:
    """The constant-maturity views: ATM vol, RR/BF by tenor, and the delta grid."""
    atm_ax, rr_ax, grid_ax = fig.subplots(3, 1, height_ratios=(1, 1, 1.3))
    for update, style in ((first, "o--"), (last, "o-")):
        days = [v.tenor_days for v in update.tenors]
        atm_ax.plot(days, [100 * v.atm_vol for v in update.tenors], style,
                    label=_clock(update.exchange_ts_ms))
    out = [v for v in last.tenors if v.extrapolated]
    if out:
        atm_ax.plot([v.tenor_days for v in out], [100 * v.atm_vol for v in out], "x",
                    color="tab:red", ms=9, label="extrapolated (outside the expiries)")
    atm_ax.set_ylabel("ATM vol, %")
    atm_ax.legend(fontsize=7)
    days = [v.tenor_days for v in last.tenors]
    for name, style in (("rr25", "o-"), ("bf25", "s-"), ("rr10", "o:"), ("bf10", "s:")):
        rr_ax.plot(days, [100 * getattr(v, name) for v in last.tenors], style,
                   label=name.upper())
    rr_ax.axhline(0.0, color="tab:gray", lw=0.7)
    rr_ax.set_ylabel("vol points")
    rr_ax.legend(fontsize=7, ncol=4)
    for ax in (atm_ax, rr_ax):
        ax.set_xscale("log")
        ax.set_xlabel("tenor, days")
    grid = np.array([[100 * v.delta_vols.get(key, np.nan) for key in DELTA_KEYS]
                     for v in last.tenors])
    image = grid_ax.imshow(grid, aspect="auto", cmap="viridis")
    grid_ax.set_xticks(range(len(DELTA_KEYS)), DELTA_KEYS)
    grid_ax.set_yticks(range(len(days)), [f"{d:g}d" for d in days])
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            grid_ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7,
                         color="white")
    fig.colorbar(image, ax=grid_ax, label="vol, %")
    grid_ax.set_title(f"vol by forward delta and tenor at {_clock(last.exchange_ts_ms)}",
                      fontsize=9)
    fig.suptitle(f"{last.key} constant-maturity views")


def _index(fig: Figure, updates: list[SurfaceUpdate]) -> None:
    """The variance index (ours from the quotes, on the fitted smiles, the venue's own)
    against the same tenor's constant-maturity ATM vol, over time."""
    ax = fig.subplots()
    t0 = updates[0].exchange_ts_ms
    x = np.array([(u.exchange_ts_ms - t0) / 1000 for u in updates])
    index = [u.variance_index for u in updates]
    tenor = next(i.tenor_days for i in index if i is not None)

    def series(get: Any) -> Any:
        return np.array([np.nan if i is None else get(i) for i in index], np.float64)

    for values, style, label in (
            (series(lambda i: i.vol), "-", "variance index, market quotes"),
            (series(lambda i: i.model_vol), "--", "the same on the fitted smiles"),
            (series(lambda i: i.venue_vol), ":", "the venue's own (DVOL)")):
        if np.isfinite(values).any():  # the legend names only what is drawn
            ax.plot(x, 100 * values, style, label=label)
    atm = np.array([next((v.atm_vol for v in u.tenors if v.tenor_days == tenor), np.nan)
                    for u in updates], np.float64)
    if np.isfinite(atm).any():
        ax.plot(x, 100 * atm, "-", color="black", lw=0.8, label=f"{tenor:g}-day ATM vol")
    ax.set_ylabel("vol, %")
    ax.set_xlabel("seconds since the first surface")
    ax.legend(fontsize=8)
    fig.suptitle(f"{updates[-1].key} {tenor:g}-day variance index")


def _limits(ax: Axes, values: Any) -> None:
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    lo, hi = (-0.5, 2.5) if finite.size == 0 else (min(-0.5, float(np.percentile(finite, 5))),
                                                   max(2.5, float(np.percentile(finite, 95))))
    ax.set_ylim(lo - 0.2, hi + 0.2)  # the interval may leave the frame; the SSR is not clipped


def _clock(ts_ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def render(updates: list[SurfaceUpdate], books: dict[str, ChainBook], config: AppConfig,
           out: Path, *, underlyings: list[str] | None = None) -> list[Path]:
    """Write the PNGs of every underlying in ``updates``; returns their paths."""
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    written = []
    several_venues = len({u.venue for u in updates}) > 1
    for key in sorted({u.key for u in updates}):
        mine = [u for u in updates if u.key == key]
        underlying = mine[0].underlying
        if underlyings and underlying not in underlyings:
            continue
        name = f"{mine[0].venue}_{underlying}" if several_venues else underlying
        figures = {f"smiles_{name}.png": Figure(figsize=(13, 8), layout="constrained"),
                   f"term_{name}.png": Figure(figsize=(8, 6), layout="constrained"),
                   f"dynamics_{name}.png": Figure(figsize=(9, 8), layout="constrained")}
        fig_smiles, fig_term, fig_dyn = figures.values()
        _smiles(fig_smiles, mine[-1], books.get(underlying), config)
        _term(fig_term, mine[0], mine[-1], DynamicsConfig().tenor_days)
        _dynamics(fig_dyn, mine, [u.dynamics for u in mine])
        if mine[-1].tenors:  # surfaces from before the tenor views have none
            figures[f"tenors_{name}.png"] = Figure(figsize=(8, 10), layout="constrained")
            _tenors(figures[f"tenors_{name}.png"], mine[0], mine[-1])
        if any(u.variance_index is not None for u in mine):
            figures[f"index_{name}.png"] = Figure(figsize=(9, 5), layout="constrained")
            _index(figures[f"index_{name}.png"], mine)
        for file_name, fig in figures.items():
            fig.savefig(out / file_name, dpi=110)
            written.append(out / file_name)
    return written


def main(argv: list[str]) -> int:
    """``streamer plot (FILE | --from-kafka BOOTSTRAP) --out DIR``; 0 done, 1 nothing to
    plot or the broker failed, 2 bad arguments."""
    args = _parser().parse_args(argv)
    if (args.file is None) == (args.from_kafka is None):
        print("streamer plot: give either a tick file or --from-kafka BOOTSTRAP",
              file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("streamer plot needs matplotlib: pip install 'streamer[plot]'", file=sys.stderr)
        return 2
    from streamer.devtools.exchanges import resolve_tickfile
    from streamer.errors import ConfigError

    try:
        config = load_config(args.config)
        path = None if args.file is None else resolve_tickfile(str(args.file))
    except ConfigError as exc:
        print(f"streamer plot: {exc}", file=sys.stderr)
        return 2
    replace = msgspec.structs.replace
    if args.model:
        config = replace(config, calibration=replace(config.calibration, model=args.model))
    if args.min_move is not None and path is None:
        print("streamer plot: --min-move re-estimates the dynamics from quotes, and the "
              "surface topic carries none: plot the tick file instead", file=sys.stderr)
        return 2
    if args.min_move is not None:  # the replay's engine estimates with it
        config = replace(config, dynamics=replace(config.dynamics, min_move=args.min_move))
    books: dict[str, ChainBook] = {}
    if path is None:
        source = f"{args.topic or config.kafka.surface_topic} at {args.from_kafka}"
        try:
            updates = asyncio.run(_from_kafka(args.from_kafka, config, args.key, args.topic,
                                              args.timeout))
        except BrokerError as exc:
            print(f"streamer plot: {exc}", file=sys.stderr)
            return 1
    else:
        source = str(path)
        updates = [u for u in asyncio.run(_replay(path, config))
                   if not args.key or u.key in args.key]
        books = _final_books(path, config.venues[0].name, config.tickfile)
    if not updates:
        print(f"streamer plot: no surface from {source}", file=sys.stderr)
        return 1
    for written in render(updates, books, config, args.out, underlyings=args.underlying):
        print(f"wrote {written}")
    return 0
