"""Every model on the bundled real Deribit chains against Deribit's own marks, beside the
plain baselines fitted to the same quotes in the same run.

``streamer.devtools.scorecard`` on ``tests/data/real/``: each model's surfaces come from
``streamer replay FILE --sink stdout --model M`` and every snapshot's final surface is
scored (median RMSE of model vol against the mark in vol points, the share of quotes
inside the bid/ask band, the worst error, the median and worst ATM error, the expiries
published of those with 8 or more two-sided OTM quotes); the baselines are scipy least
squares raw SVI, QuantLib's SABR and Heston, and Deribit's own mids.

Run from the repo root: ``.venv/bin/python benchmarks/bench_real_chains.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import record

from streamer.devtools.scorecard import BASELINES, MODELS, scorecard

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "real"
FILES = ("deribit_btc_hourly_2026-01-23.ndjson.gz", "deribit_btc_2026-02-07T1839Z.ndjson.gz")


def main() -> None:
    rows: list[dict[str, Any]] = []
    for name in FILES:
        for card in scorecard(DATA / name, MODELS, BASELINES):
            o = card.overall
            rows.append({"file": name.split(".")[0], "model": card.name,
                         "rmse_vp": o.rmse_vp_median, "in_band_pct": o.in_band_pct,
                         "worst_vp": o.worst_vp, "atm_vp": o.atm_vp_median,
                         "atm_max_vp": o.atm_vp_max, "atm_any_vp": card.atm_max_any,
                         "published": f"{card.published}/{card.eligible}",
                         "cpu_s": card.cpu_s})
    record("real_chains", rows)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.1f} s)")
