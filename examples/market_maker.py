"""A toy market maker: follow vol.surface.v1 and print a quote grid (strikes x expiries) per update.

Against ``make run`` (the bundled Deribit replay on the embedded broker)::

    # terminal 1: the service; keep it replaying with --loop
    make run ARGS="--loop"
    # its log names the broker (localhost:9092 when that port was free):
    #   ... surfaces go to topic vol.surface.v1 at 127.0.0.1:PORT; read them with: ...

    # terminal 2: this example
    .venv/bin/python examples/market_maker.py 127.0.0.1:PORT
    # or: STREAMER_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:PORT .venv/bin/python examples/market_maker.py

Options: ``--keys deribit:BTC deribit:ETH`` (the default), ``--topic`` (default
``vol.surface.v1``), ``--count N`` (stop after N surfaces), ``--tenors 7 30 90`` (fixed
tenors in days, shown beside the published expiries). The latest surface per key
prints first, then every live update. Vols are in percent; strikes are a ladder of
moneyness around the surface's spot, rounded to a venue-like strike step; a vol marked
``*`` is outside the strikes quoted at that expiry (``Surface.extrapolated``). Ctrl-C stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from streamer.client import Surface, SurfaceSubscriber

MONEYNESS = (0.6, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.4, 1.6)
MAX_EXPIRIES = 6


def strike_ladder(spot: float) -> np.ndarray:
    """Strikes around ``spot`` on a round step (e.g. 1000 for BTC near 100k, 50 for ETH)."""
    step = 10.0 ** math.floor(math.log10(spot) - 2) * 5
    return np.unique(np.round(np.asarray(MONEYNESS) * spot / step) * step)


def quote_grid(surface: Surface, tenors_days: Sequence[float]) -> str:
    """The surface's vols (percent) on a strike ladder x (published expiries + fixed tenors)."""
    strikes = strike_ladder(surface.spot if surface.spot > 0 else surface.forward(0.1).item())
    columns: list[tuple[str, int | float]] = [
        (surface.slice(e).expiry[:10], e) for e in surface.expiries[:MAX_EXPIRIES]]
    columns += [(f"{d:g}d", d / 365.0) for d in tenors_days]
    as_of = datetime.fromtimestamp(surface.exchange_ts_ms / 1000, UTC)
    as_of_text = as_of.isoformat(timespec="milliseconds")
    lines = [f"{surface.key} seq={surface.seq} model={surface.model} spot={surface.spot:,.2f} "
             f"as of {as_of_text}"]
    if not columns:
        return lines[0] + "\n  (no usable slices)"
    lines.append(f"{'strike':>10} " + " ".join(f"{label:>11}" for label, _ in columns))
    lines.append(f"{'forward':>10} "
                 + " ".join(f"{surface.forward(e).item():>11,.1f}" for _, e in columns))
    vols = np.column_stack([surface.vol(strikes, e) for _, e in columns]) * 100.0
    # A strike outside the quotes behind an expiry's fit is the model's wing: marked.
    wings = np.column_stack([surface.extrapolated(strikes, e) for _, e in columns])
    for strike, row, outside in zip(strikes, vols, wings, strict=True):
        lines.append(f"{strike:>10,.0f} " + " ".join(
            f"{v:>10.2f}*" if out else f"{v:>11.2f}" for v, out in zip(row, outside, strict=True)))
    if wings.any():
        lines.append(f"{'':>10} * outside the strikes quoted at that expiry (the model's wing)")
    return "\n".join(lines)


async def run(bootstrap: str, keys: list[str], topic: str, count: int | None,
              tenors_days: Sequence[float]) -> None:
    """Subscribe and print a grid per surface until ``count`` surfaces (or forever)."""
    async with SurfaceSubscriber(bootstrap, keys=keys, topic=topic, topic_timeout_s=None,
                                 client_id="market-maker-example") as surfaces:
        seen = 0
        async for surface in surfaces:
            print(quote_grid(surface, tenors_days), end="\n\n", flush=True)
            seen += 1
            if count is not None and seen >= count:
                return


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bootstrap", nargs="?",
                        default=os.environ.get("STREAMER_KAFKA__BOOTSTRAP_SERVERS"),
                        help="host:port[,host:port] (default: $STREAMER_KAFKA__BOOTSTRAP_SERVERS)")
    parser.add_argument("--keys", nargs="+", default=["deribit:BTC", "deribit:ETH"])
    parser.add_argument("--topic", default="vol.surface.v1")
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--tenors", nargs="*", type=float, default=[7.0, 30.0, 90.0])
    args = parser.parse_args(argv)
    if not args.bootstrap:
        parser.error("give the broker as an argument or in STREAMER_KAFKA__BOOTSTRAP_SERVERS")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args.bootstrap, args.keys, args.topic, args.count, args.tenors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
