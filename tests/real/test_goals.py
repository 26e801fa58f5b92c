"""Issue #12's goals on the bundled real Deribit chains, every model through `streamer replay`.

Each model's surfaces come from a subprocess ``streamer replay FILE --sink stdout --model M``
(the path the issue is checked by), scored by :mod:`streamer.devtools.scorecard` against
Deribit's marks and bid/ask IVs (median over the slices of each snapshot's final surface).

- ``GOALS``: the issue's targets, one table. A goal not met yet is in ``NOT_YET`` and runs
  as ``xfail(strict=True)``: the day it is met the test fails, and whoever met it removes it
  from ``NOT_YET`` in the same change.
- ``TODAY``: the figures measured when this file was last updated, with ``MARGIN``: a
  change that makes a figure worse than that fails. Improve a figure, lower it here.

Heston replays only the first two hourly snapshots (a whole file takes minutes today).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from streamer.devtools import scorecard as sc

DATA = Path(__file__).parent.parent / "data" / "real"
FILES = {"hourly": DATA / "deribit_btc_hourly_2026-01-23.ndjson.gz",
         "snapshot": DATA / "deribit_btc_2026-02-07T1839Z.ndjson.gz"}
#: (model, file) pairs replayed: Heston on the first hourly snapshots only (its snapshot
#: replay is one chain: whole).
RUNS = [(m, f) for m in ("svi", "sabr", "ssvi", "heston") for f in FILES]
HESTON_SNAPSHOTS = 2


def _rmse(c: sc.Card) -> float:
    return c.overall.rmse_vp_median


def _in_band(c: sc.Card) -> float:
    return c.overall.in_band_pct


def _worst(c: sc.Card) -> float:
    return c.overall.worst_vp


def _unpublished(c: sc.Card) -> float:
    return float(c.eligible - c.published)


def _atm_any(c: sc.Card) -> float:
    return c.atm_max_any


LE, GE = operator.le, operator.ge
Metric = Callable[[sc.Card], float]
#: goal name -> (models, metric, comparison, target). Issue #12 "Goals, per model".
GOALS: dict[str, tuple[tuple[str, ...], Metric, Callable[[float, float], bool], float]] = {
    "rmse_svi": (("svi",), _rmse, LE, 0.45),
    "rmse_sabr": (("sabr",), _rmse, LE, 0.9),
    "rmse_ssvi": (("ssvi",), _rmse, LE, 1.0),
    "rmse_heston": (("heston",), _rmse, LE, 3.0),
    "in_band_svi": (("svi",), _in_band, GE, 97.0),
    "worst_svi": (("svi",), _worst, LE, 6.0),
    # every expiry with >= 8 two-sided OTM quotes published (in every snapshot's final surface)
    "coverage": (("svi", "sabr", "ssvi", "heston"), _unpublished, LE, 0.0),
    # no published slice of ANY surface with ATM more than 3 vp from the as-of market ATM mark
    "atm_any": (("svi", "sabr", "ssvi", "heston"), _atm_any, LE, 3.0),
}
#: "<goal>-<model>-<file>" not met yet (strict xfail). Remove an entry when it is met.
NOT_YET = {
    # Raw SVI cannot follow Deribit's marks there: raw SVI fitted to the marks themselves
    # (least squares, the scored quotes) is 0.57 vp from them (median of the 8 slices);
    # Deribit's own mids are 0.70 vp from them.
    "rmse_svi-svi-snapshot",
    "rmse_sabr-sabr-snapshot",
    # 11 of 234 out; raw SVI fitted to the bands alone, with any pull, margin or tail
    # tried (pull 0.001-0.25, margin 0-0.9, tail 0.05-inf), leaves 11 or more out.
    "in_band_svi-svi-snapshot",
    # 12.0 vp at the 80000 put of 2026-01-25 (1.6 d), bid 1 tick (0.0001 BTC), ask 2:
    # Deribit's mark is 7.4 vp below its own bid, and its marks at 80/82/84k price that
    # put butterfly at -0.00006 BTC. A smile inside that bid is at least 7.4 vp off; over
    # the quotes whose mark is inside their bid/ask band SVI's worst is 4.0 vp.
    "worst_svi-svi-hourly",
}
#: "<model>-<file>" -> today's (median RMSE vp, in-band %, published): no worse than
#: RMSE + MARGIN_VP, band - MARGIN_PCT, published - 0.
TODAY: dict[str, tuple[float, float, int]] = {
    # min_quotes 5: under a day 1.53 -> 1.14 vp. Warm slices refine their best seed as
    # well as their previous fit (svi._fit): in band 97.3 -> 97.5 %
    "svi-hourly": (0.44, 97.5, 68),
    # SVI's band objective with a margin and a Huber tail (band.py, svi.OBJECTIVE): in
    # band 93.8 -> 96.5 % hourly, 92.7 -> 93.6 % on the snapshot, at 0.43 -> 0.44 and
    # 0.82 -> 0.88 vp. Then each expiry's forward as Deribit computes its IVs
    # (calibration.forward: venue, its underlying_price) instead of parity of the
    # tick-rounded coin prices: 96.5 -> 97.3 % and 93.6 -> 95.3 %, 0.88 -> 0.76 vp
    "svi-snapshot": (0.76, 95.3, 8),
    # The band objective (44ac972) traded in-band share for distance to the mark, as
    # QuantLib's SABR does on the same quotes (0.74 vp, 64.4 % hourly): 1.22 vp / 75.8 %
    # before; a pull of 0.3 gives 0.94 / 69.1, of 3.0 0.76 / 65.2.
    # Each expiry's beta chosen from 0, 0.5, 1 (sabr.BETAS): snapshot 1.66 -> 1.39 vp,
    # 48.3 -> 49.1 %, hourly 0.83 both, 67.3 -> 67.9 %. The snapshot's 0.9 is beyond
    # SABR: fitted straight to the marks its median is 1.30 at the best beta per expiry.
    "sabr-hourly": (0.83, 67.9, 68),
    "sabr-snapshot": (1.39, 49.1, 8),
    # ssvi's slices natural SVI (an SSVI slice with a level and a shift) under calendar
    # constraints instead of eSSVI's three parameters (ssvi_surface.py): 1.85 -> 0.66 vp,
    # 56.1 -> 84.2 % hourly; 1.07 -> 0.91 vp, 84.6 -> 91.0 % on the snapshot, 7 of whose
    # 8 slices are its own (3 before: 5 refused to the SVI fallback)
    # one-expiry seeds on the project's batched LM instead of MINPACK: 0.66 -> 0.63 vp,
    # 84.2 -> 83.6 % (2026-12-06)
    "ssvi-hourly": (0.63, 83.6, 68),
    # The expiries a surface model refuses (rmse_too_high, atm_off_market) are published
    # from the per-slice SVI fallback: eSSVI's snapshot 3 -> 8 of 8 (1.73 vp, 51.5 % on
    # its 3 before), Heston's hourly head 18 -> 23 of 23 (2.02, 14.9), snapshot 4 -> 8
    # (4.15, 24.4); the slices Heston itself fits are unchanged.
    "ssvi-snapshot": (0.91, 91.0, 8),
    "heston-hourly": (1.90, 33.2, 23),
    "heston-snapshot": (1.35, 56.8, 8),
}
MARGIN_VP, MARGIN_PCT = 0.15, 3.0
#: Runs worse than TODAY on main, with why (strict xfail: fixing them fails the mark).
REGRESSED: dict[str, str] = {}


@cache
def card(model: str, file: str) -> sc.Card:
    """One replay per (model, file) per test session."""
    path = FILES[file]
    if model == "heston" and file == "hourly":
        import tempfile

        path = sc.head_snapshots(path, HESTON_SNAPSHOTS,
                                 Path(tempfile.mkdtemp(prefix="heston-real-")) / "head")
    (result,) = sc.scorecard(path, [model], timeout_s=10 * sc.REPLAY_LIMIT_S[model])
    return result


def _goal_cases() -> list[object]:
    cases: list[object] = []
    for goal, (models, _, _, _) in GOALS.items():
        for model, file in RUNS:
            if model in models:
                case_id = f"{goal}-{model}-{file}"
                marks = [pytest.mark.xfail(strict=True, reason="issue #12 goal not met yet")
                         ] if case_id in NOT_YET else []
                cases.append(pytest.param(goal, model, file, id=case_id, marks=marks))
    return cases


def test_not_yet_names_only_real_cases() -> None:
    ids = {f"{g}-{m}-{f}" for g, (ms, *_) in GOALS.items() for m, f in RUNS if m in ms}
    assert sorted(NOT_YET - ids) == []


@pytest.mark.parametrize(("goal", "model", "file"), _goal_cases())
def test_goal(goal: str, model: str, file: str) -> None:
    _, metric, compare, target = GOALS[goal]
    c = card(model, file)
    value = metric(c)
    assert not c.timed_out, f"{model} replay of {file} killed after {c.wall_s:.0f} s"
    assert math.isfinite(value), f"{goal}: {model} on {file} has no figure ({c.error})"
    assert compare(value, target), f"{goal}: {model} on {file}: {value:.3f} vs {target}"


def _today_cases() -> list[object]:
    return [pytest.param(m, f, id=f"{m}-{f}", marks=[pytest.mark.xfail(
        strict=True, reason=REGRESSED[f"{m}-{f}"])] if f"{m}-{f}" in REGRESSED else [])
        for m, f in RUNS]


@pytest.mark.parametrize(("model", "file"), _today_cases())
def test_no_worse_than_today(model: str, file: str) -> None:
    rmse, band, published = TODAY[f"{model}-{file}"]
    c = card(model, file)
    assert not c.timed_out
    assert c.published >= published, c.missing[:10]
    if math.isfinite(rmse):
        assert c.overall.rmse_vp_median <= rmse + MARGIN_VP
        assert c.overall.in_band_pct >= band - MARGIN_PCT


def test_every_published_slice_scores_finite_vols() -> None:
    # a usable slice that evaluates to NaN at a quoted strike is a publishing bug
    for model, file in RUNS:
        c = card(model, file)
        bad = [s for s in c.slices if s.n and not math.isfinite(s.rmse_vp)]
        assert bad == [], f"{model} on {file}: {bad[:3]}"


def test_deribit_mids_sit_near_marks_on_the_rebuilt_chains() -> None:
    # The rebuilt forwards, times and prices are right only if Deribit's own mids stay
    # within a fraction of a vol point of its marks (PROVENANCE.md: about 0.38 vp RMS);
    # a wrong forward or capture time moves OTM mids by vol points.
    for file in FILES.values():
        (mid,) = sc.scorecard(file, [], ["deribit_mid"])
        assert mid.overall.rmse_vp_median < 0.8
        assert mid.published == mid.eligible
